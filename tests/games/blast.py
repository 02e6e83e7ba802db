"""Writes MIB MiB of 100-byte lines to stdout in BLOCK_KIB writes; timing JSON on stderr."""

import json
import os
import sys
import time

mebibytes = int(sys.argv[1])
block_size = (int(sys.argv[2]) if len(sys.argv) > 2 else 1024) * 1024
block = (b"x" * 99 + b"\n") * (block_size // 100)
total = mebibytes * 1024 * 1024
started = time.perf_counter()
written = 0
with memoryview(block) as view:
    while written < total:
        # Resume a short write where it stopped, so the stream stays whole 100-byte lines.
        offset = written % len(block)
        written += os.write(1, view[offset : offset + min(len(block) - offset, total - written)])
elapsed = time.perf_counter() - started
os.write(2, json.dumps({"bytes": written, "seconds": elapsed}).encode() + b"\n")
