"""Says ready; on SIGTERM or SIGINT prints a shutdown line and exits (code from argv, default 0)."""

import signal
import sys

from _ready import say

exit_code = int(sys.argv[1]) if len(sys.argv) > 1 else 0


def shutdown(signum: int, _frame: object) -> None:
    say(f"shutdown: {signal.Signals(signum).name} received, saving state")
    sys.exit(exit_code)


signal.signal(signal.SIGTERM, shutdown)
signal.signal(signal.SIGINT, shutdown)
say("ready")
while True:
    signal.pause()
