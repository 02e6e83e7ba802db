"""A game that writes its stdout the way C stdio does on a pipe: 4096-byte blocks that end in
the middle of a line, one every 50 ms, so a record written at any moment meets a half-written
line. Exits 0 on SIGTERM (as a well-behaved server that saved its state)."""

import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
line = b"the quick brown fox jumps over the lazy dog " * 30 + b"\n"  # 1351 bytes a line
stream = line * 50
offset = 0
while True:
    block = stream[offset : offset + 4096]
    os.write(1, block)
    offset = (offset + 4096) % (len(line) * 37)
    time.sleep(0.05)
