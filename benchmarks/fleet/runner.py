"""The run: one emulator on loopback, the fleet launched at a steady rate (each deployment a
real `sidecar run` with its game, started by the emulator), every deployment awaited until the
emulator has it terminated, then the request log and the stored logs collected for the
accounting. Also the machine-load sampler that says how busy the machine was meanwhile."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import resource
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks.fleet.accounting import analyse
from benchmarks.fleet.faults import CONDITIONS, Condition, Window, add_window, condition_for
from benchmarks.fleet.scenarios import BASE_ENV, BROKEN, GAME, MODES, ROOT, Mode
from sidecar.emulator import EmulatorOptions, EmulatorServer
from sidecar.emulator.store import TIME_FORMAT


@dataclass
class Deployment:
    index: int
    mode: Mode
    condition: Condition
    request_id: str
    events_path: Path
    launched: float
    windows: list[Window] = field(default_factory=list)


def command(python: str, broken: bool) -> str:
    argv = [python, "-m", "sidecar", "run", "--", python, str(GAME)]
    if broken:
        argv = [python, str(BROKEN), *argv]
    return "exec " + shlex.join(argv)


async def simulate(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    python = sys.executable
    options = EmulatorOptions(
        port=0,
        status_step_seconds=0.0,
        game_port=0,
        # The fleet's games bind no port: READY must not wait for the port readiness check.
        game_port_check=False,
        apps={"fleet": command(python, False), "fleet-broken": command(python, True)},
        restart_policy="always",
        stop_grace_seconds=5.0,
        restart_delay_seconds=1.0,
        # The emulator's per-deployment psutil sampling is not under test; keep it cheap.
        metrics_interval_seconds=60.0,
    )
    load = LoadSampler()
    # Other work on the machine skews every figure: say how busy it was before we started.
    baseline = psutil.cpu_percent(interval=2.0)
    wall_start = time.time()
    async with EmulatorServer(options) as emu, aiohttp.ClientSession() as http:
        sampler = asyncio.create_task(load.run())
        t0 = time.time()
        fleet_windows: list[Window] = []
        if args.faults and args.fleet_outage_at is not None:
            fleet_windows.append(
                await add_window(
                    emu,
                    label=f"fleet-wide outage 503 {args.outage:g} s",
                    status=503,
                    retry_after=None,
                    delay=0.0,
                    starts_in=args.fleet_outage_at,
                    duration=args.outage,
                )
            )
        fleet: list[Deployment] = []
        for index in range(args.count):
            await asyncio.sleep(max(0.0, t0 + index / args.rate - time.time()))
            fleet.append(await launch(emu, args, index, workdir))
        launch_s = time.time() - t0
        deadline = time.time() + args.timeout
        terminated = [await wait_terminated(emu, d.request_id, deadline) for d in fleet]
        end = time.time()
        _, request_log = await emu.call(
            "GET", "/_emulator/requests", params={"method": "DELETE"}, auth=False
        )
        all_deletes = request_log["requests"]
        results = []
        for deployment, done in zip(fleet, terminated, strict=True):
            logs = await raw_logs(http, emu.url, deployment.request_id)
            if args.logs_dir is not None and logs is not None:
                name = f"{deployment.index:04d}-{deployment.mode.name}-{deployment.request_id}.log"
                (args.logs_dir / name).write_bytes(logs)
            results.append(analyse(deployment, done, all_deletes, fleet_windows, logs, end))
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return {
        "count": args.count,
        "rate": args.rate,
        "outage_s": args.outage,
        "storm_s": args.storm,
        "slow_s": args.slow,
        "faults": args.faults,
        "launch_s": round(launch_s, 2),
        "wall_s": round(time.time() - wall_start, 2),
        "fleet_windows": [
            {"label": w.label, "start_s": round(w.start - t0, 2), "end_s": round(w.end - t0, 2)}
            for w in fleet_windows
        ],
        "request_log_dropped": request_log["dropped"],
        "load": {**load.summary(), "cpu_before_pct": baseline},
        "deployments": results,
    }


async def launch(
    emu: EmulatorServer, args: argparse.Namespace, index: int, workdir: Path
) -> Deployment:
    mode = MODES[index % len(MODES)]
    condition = condition_for(index) if args.faults else CONDITIONS[0]
    events = workdir / f"{index:04d}-{mode.name}.jsonl"
    env = {
        **BASE_ENV,
        **mode.env,
        "FLEET_MODE": mode.name,
        "FLEET_EVENTS": str(events),
        "PYTHONPATH": str(ROOT),
    }
    launched = time.time()
    request_id = await emu.deploy(
        app="fleet-broken" if mode.name == "broken_stdout" else "fleet",
        environment_variables=[
            {"key": key, "value": value, "is_hidden": False} for key, value in env.items()
        ],
    )
    deployment = Deployment(index, mode, condition, request_id, events, launched)
    if condition.active:
        # When the stop would be due if nothing took time to start: the real due time comes a
        # start-up later (0.5-3 s, with the load), so the stop meets the fault inside it.
        starts_in = max(0.0, launched + mode.nominal - time.time())
        deployment.windows.append(
            await add_window(
                emu,
                label=condition.name,
                status=condition.status,
                retry_after=condition.retry_after,
                delay=condition.delay(args),
                starts_in=starts_in,
                duration=condition.length(args),
                request_id=request_id,
            )
        )
    return deployment


async def wait_terminated(emu: EmulatorServer, request_id: str, deadline: float) -> float | None:
    """When the deployment terminated (wall clock), or None if it had not by `deadline`.

    One deployment at a time: a single connection, whatever the size of the fleet."""
    while (left := deadline - time.time()) > 0:
        try:
            body = await emu.wait_for_status(
                request_id, "Status.TERMINATED", timeout=min(60.0, left)
            )
        except TimeoutError:
            continue
        removed = datetime.datetime.strptime(body["removal_time"], TIME_FORMAT)
        return removed.replace(tzinfo=datetime.UTC).timestamp()
    return None


async def raw_logs(http: aiohttp.ClientSession, base: str, request_id: str) -> bytes | None:
    async with http.get(f"{base}/_emulator/deployments/{request_id}/logs") as response:
        return await response.read() if response.status == 200 else None


class LoadSampler:
    """Machine CPU and memory once a second: lateness on a saturated machine means little."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.used_gib: list[float] = []

    async def run(self) -> None:
        psutil.cpu_percent(interval=None)
        while True:
            await asyncio.sleep(1.0)
            self.cpu.append(psutil.cpu_percent(interval=None))
            self.used_gib.append(psutil.virtual_memory().used / 2**30)

    def summary(self) -> dict[str, float | None]:
        if not self.cpu:
            return {"cpu_mean_pct": None, "cpu_max_pct": None, "mem_peak_gib": None}
        return {
            "cpu_mean_pct": round(sum(self.cpu) / len(self.cpu), 1),
            "cpu_max_pct": round(max(self.cpu), 1),
            "mem_peak_gib": round(max(self.used_gib), 2),
        }


def raise_fd_limit() -> None:
    """Each deployment holds pipes and connections in this process: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
