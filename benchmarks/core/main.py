"""`scripts/bench`: the options, the order of the run, the report on stdout (progress on
stderr)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import benchmarks.core
from benchmarks.core import memory, report, startup, stop, throughput, variants
from benchmarks.core.harness import PYTHON, ROOT, Children


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = benchmarks.core.__doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="each load run (default 6)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per run (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds (default 3)")
    parser.add_argument("--idle", type=float, default=30.0, help="idle CPU window (default 30)")
    parser.add_argument("--starts", type=int, default=10, help="start-up samples (default 10)")
    parser.add_argument("--stops", type=int, default=30, help="stop samples (default 30)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (~20 s)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.idle, args.starts, args.stops = 2.0, 0.5, 5.0, 3, 6
        args.rounds = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-pycache-") as pycache:
        results = run(args, Children(pycache))
    print(report.render(results))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(results), indent=2))
    return 0


def run(args: argparse.Namespace, children: Children) -> report.Results:
    """Every measurement, in an order that lets the idle window overlap the rest: an idle
    process's own CPU time does not depend on what else runs."""
    wall = time.perf_counter()
    machine = report.machine()
    load_before = os.getloadavg()

    def step(message: str) -> None:
        print(f"[{time.perf_counter() - wall:5.1f}s] {message}", file=sys.stderr, flush=True)

    step("compiling bytecode into the bench's cache")
    subprocess.run(
        [
            PYTHON,
            "-c",
            f"import {startup.SERVE_IMPORTS}, aiohttp.web, sidecar.emulator, sidecar.bodies",
        ],
        check=True,
        env=children.env(),
        cwd=ROOT,
    )

    step("sessions: plain, with match data, with 4xx traffic")
    with variants.measured(children, args.idle) as idle_figures:
        step("reference RSS")
        reference_rss = memory.reference_rss(children)
        step("start-up")
        startup_figures = startup.measure(children, args.starts)

        step("stop latency")
        stop_latency = asyncio.run(stop.measure(children, args.stops, batch=6))

        step("throughput")
        load = throughput.measure(children, args.seconds, args.warmup, args.rounds)

        step("waiting for the idle windows to end")
        sidecars = idle_figures()
    return report.Results(
        machine=machine,
        seconds=args.seconds,
        warmup=args.warmup,
        rounds=args.rounds,
        load_before=load_before,
        load_after=os.getloadavg(),
        sidecars=sidecars,
        reference_rss=reference_rss,
        startup=startup_figures,
        stop=stop_latency,
        throughput=load,
        wall_s=time.perf_counter() - wall,
    )
