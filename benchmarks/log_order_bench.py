"""What keeping records and log lines in emission order costs.

    .venv/bin/python -m benchmarks.log_order_bench [--lines N] [--records N]

Three figures, on real pipes drained by a reader thread: log lines per second through the stderr
writer (alone, then with the stdout records' writer sharing its order, as in a running
sidecar), and the round trip of one record (queued on the loop, written by its thread) while
log lines are being written. Runs against older code too (no shared order there), so the
numbers can be compared with the code before the order existed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

from sidecar.logs import QueuedStderrHandler, StderrWriter
from sidecar.output import OrderedOutput

try:
    from sidecar.write_order import WriteOrder
except ImportError:  # the code before the shared order
    WriteOrder = None  # type: ignore[assignment,misc]


@contextlib.contextmanager
def _drained_pipe() -> Iterator[int]:
    """A pipe whose reader thread throws everything away; yields the write end."""
    read_fd, write_fd = os.pipe()

    def drain() -> None:
        with contextlib.suppress(OSError):
            while os.read(read_fd, 1 << 16):
                pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield write_fd
    finally:
        os.close(write_fd)
        reader.join(5)
        os.close(read_fd)


def _writers(out_fd: int, err_fd: int, shared: bool) -> tuple[OrderedOutput, StderrWriter]:
    kwargs: dict[str, Any] = {}
    if shared and WriteOrder is not None:
        kwargs["order"] = WriteOrder()
    return OrderedOutput(out_fd, max_queued=10_000, **kwargs), StderrWriter(err_fd, **kwargs)


def _logger(writer: StderrWriter) -> logging.Logger:
    handler = QueuedStderrHandler(writer)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(f"bench-{id(writer)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger


def lines_per_second(lines: int, shared: bool) -> float:
    with _drained_pipe() as out_fd, _drained_pipe() as err_fd:
        _, writer = _writers(out_fd, err_fd, shared)
        log = _logger(writer)
        started = time.perf_counter()
        for number in range(lines):
            log.info("state %s -> %s (line %d)", "active", "draining", number)
        assert writer.flush(60)
        return lines / (time.perf_counter() - started)


async def record_round_trips(records: int, shared: bool) -> list[float]:
    with _drained_pipe() as out_fd, _drained_pipe() as err_fd:
        output, writer = _writers(out_fd, err_fd, shared)
        log = _logger(writer)
        took = []
        for number in range(records):
            for line in range(20):  # a few log lines around each record, as in a stop
                log.info("line %d before record %d", line, number)
            started = time.perf_counter()
            assert await output.write_record({"event": "bench", "n": number})
            took.append(time.perf_counter() - started)
        assert writer.flush(60)
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=300)
    args = parser.parse_args()
    print(f"shared order available: {WriteOrder is not None}")
    for shared in (False, True):
        label = "shared order" if shared else "own order   "
        rate = lines_per_second(args.lines, shared)
        took = asyncio.run(record_round_trips(args.records, shared))
        took_ms = sorted(t * 1000 for t in took)
        print(
            f"{label}: {rate:,.0f} log lines/s; record round trip median "
            f"{statistics.median(took_ms):.3f} ms, p99 {took_ms[int(len(took_ms) * 0.99)]:.3f} ms"
        )


if __name__ == "__main__":
    main()
