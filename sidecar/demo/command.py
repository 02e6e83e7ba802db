"""`edgegap-sidecar demo`: options in, the scenario run, the outcome out as an exit code."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sidecar.demo.options import options_from_args
from sidecar.demo.scenario import Demo
from sidecar.demo.timeline import Timeline
from sidecar.errors import DemoError

EXIT_FAILED = 1


def main(args: argparse.Namespace) -> int:
    """`edgegap-sidecar demo`: 0 when the whole lifecycle ran, 1 with a one-line reason if not."""
    options = options_from_args(args)
    timeline = Timeline(sys.stdout, quiet=options.quiet)
    what = (
        f"a match of {options.players} tickets, one never shows up"
        if options.match
        else f"{options.players} players, {options.rounds} rounds"
    )
    timeline.line(f"edgegap-sidecar demo: {what}, everything on 127.0.0.1, no account")
    try:
        summary = asyncio.run(Demo(options, timeline).run())
    except DemoError as exc:
        print(f"edgegap-sidecar demo: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print(
        f"demo ok in {summary.elapsed:.1f}s: deployment {summary.request_id} stopped itself "
        f"({summary.stop_reason}), Status.TERMINATED, {summary.log_lines} log lines kept",
        flush=True,
    )
    return 0
