"""Measurement 1: local API throughput and latency, the sidecar against a bare aiohttp app.

`POST /v1/health` and `GET /v1/status` at 16 connections, for `sidecar serve` and for
`benchmarks/bare_app.py` answering the same bodies, so the ratio sidecar / bare is what our own
code costs. Load comes from wrk when installed, else from `loadgen` in its own process; server
and load generator are pinned to different cores when `taskset` exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.core.harness import (
    PYTHON,
    ROOT,
    Children,
    free_port,
    pinned,
    rss_mb,
    running,
    wait_http_ok,
)
from benchmarks.core.loadgen import CONNECTIONS

SERVERS = ("sidecar", "bare")


@dataclass(frozen=True)
class Route:
    name: str  # as in the JSON keys: "health", "status"
    method: str
    path: str
    wrk_script: str | None  # wrk's Lua for anything but a bodiless GET

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = (
    Route("health", "POST", "/v1/health", 'wrk.method = "POST"\nwrk.body = ""\n'),
    Route("status", "GET", "/v1/status", None),
)


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str
    # Server CPU (user + system) per request over the measured run: unlike req/s it barely
    # moves when other work shares the machine, so its ratio is the steadier figure.
    cpu_us: float = float("nan")

    @property
    def core_busy_percent(self) -> float:
        """How much of its core the server got: well under 100% means other work took the
        rest, and that run's req/s (not its CPU per request) understates the server."""
        return self.rps * self.cpu_us / 1e4


@dataclass
class Runs:
    """Every load run of one server on one route."""

    server: str
    route: Route
    rounds: list[LoadResult] = field(default_factory=list)
    # One connection, one request at a time: latency without queueing (wrk only, first round).
    single: LoadResult | None = None

    @property
    def kept(self) -> LoadResult:
        """The round with the least CPU per request: other work on a shared machine only makes
        runs worse."""
        return min(self.rounds, key=lambda r: r.cpu_us)


@dataclass
class Throughput:
    tool: str
    pinning: str
    # In the order measured: each server in turn, each route in turn.
    runs: list[Runs] = field(
        default_factory=lambda: [Runs(server, route) for server in SERVERS for route in ROUTES]
    )
    rss_after_load_mb: float = 0.0
    bare_rss_after_load_mb: float = 0.0  # the bare aiohttp app's, for the ratio

    def of(self, server: str, route: str) -> Runs:
        return next(r for r in self.runs if (r.server, r.route.name) == (server, route))


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if match is None:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{text}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def _wrk_count(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in wrk output:\n{text}")
    return match.group(1)


def run_wrk(
    url: str, lua: Path | None, seconds: float, cpu: str | None, connections: int = CONNECTIONS
) -> LoadResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if lua is not None:
        argv += ["-s", str(lua)]
    out = subprocess.run(
        pinned([*argv, url], cpu), capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    rps = float(_wrk_count(r"Requests/sec:\s+([\d.]+)", out))
    total = int(_wrk_count(r"(\d+) requests in", out))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock_errors = re.search(r"Socket errors:.*", out)
    errors = int(bad.group(1)) if bad else 0
    if sock_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", sock_errors.group(0)))
    return LoadResult(rps, _wrk_ms(out, "50"), _wrk_ms(out, "99"), total, errors, "wrk")


def run_loadgen(
    children: Children, url: str, method: str, seconds: float, cpu: str | None
) -> LoadResult:
    """The fallback load generator, in its own (pinned) process so it does not share our GIL."""
    out = subprocess.run(
        pinned([PYTHON, "-m", "benchmarks.core.loadgen", url, method, str(seconds)], cpu),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
        cwd=ROOT,
        env=children.env(),
    ).stdout
    return LoadResult(tool="aiohttp client", **json.loads(out))


def _write_script(directory: Path, route: Route) -> Path | None:
    if route.wrk_script is None:
        return None
    path = directory / f"{route.name}.lua"
    path.write_text(route.wrk_script)
    return path


def measure(children: Children, seconds: float, warmup: float, rounds: int) -> Throughput:
    """Sidecar and bare app alternate, `rounds` times, each in a fresh process."""
    have_wrk = shutil.which("wrk") is not None
    cores = len(os.sched_getaffinity(0))
    can_pin = shutil.which("taskset") is not None and cores >= 2
    server_cpu, load_cpu = ("0", "1") if can_pin else (None, None)
    out = Throughput(
        tool="wrk -t1 -c16 --latency" if have_wrk else "aiohttp client, 16 connections",
        pinning="server on CPU 0, load on CPU 1" if can_pin else "not pinned",
    )

    def load(url: str, route: Route, lua: Path | None, run_seconds: float) -> LoadResult:
        if have_wrk:
            return run_wrk(url, lua, run_seconds, load_cpu)
        return run_loadgen(children, url, route.method, run_seconds, load_cpu)

    with tempfile.TemporaryDirectory() as tmp:
        scripts = {route.name: _write_script(Path(tmp), route) for route in ROUTES}
        for round_ in range(rounds):
            for server in SERVERS:
                port = free_port()
                # The health timer is armed by the heartbeats; keep it far away so the load
                # never turns into an `unhealthy` stop and the status body keeps its shape.
                proc = (
                    children.spawn_sidecar(port, {"SIDECAR_HEALTH_TIMEOUT": "10m"}, cpu=server_cpu)
                    if server == "sidecar"
                    else children.spawn_bare(port, server_cpu)
                )
                with running(proc):
                    wait_http_ok(port, proc)
                    process = psutil.Process(proc.pid)
                    for route in ROUTES:
                        url = f"http://127.0.0.1:{port}{route.path}"
                        lua = scripts[route.name]
                        load(url, route, lua, warmup)
                        before = process.cpu_times()
                        result = load(url, route, lua, seconds)
                        after = process.cpu_times()
                        used = (after.user - before.user) + (after.system - before.system)
                        result = dataclasses.replace(
                            result, cpu_us=used / max(1, result.requests) * 1e6
                        )
                        runs = out.of(server, route.name)
                        runs.rounds.append(result)
                        if have_wrk and round_ == 0:
                            runs.single = run_wrk(
                                url, lua, min(seconds, 3.0), load_cpu, connections=1
                            )
                    if server == "sidecar":
                        out.rss_after_load_mb = rss_mb(proc.pid)
                    else:
                        out.bare_rss_after_load_mb = rss_mb(proc.pid)
    return out
