"""The match simulation's run: one emulator on loopback with its result sink (`--result-sink`),
matches created through `POST /_emulator/matches` (the `MM_*` variables the matchmaker would
inject) at a steady rate, each backed by a real `sidecar run` with the match game, the result
sink taken down by fleet-wide outages, every deployment awaited until terminated; then the
request log, the sink's deliveries and the stored logs collected for the accounting."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks.fleet.faults import Window, add_window
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
from benchmarks.fleet.runner import LoadSampler, raw_logs, wait_terminated
from benchmarks.fleet.scenarios import ROOT
from sidecar.emulator import EmulatorOptions, EmulatorServer

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
    options = EmulatorOptions(
        port=0,
        status_step_seconds=0.0,
        game_port=0,
        game_port_check=False,  # the match game binds no port: READY comes from /v1/ready
        apps={"match": command(python)},
        restart_policy="always",
        stop_grace_seconds=5.0,
        restart_delay_seconds=1.0,
        metrics_interval_seconds=60.0,
        result_sink=True,
    )
    load = LoadSampler()
    baseline = psutil.cpu_percent(interval=2.0)
    wall_start = time.time()
    async with EmulatorServer(options) as emu, aiohttp.ClientSession() as http:
        sampler = asyncio.create_task(load.run())
        t0 = time.time()
        windows: list[Window] = []
        for outage in plan_outages(args, timings) if args.faults else []:
            windows.append(
                await add_window(
                    emu,
                    label=outage.label,
                    status=503,
                    retry_after=None,
                    delay=0.0,
                    starts_in=outage.at,
                    duration=outage.length,
                    target=SINK_ROUTE,
                )
            )
        fleet: list[MatchDeployment] = []
        for index in range(args.count):
            await asyncio.sleep(max(0.0, t0 + index / args.rate - time.time()))
            fleet.append(await launch(emu, timings, index, workdir))
        launch_s = time.time() - t0
        deadline = time.time() + args.timeout
        terminated = [await wait_terminated(emu, d.request_id, deadline) for d in fleet]
        end = time.time()
        _, request_log = await emu.call(
            "GET", "/_emulator/requests", params={"method": "DELETE"}, auth=False
        )
        _, sink = await emu.call("GET", "/_emulator/results")
        results = []
        for deployment, done in zip(fleet, terminated, strict=True):
            logs = await raw_logs(http, emu.url, deployment.request_id)
            if args.logs_dir is not None and logs is not None:
                name = f"{deployment.index:04d}-{deployment.scenario.name}.log"
                (args.logs_dir / name).write_bytes(logs)
            results.append(
                analyse(
                    deployment,
                    timings,
                    done,
                    request_log["requests"],
                    sink["results"],
                    windows,
                    logs,
                    end,
                )
            )
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return {
        "count": args.count,
        "rate": args.rate,
        "scale": timings.scale,
        "faults": args.faults,
        "launch_s": round(launch_s, 2),
        "wall_s": round(time.time() - wall_start, 2),
        "sink_windows": [
            {"label": w.label, "start_s": round(w.start - t0, 2), "end_s": round(w.end - t0, 2)}
            for w in windows
        ],
        "request_log_dropped": request_log["dropped"],
        "sink_dropped": sink["dropped"],
        "load": {**load.summary(), "cpu_before_pct": baseline},
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
