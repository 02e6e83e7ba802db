"""The Agones facade's figures (docs/benchmarks.md, "Agones SDK facade").

`POST /health` and `GET /gameserver` at 16 connections on the facade of `sidecar serve`
(SIDECAR_AGONES=true), next to a bare aiohttp app answering the same bytes (the GameServer body
is captured from a real facade at the start of the run), and next to Agones' own
`sdk-server --local` when its binary is given (`--sdk-server PATH`; the bench does not build
it). Servers alternate for --rounds rounds, each in a fresh process pinned to CPU 0 with wrk on
CPU 1, and for each the round with the least server CPU per request is kept, as in
benchmarks/core. Then the RSS of `sidecar serve` with the facade on and off, after the same
short session.

Usage: python -m benchmarks.agones_bench [--seconds 6] [--rounds 3] [--sdk-server PATH]
Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from aiohttp import web

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
from benchmarks.core.throughput import LoadResult, run_wrk

ROUTES = (
    ("POST /health", "/health", 'wrk.method = "POST"\nwrk.body = "{}"\n'),
    ("GET /gameserver", "/gameserver", None),
)


def bare_main(port: int, gameserver_file: str) -> None:
    """A bare aiohttp app: the facade's two answers as constants."""
    gameserver = Path(gameserver_file).read_bytes()

    async def health(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"{}", content_type="application/json")

    async def get_gameserver(request: web.Request) -> web.Response:
        return web.Response(body=gameserver, content_type="application/json")

    app = web.Application()
    app.router.add_post("/health", health)
    app.router.add_get("/gameserver", get_gameserver, allow_head=False)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def wait_ok(url: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def spawn(
    children: Children, server: str, port: int, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    cpu = "0"
    if server == "facade":
        env = {
            "SIDECAR_AGONES": "true",
            "SIDECAR_AGONES_HTTP_PORT": str(port),
            "SIDECAR_HEALTH_TIMEOUT": "10m",
        }
        return children.spawn_sidecar(free_port(), env, cpu=cpu)
    if server == "bare":
        argv = [PYTHON, "-m", "benchmarks.agones_bench", "--bare", str(port), args.body_file]
    else:
        argv = [args.sdk_server, "--local", "--address", "127.0.0.1"]
        argv += ["--http-port", str(port), "--grpc-port", str(free_port())]
        argv += ["--health-port", str(free_port())]
    return subprocess.Popen(
        pinned(argv, cpu),
        cwd=ROOT,
        env=children.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[LoadResult]]]:
    children = Children()
    servers = ["facade", "bare"] + (["agones"] if args.sdk_server else [])
    results: dict[str, dict[str, list[LoadResult]]] = {
        s: {r[0]: [] for r in ROUTES} for s in servers
    }
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for label, _, lua in ROUTES:
            if lua is not None:
                scripts[label] = Path(tmp) / f"{label.split()[1].strip('/')}.lua"
                scripts[label].write_text(lua)
        # The bare app answers what a real facade answers.
        port = free_port()
        with running(spawn(children, "facade", port, args)):
            body = wait_ok(f"http://127.0.0.1:{port}/gameserver")
        args.body_file = str(Path(tmp) / "gameserver.json")
        Path(args.body_file).write_bytes(body)
        for _ in range(args.rounds):
            for server in servers:
                port = free_port()
                proc = spawn(children, server, port, args)
                with running(proc):
                    wait_ok(f"http://127.0.0.1:{port}/gameserver")
                    process = psutil.Process(proc.pid)
                    for label, path, _ in ROUTES:
                        url = f"http://127.0.0.1:{port}{path}"
                        run_wrk(url, scripts.get(label), args.warmup, "1")
                        before = process.cpu_times()
                        result = run_wrk(url, scripts.get(label), args.seconds, "1")
                        after = process.cpu_times()
                        used = (after.user - before.user) + (after.system - before.system)
                        result = dataclasses.replace(
                            result, cpu_us=used / max(1, result.requests) * 1e6
                        )
                        results[server][label].append(result)
    return results


def session_rss(agones: bool) -> float:
    """RSS of `sidecar serve` after a short session: ready, heartbeats, players, status."""
    children = Children()
    port, agones_port = free_port(), free_port()
    env = {"SIDECAR_HEALTH_TIMEOUT": "10m"}
    if agones:
        env |= {"SIDECAR_AGONES": "true", "SIDECAR_AGONES_HTTP_PORT": str(agones_port)}
    proc = children.spawn_sidecar(port, env)
    with running(proc):
        wait_http_ok(port, proc)
        base = f"http://127.0.0.1:{port}"
        calls = [("POST", "/v1/ready", b"")] + [("POST", "/v1/health", b"")] * 20
        calls += [("POST", "/v1/players/connect", b'{"player_id": "p%d"}' % i) for i in range(20)]
        calls += [("GET", "/v1/status", None)] * 20
        for method, path, data in calls:
            request = urllib.request.Request(base + path, data=data, method=method)
            urllib.request.urlopen(request, timeout=5).read()
        if agones:
            wait_ok(f"http://127.0.0.1:{agones_port}/gameserver")
            for _ in range(20):
                request = urllib.request.Request(
                    f"http://127.0.0.1:{agones_port}/health", data=b"{}", method="POST"
                )
                urllib.request.urlopen(request, timeout=5).read()
                wait_ok(f"http://127.0.0.1:{agones_port}/gameserver")
        time.sleep(0.5)
        return rss_mb(proc.pid)


def report(results: dict[str, dict[str, list[LoadResult]]], rss: dict[bool, list[float]]) -> str:
    names = {
        "facade": "sidecar facade",
        "bare": "bare aiohttp",
        "agones": "Agones sdk-server --local",
    }
    lines = [
        "| route | server | req/s | p50 ms | p99 ms | CPU µs/req | server core busy | errors "
        "| vs bare: req/s, **CPU** |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _, _ in ROUTES:
        kept = {s: min(r[label], key=lambda x: x.cpu_us) for s, r in results.items()}
        bare = kept["bare"]
        for server, run in kept.items():
            ratio = (
                ""
                if server == "bare"
                else f"{run.rps / bare.rps:.2f}x, **{bare.cpu_us / run.cpu_us:.2f}x**"
            )
            lines.append(
                f"| {label} | {names[server]} | {run.rps:,.0f} | {run.p50_ms:.2f} | "
                f"{run.p99_ms:.2f} | {run.cpu_us:.1f} | {run.core_busy_percent:.0f}% | "
                f"{run.errors} | {ratio} |"
            )
    lines.append("")
    rounds = "; ".join(
        f"{names[s]} {label}: " + " / ".join(f"{r.rps:,.0f}" for r in runs)
        for s, by_route in results.items()
        for label, runs in by_route.items()
    )
    lines.append(f"All rounds, req/s: {rounds}")
    lines.append("")
    on, off = statistics.median(rss[True]), statistics.median(rss[False])
    lines.append("| `sidecar serve` after the same session (median of 3) | RSS |")
    lines.append("|---|---:|")
    lines.append(f"| facade off | {off:.1f} MB |")
    lines.append(
        f"| facade on (`SIDECAR_AGONES=true`, 20 Agones pings and reads too) | {on:.1f} MB |"
    )
    lines.append(f"| difference | {on - off:+.2f} MB |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sdk-server", default=None, help="Agones' sdk-server binary")
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "BODY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_main(int(args.bare[0]), args.bare[1])
        return 0
    if shutil.which("wrk") is None:
        print("agones_bench needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    results = measure(args)
    rss = {on: [session_rss(on) for _ in range(3)] for on in (False, True)}
    print(report(results, rss))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
