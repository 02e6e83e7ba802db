"""Writes exactly the given bytes (hex) to stdout and, optionally, stderr."""

import os
import sys

os.write(1, bytes.fromhex(sys.argv[1]))
if len(sys.argv) > 2:
    os.write(2, bytes.fromhex(sys.argv[2]))
