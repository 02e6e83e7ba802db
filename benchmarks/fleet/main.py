"""`scripts/fleet-sim`: the options, the run, the report on stdout, the JSON and the doc section."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
from pathlib import Path

import benchmarks.fleet
from benchmarks.fleet.accounting import summarise
from benchmarks.fleet.report import report
from benchmarks.fleet.runner import raise_fd_limit, simulate
from benchmarks.fleet.scenarios import MODES, ROOT, STARTUP_GUESS
from benchmarks.reliability_doc import write_section


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/fleet-sim",
        description=(benchmarks.fleet.__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=100, help="sidecars")
    parser.add_argument("--rate", type=float, default=1.5, help="launches per second")
    parser.add_argument("--outage", type=float, default=10.0, help="outage length, seconds")
    parser.add_argument("--storm", type=float, default=6.0, help="429 storm length, seconds")
    parser.add_argument("--slow", type=float, default=3.0, help="slow answers' hold, seconds")
    parser.add_argument(
        "--fleet-outage-at",
        type=float,
        default=None,
        help="start of the fleet-wide outage, seconds after the first launch "
        "(default: 40%% of the launch span; negative: none)",
    )
    parser.add_argument(
        "--no-faults",
        dest="faults",
        action="store_false",
        help="no platform faults (faults: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=150.0, help="seconds after the last launch to give up"
    )
    parser.add_argument("--quick", action="store_true", help="18 deployments (2 per mode)")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench-results" / "fleet-sim.json",
        help="where every deployment's figures go",
    )
    parser.add_argument("--doc", type=Path, help="write the 'Fleet simulation' section here")
    parser.add_argument("--logs-dir", type=Path, help="keep every deployment's stored logs here")
    args = parser.parse_args(argv)
    if args.logs_dir is not None:
        args.logs_dir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.count = 2 * len(MODES)
        args.rate = max(args.rate, 2.0)
    if args.count <= 0 or args.rate <= 0 or args.timeout <= 0:
        parser.error("--count, --rate and --timeout must be positive")
    if min(args.outage, args.storm, args.slow) <= 0 or not math.isfinite(args.outage):
        parser.error("--outage, --storm and --slow must be positive")
    if args.fleet_outage_at is None:
        args.fleet_outage_at = 0.4 * args.count / args.rate + STARTUP_GUESS + 4.0
    elif args.fleet_outage_at < 0:
        args.fleet_outage_at = None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="fleet-sim-") as tmp:
        result = asyncio.run(simulate(args, Path(tmp)))
    summary = summarise(result)
    text = report(result, summary, args)
    print(text, end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result, "summary": summary}, indent=2) + "\n")
    if args.doc:
        shown = " ".join(["scripts/fleet-sim", *(argv if argv is not None else sys.argv[1:])])
        header = f"`{shown}`\n\n"
        write_section(args.doc, "Fleet simulation", header + text)
    return 0 if summary["ok"] else 1
