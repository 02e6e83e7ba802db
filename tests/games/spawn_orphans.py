"""Forks N children that outlive it, prints their pids, exits (code from argv, default 0).

By default each child waits for the end-of-file that this process's exit causes on a shared
pipe, then exits: it dies as an orphan, re-parented to the nearest subreaper or PID 1, with no
sleeping. With a third argument `linger`, the children instead keep this process's stdout and
stderr open and wait for a signal: orphans that hold the game's output pipes after it exited.
"""

import os
import signal
import sys

from _ready import say

count = int(sys.argv[1])
exit_code = int(sys.argv[2]) if len(sys.argv) > 2 else 0
linger = len(sys.argv) > 3 and sys.argv[3] == "linger"
read_end, write_end = os.pipe()
orphans = []
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        if linger:
            while True:
                signal.pause()
        # Do not hold the game's output pipes: the relay must see end-of-file at the game's exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.read(read_end, 1)
        os._exit(0)
    orphans.append(pid)
say("orphans", *orphans)
os._exit(exit_code)
