"""The match simulation's run: one emulator on loopback with its result sink (`--result-sink`),
matches created through `POST /_emulator/matches` (the `MM_*` variables the matchmaker would
inject) at a steady rate, each backed by a real `sidecar run` with the match game, the result
sink taken down by fleet-wide outages, every deployment awaited until terminated; then the
request log, the sink's deliveries and the stored logs collected for the accounting."""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fleet.faults import Window, add_outage
from benchmarks.fleet.matches.accounting import analyse
from benchmarks.fleet.matches.scenarios import (
    GAME,
    Rule,
    Scenario,
    Timings,
    assignment,
    game_env,
    sidecar_env,
    tickets_of,
)
from benchmarks.fleet.runner import (
    emulator_options,
    kept_logs,
    run_fleet,
    session,
    window_rows,
)
from benchmarks.fleet.scenarios import ROOT
from sidecar.emulator import EmulatorServer

# The route name the emulator's faults use for the result sink (routes/results.py).
SINK_ROUTE = "result_sink"


@dataclass
class MatchDeployment:
    index: int
    scenario: Scenario
    rule: Rule
    request_id: str
    match_id: str
    tickets: dict[str, list[str]]
    arriving: list[str]
    events_path: Path
    token: str  # the result token: it must appear in no stored log


@dataclass(frozen=True)
class SinkOutage:
    """The result receiver down (503, no Retry-After) for `length` s, from `at` s after the
    first launch."""

    label: str
    at: float
    length: float


def plan_outages(args: argparse.Namespace, timings: Timings) -> list[SinkOutage]:
    """One long outage (longer than the grace + result wait, so stops inside it go ahead
    before the receiver is back) and one short one, at 30 % and 65 % of the launch span, offset
    by when the first stops come (a short match's end)."""
    span = args.count / args.rate
    first_stops = 1.5 + timings.s("play") + timings.s("grace")
    return [
        SinkOutage("long", round(0.3 * span + first_stops, 2), args.sink_outage),
        SinkOutage("short", round(0.65 * span + first_stops, 2), args.sink_blip),
    ]


def command(python: str) -> str:
    return "exec " + shlex.join([python, "-m", "sidecar", "run", "--", python, str(GAME)])


async def simulate(args: argparse.Namespace, timings: Timings, workdir: Path) -> dict[str, Any]:
    python = sys.executable
    # The match game binds no port either: READY comes from /v1/ready.
    options = emulator_options({"match": command(python)}, result_sink=True)
    async with session(options) as s:
        emu = s.emu
        windows: list[Window] = []
        for outage in plan_outages(args, timings) if args.faults else []:
            windows.append(
                await add_outage(emu, outage.label, outage.at, outage.length, SINK_ROUTE)
            )
        run = await run_fleet(emu, args, s.t0, lambda index: launch(emu, timings, index, workdir))
        _, sink = await emu.call("GET", "/_emulator/results")
        results = []
        for deployment, done in zip(run.fleet, run.terminated, strict=True):
            name = f"{deployment.index:04d}-{deployment.scenario.name}.log"
            logs = await kept_logs(s.http, emu, deployment.request_id, args.logs_dir, name)
            results.append(
                analyse(
                    deployment,
                    timings,
                    done,
                    run.request_log["requests"],
                    sink["results"],
                    windows,
                    logs,
                    run.end,
                )
            )
    return {
        "count": args.count,
        "rate": args.rate,
        "scale": timings.scale,
        "faults": args.faults,
        "launch_s": round(run.launch_s, 2),
        "wall_s": s.wall_s(),
        "sink_windows": window_rows(windows, s.t0),
        "request_log_dropped": run.request_log["dropped"],
        "sink_dropped": sink["dropped"],
        "load": s.load_figures(),
        "deployments": results,
    }


async def launch(
    emu: EmulatorServer, timings: Timings, index: int, workdir: Path
) -> MatchDeployment:
    scenario, rule = assignment(index)
    tickets = tickets_of(index)
    arriving = scenario.arriving(tickets)
    events = workdir / f"{index:04d}-{scenario.name}.jsonl"
    token = f"result-token-{secrets.token_hex(12)}"
    env = {
        **sidecar_env(timings, rule, f"{emu.url}/_emulator/results", token),
        **game_env(timings, arriving, events),
        "PYTHONPATH": str(ROOT),
    }
    body = {
        "app": "match",
        "profile": "duo",
        "tickets": [{"id": t, "team": team} for team, ids in tickets.items() for t in ids],
        "deploy": {
            "environment_variables": [
                # The token hidden, as a studio would set it in its app version.
                {"key": key, "value": value, "is_hidden": key == "SIDECAR_RESULT_TOKEN"}
                for key, value in env.items()
            ]
        },
    }
    status, answer = await emu.call("POST", "/_emulator/matches", json=body)
    if status != 201:
        raise RuntimeError(f"POST /_emulator/matches answered {status}: {answer}")
    return MatchDeployment(
        index,
        scenario,
        rule,
        str(answer["request_id"]),
        str(answer["match_id"]),
        tickets,
        arriving,
        events,
        token,
    )
