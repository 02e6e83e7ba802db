"""Forks N children; every process of the tree reports SIGTERM on stdout and exits.

`ready <child pids>` is printed only once every child runs Python code: a signal that reached a
child still inside fork would be dropped by the interpreter's after-fork reset.
"""

import os
import signal
import sys

from _ready import say


def report(signum: int, _frame: object) -> None:
    say(f"pid {os.getpid()} got {signal.Signals(signum).name}")
    for child in children:
        # Children got the same group signal; collect them so none is left a zombie.
        os.waitpid(child, 0)
    os._exit(0)


children: list[int] = []
signal.signal(signal.SIGTERM, report)
ready_read, ready_write = os.pipe()
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        children = []
        os.write(ready_write, b"!")
        while True:
            signal.pause()
    children.append(pid)
for _ in children:
    os.read(ready_read, 1)
say("ready", *children)
while True:
    signal.pause()
