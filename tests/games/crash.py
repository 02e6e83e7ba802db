"""Prints a line on each stream, then exits with the given code."""

import sys

code = int(sys.argv[1])
message = sys.argv[2] if len(sys.argv) > 2 else "fatal: something went wrong"
print(f"game running, about to exit {code}", flush=True)
print(message, file=sys.stderr, flush=True)
sys.exit(code)
