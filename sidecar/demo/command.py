"""`edgegap-sidecar demo`: options in, the scenario run, the outcome out as an exit code."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sidecar.demo.example import find_node_game
from sidecar.demo.options import options_from_args
from sidecar.demo.scenario import Demo, DemoSummary
from sidecar.demo.timeline import Timeline
from sidecar.errors import DemoError

EXIT_FAILED = 1


def main(args: argparse.Namespace) -> int:
    """`edgegap-sidecar demo`: 0 when the whole lifecycle ran, 1 with a one-line reason if not."""
    options = options_from_args(args)
    if options.grpc:
        # Before anything starts: without node or its SDK this is the user's to fix (exit 2,
        # UsageError says what to install), not a failed run.
        find_node_game()
    timeline = Timeline(sys.stdout, quiet=options.quiet)
    what = (
        f"two matches of {options.players} tickets, one played to its result, one where a "
        "player never shows up"
        if options.match
        else f"{options.players} players, {options.rounds} rounds"
    )
    timeline.line(f"edgegap-sidecar demo: {what}, everything on 127.0.0.1, no account")
    try:
        summary = asyncio.run(Demo(options, timeline).run())
    except DemoError as exc:
        print(f"edgegap-sidecar demo: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    stops = "; ".join(_stopped(each) for each in (*summary.earlier, summary))
    print(f"demo ok in {summary.elapsed:.1f}s: {stops}", flush=True)
    return 0


def _stopped(summary: DemoSummary) -> str:
    delivered = ", result delivered once" if summary.result_delivered else ""
    return (
        f"deployment {summary.request_id} stopped itself ({summary.stop_reason}), "
        f"Status.TERMINATED, {summary.log_lines} log lines kept{delivered}"
    )
