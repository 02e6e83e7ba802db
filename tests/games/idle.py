"""Says ready, then exits (code from argv, default 0) when its stdin reaches end-of-file."""

import os
import sys

from _ready import say

say("ready")
while os.read(0, 4096):
    pass
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
