"""Exec a command with its stdout a pipe whose reader is already closed.

Every write to stdout then fails with EPIPE at once (Python ignores SIGPIPE), which is what a
container runtime whose log reader died looks like. Deterministic, unlike `cmd | true`, where
the first writes may still land before `true` exits. Usage: broken_stdout.py CMD [ARGS...]
"""

import os
import sys

read_end, write_end = os.pipe()
os.close(read_end)
os.dup2(write_end, 1)
os.close(write_end)
os.execvp(sys.argv[1], sys.argv[1:])
