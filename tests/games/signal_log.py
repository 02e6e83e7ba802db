"""Prints `got <SIGNAL>` for every signal it receives; `ready` once its handlers are in place.

SIGTERM, SIGINT and SIGQUIT also end it (exit code from argv, default 0); every other catchable
signal that would end a process by default is only reported. Real-time signals print as
`SIGRTMIN+N`.
"""

import os
import signal
import sys

from _ready import say

exit_code = int(sys.argv[1]) if len(sys.argv) > 1 else 0
ENDING = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
REPORTED = [
    "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPWR", "SIGXCPU", "SIGVTALRM", "SIGPROF",
    "SIGSYS", "SIGTRAP", "SIGIO", "SIGSTKFLT", "SIGABRT",
]  # fmt: skip


def name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"


def on_signal(number: int, _frame: object) -> None:
    say("got", name(number))
    if number in ENDING:
        sys.stdout.flush()
        os._exit(exit_code)


numbers = [*ENDING, *(getattr(signal, n) for n in REPORTED if hasattr(signal, n))]
if hasattr(signal, "SIGRTMIN"):
    numbers += range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
for number in numbers:
    signal.signal(number, on_signal)
say("ready", os.getpid())
while True:
    signal.pause()
