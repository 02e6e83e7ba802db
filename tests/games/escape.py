"""Leaves a process behind that escaped its session and ignores SIGTERM: `escaped <pid>`.

The escapee calls `setsid` (a new session and process group: signalling the game's group misses
it), ignores SIGTERM, lets go of our stdout and waits to be killed. Then this game either exits
(`exit`, the default) or stays until SIGTERM (`stay`), exiting 0 then.
"""

import os
import signal
import sys

from _ready import say

stay = len(sys.argv) > 1 and sys.argv[1] == "stay"
ready_read, ready_write = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.write(ready_write, b"x")
    while True:
        signal.pause()
os.read(ready_read, 1)
if stay:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
say("escaped", pid)
while stay:
    signal.pause()
