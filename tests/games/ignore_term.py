"""Says ready and ignores SIGTERM: only SIGKILL ends it."""

import signal

from _ready import say

signal.signal(signal.SIGTERM, signal.SIG_IGN)
say("ready")
while True:
    signal.pause()
