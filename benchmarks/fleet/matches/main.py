"""`scripts/fleet-sim matches`: the options, the run, the report on stdout, the JSON and the doc
section."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import benchmarks.fleet.matches
from benchmarks.fleet.matches.accounting import summarise
from benchmarks.fleet.matches.report import report
from benchmarks.fleet.matches.runner import simulate
from benchmarks.fleet.matches.scenarios import RULES, SCENARIOS, Timings
from benchmarks.fleet.runner import raise_fd_limit
from benchmarks.fleet.scenarios import ROOT
from benchmarks.reliability_doc import write_section

BLOCK = len(SCENARIOS) * len(RULES)  # one match of every kind under both configurations
SECTION = "Fleet simulation of matches"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/fleet-sim matches",
        description=(benchmarks.fleet.matches.__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=160, help=f"matches (a multiple of {BLOCK})")
    parser.add_argument("--rate", type=float, default=1.5, help="launches per second")
    parser.add_argument(
        "--scale", type=float, default=0.1, help="timer lengths as a fraction of the real ones"
    )
    parser.add_argument(
        "--sink-outage", type=float, default=8.0, help="the long result outage, seconds"
    )
    parser.add_argument(
        "--sink-blip", type=float, default=1.0, help="the short result outage, seconds"
    )
    parser.add_argument(
        "--no-faults", dest="faults", action="store_false", help="the result receiver stays up"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds after the last launch to give up"
    )
    parser.add_argument("--quick", action="store_true", help=f"{2 * BLOCK} matches")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench-results" / "fleet-sim-matches.json",
        help="where every match's figures go",
    )
    parser.add_argument("--doc", type=Path, help=f"write the '{SECTION}' section here")
    parser.add_argument("--logs-dir", type=Path, help="keep every deployment's stored logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.rate = 2 * BLOCK, max(args.rate, 2.0)
    if args.count < BLOCK or args.count % BLOCK:
        parser.error(f"--count must be a positive multiple of {BLOCK} (every match, both ways)")
    if args.rate <= 0 or args.timeout <= 0 or not 0 < args.scale <= 1:
        parser.error("--rate and --timeout must be positive, --scale in (0, 1]")
    if min(args.sink_outage, args.sink_blip) <= 0:
        parser.error("--sink-outage and --sink-blip must be positive")
    if args.logs_dir is not None:
        args.logs_dir.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timings = Timings(scale=args.scale)
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="fleet-sim-matches-") as tmp:
        result = asyncio.run(simulate(args, timings, Path(tmp)))
    summary = summarise(result)
    text = report(result, summary, timings)
    print(text, end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result, "summary": summary}, indent=2) + "\n")
    if args.doc:
        shown = " ".join(
            ["scripts/fleet-sim matches", *(argv if argv is not None else sys.argv[1:])]
        )
        write_section(args.doc, SECTION, f"`{shown}`\n\n" + text)
    return 0 if summary["ok"] else 1
