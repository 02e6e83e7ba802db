"""Prints N numbered lines (to stdout, stderr or both), then an unterminated last line."""

import argparse
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--lines", type=int, default=2000)
parser.add_argument("--stream", choices=["stdout", "stderr", "both"], default="stdout")
parser.add_argument("--partial", default="partial tail without newline")
args = parser.parse_args()

streams = {"stdout": [sys.stdout.buffer], "stderr": [sys.stderr.buffer]}
streams["both"] = streams["stdout"] + streams["stderr"]
for stream in streams[args.stream]:
    name = b"out" if stream is sys.stdout.buffer else b"err"
    # Written in blocks so that 200k lines take milliseconds, not seconds.
    for start in range(0, args.lines, 1000):
        block = b"".join(
            b"%s line %06d payload\n" % (name, number)
            for number in range(start, min(start + 1000, args.lines))
        )
        stream.write(block)
    stream.write(args.partial.encode())
    stream.flush()
