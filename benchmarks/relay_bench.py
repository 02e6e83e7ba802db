"""Relay throughput: what supervising a game costs its output.

A game (tests/games/blast.py) writes N MiB of 100-byte lines to stdout in 1 MiB writes. We time:

* ``direct /dev/null``   the game's stdout is /dev/null: its writes cost nothing (the floor);
* ``plain pipe reader``  the game writes to a pipe that a cat-like ``os.read``/``os.write`` loop in
  this process copies to /dev/null: the cost of any pipe at all;
* ``GameProcess -> /dev/null`` the sidecar's relay copies the game's output to /dev/null;
* ``plain reader -> pipe``  the cat-like loop writes into a second pipe drained by another one:
  the baseline for the next line;
* ``GameProcess -> pipe`` the relay writes to a pipe read by a plain reader (as when our stdout
  is a container runtime's pipe).

"x plain" compares with the plain reader of the same shape (one hop, or two hops into a pipe).

"wall" runs from spawn to the last byte relayed; "game" is how long the game itself spent in its
writes (what a supervised game feels). Usage: ``python3 benchmarks/relay_bench.py [MIB] [RUNS]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.supervisor import GameProcess  # noqa: E402

BLAST = str(ROOT / "tests" / "games" / "blast.py")
READ_SIZE = 1 << 16


@dataclass
class Run:
    wall: float
    game: float


def _copy(read_fd: int, write_fd: int) -> None:
    """The plain reader: a cat-like loop (closes `read_fd` at end-of-file)."""
    try:
        while chunk := os.read(read_fd, READ_SIZE):
            view = memoryview(chunk)
            while view:
                view = view[os.write(write_fd, view) :]
    finally:
        os.close(read_fd)


def _copy_to_devnull(read_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        _copy(read_fd, devnull)
    finally:
        os.close(devnull)


def _game_seconds(report: bytes) -> float:
    return float(json.loads(report.decode().strip().splitlines()[-1])["seconds"])


def _spawn_blast(mib: int, stdout_fd: int, stderr_fd: int) -> int:
    return os.posix_spawn(
        sys.executable,
        [sys.executable, BLAST, str(mib)],
        dict(os.environ),
        file_actions=[(os.POSIX_SPAWN_DUP2, stdout_fd, 1), (os.POSIX_SPAWN_DUP2, stderr_fd, 2)],
    )


def run_direct(mib: int) -> Run:
    report_read, report_write = os.pipe()
    devnull = os.open(os.devnull, os.O_WRONLY)
    started = time.perf_counter()
    pid = _spawn_blast(mib, devnull, report_write)
    os.close(report_write)
    os.close(devnull)
    os.waitpid(pid, 0)
    wall = time.perf_counter() - started
    report = os.read(report_read, 4096)
    os.close(report_read)
    return Run(wall, _game_seconds(report))


def run_plain_reader(mib: int) -> Run:
    data_read, data_write = os.pipe()
    report_read, report_write = os.pipe()
    started = time.perf_counter()
    pid = _spawn_blast(mib, data_write, report_write)
    os.close(data_write)
    os.close(report_write)
    _copy_to_devnull(data_read)
    os.waitpid(pid, 0)
    wall = time.perf_counter() - started
    report = os.read(report_read, 4096)
    os.close(report_read)
    return Run(wall, _game_seconds(report))


def run_plain_reader_to_pipe(mib: int) -> Run:
    """Two hops like a relay into a pipe: game -> plain copy loop -> pipe -> plain reader."""
    data_read, data_write = os.pipe()
    sink_read, sink_write = os.pipe()
    report_read, report_write = os.pipe()
    reader = threading.Thread(target=_copy_to_devnull, args=(sink_read,))
    reader.start()
    started = time.perf_counter()
    pid = _spawn_blast(mib, data_write, report_write)
    os.close(data_write)
    os.close(report_write)
    _copy(data_read, sink_write)
    os.close(sink_write)
    reader.join()
    os.waitpid(pid, 0)
    wall = time.perf_counter() - started
    report = os.read(report_read, 4096)
    os.close(report_read)
    return Run(wall, _game_seconds(report))


async def _run_supervised(mib: int, stdout_fd: int) -> Run:
    report_read, report_write = os.pipe()
    started = time.perf_counter()
    game = GameProcess(
        [sys.executable, BLAST, str(mib)], stdout_fd=stdout_fd, stderr_fd=report_write
    )
    game.start()
    await game.wait()
    wall = time.perf_counter() - started
    os.close(report_write)
    report = os.read(report_read, 4096)
    os.close(report_read)
    return Run(wall, _game_seconds(report))


def run_supervised_devnull(mib: int) -> Run:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        return asyncio.run(_run_supervised(mib, devnull))
    finally:
        os.close(devnull)


def run_supervised_pipe(mib: int) -> Run:
    sink_read, sink_write = os.pipe()
    reader = threading.Thread(target=_copy_to_devnull, args=(sink_read,))
    reader.start()
    try:
        return asyncio.run(_run_supervised(mib, sink_write))
    finally:
        os.close(sink_write)
        reader.join()


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    scenarios: list[tuple[str, Callable[[int], Run]]] = [
        ("direct /dev/null", run_direct),
        ("plain pipe reader", run_plain_reader),
        ("GameProcess -> /dev/null", run_supervised_devnull),
        ("plain reader -> pipe", run_plain_reader_to_pipe),
        ("GameProcess -> pipe", run_supervised_pipe),
    ]
    results: dict[str, Run] = {}
    for name, scenario in scenarios:
        samples = [scenario(mib) for _ in range(runs)]
        # The median run: one noisy neighbour should not decide the table.
        results[name] = Run(
            statistics.median(s.wall for s in samples), statistics.median(s.game for s in samples)
        )

    plain = results["plain pipe reader"]
    direct = results["direct /dev/null"]
    baseline = {"GameProcess -> pipe": results["plain reader -> pipe"]}
    print(
        f"{mib} MiB of 100-byte lines in 1 MiB writes, median of {runs} runs, {os.cpu_count()} CPUs"
    )
    header = f"{'scenario':<26}{'wall s':>8}{'MB/s':>9}{'x plain':>9}{'game s':>8}{'game MB/s':>11}"
    print(header)
    print("-" * len(header))
    megabytes = mib * 1024 * 1024 / 1e6
    for name, result in results.items():
        print(
            f"{name:<26}{result.wall:>8.3f}{megabytes / result.wall:>9.0f}"
            f"{baseline.get(name, plain).wall / result.wall:>9.2f}"
            f"{result.game:>8.3f}{megabytes / result.game:>11.0f}"
        )
    supervised = results["GameProcess -> /dev/null"]
    print()
    print(
        f"game-side write time: supervised {supervised.game:.3f} s vs direct /dev/null "
        f"{direct.game:.3f} s vs plain pipe {plain.game:.3f} s "
        f"(supervised/plain pipe = {supervised.game / plain.game:.2f}x)"
    )


if __name__ == "__main__":
    main()
