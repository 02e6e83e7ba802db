"""The Agones gRPC transport's figures: CPU per call, latency, idle CPU, RSS; next to Agones'.

`sidecar serve` with SIDECAR_AGONES=true runs in its own process (pinned to CPU 0 when there are
two); a grpcio client with stubs generated from Agones' protos (tests/agones_protos.py) runs
here, on CPU 1. Measured:

* unary `Ready` and `GetGameServer`: --calls sequential calls each; the server's CPU time per
  call (psutil, user + system, over the whole run) and the client's p50/p99 round trip; the
  same calls over the REST facade on one keep-alive connection, for comparison;
* the `Health` stream: --calls messages on one open stream; the server's CPU per ping;
* idle: the server's CPU over 5 s with an open Health stream and an open WatchGameServer;
* RSS after the same short session: Agones off, the REST facade alone (the gRPC transport
  replaced by a stub that imports nothing, this bench's only seam), REST + gRPC.

With `--sdk-server PATH` (Agones' own `sdk-server` binary, built from its repository; this
bench never builds or fetches it), Agones' `sdk-server --local` gets the same unary and Health
stream calls in the same run, pinned the same way, alternating with the sidecar round by round,
and both servers' RSS is taken idle (started, one GetGameServer answered) and after the load.

Usage: python -m benchmarks.agones_grpc [--calls 2000] [--rounds 3] [--sdk-server PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

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

# `sidecar serve` with the gRPC transport replaced by a stub: the REST facade alone.
WITHOUT_GRPC = """
import sys, types
stub = types.ModuleType("sidecar.agones.grpc_server")
class AgonesGrpc:
    def __init__(self, sdk, *, port=0):
        self.port = 0
    async def start(self):
        return 0
    async def close(self):
        pass
stub.AgonesGrpc = AgonesGrpc
sys.modules["sidecar.agones.grpc_server"] = stub
from sidecar.cli import main
sys.argv = ["edgegap-sidecar", "serve"]
sys.exit(main())
"""


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def spawn(
    port: int, grpc_port: int, *, agones: bool, grpc: bool, cpu: str | None, http_port: int = 0
) -> Any:
    env = {"SIDECAR_HEALTH_TIMEOUT": "10m"}
    if agones:
        env |= {
            "SIDECAR_AGONES": "true",
            "SIDECAR_AGONES_HTTP_PORT": str(http_port or free_port()),
            "SIDECAR_AGONES_GRPC_PORT": str(grpc_port),
        }
    children = Children()
    if grpc or not agones:
        return children.spawn_sidecar(port, env, cpu=cpu)
    full_env = children.env({"SIDECAR_HOST": "127.0.0.1", "SIDECAR_PORT": str(port), **env})
    return subprocess.Popen(
        pinned([PYTHON, "-c", WITHOUT_GRPC], cpu),
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def spawn_agones(sdk_server: str, grpc_port: int, cpu: str | None) -> Any:
    """Agones' `sdk-server --local` (its default GameServer), gRPC on `grpc_port`."""
    argv = [sdk_server, "--local", "--address", "127.0.0.1", "--grpc-port", str(grpc_port)]
    argv += ["--http-port", str(free_port()), "--health-port", str(free_port())]
    return subprocess.Popen(
        pinned(argv, cpu),
        cwd=ROOT,
        env=Children().env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Stubs:
    def __init__(self, protos: dict[str, ModuleType], port: int) -> None:
        import grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.pb = protos["sdk_pb2"]
        self.sdk = protos["sdk_pb2_grpc"].SDKStub(self.channel)
        self.alpha_pb = protos["alpha_pb2"]
        self.alpha = protos["alpha_pb2_grpc"].SDKStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def unary(stubs: Stubs, pid: int, method: str, calls: int) -> dict[str, float]:
    call = getattr(stubs.sdk, method)
    empty = stubs.pb.Empty()
    for _ in range(50):  # warm-up
        call(empty)
    latencies = []
    cpu_before = cpu_seconds(pid)
    for _ in range(calls):
        started = time.perf_counter()
        call(empty)
        latencies.append(time.perf_counter() - started)
    cpu = cpu_seconds(pid) - cpu_before
    latencies.sort()
    return {
        "cpu_us": cpu / calls * 1e6,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


def rest_sequential(pid: int, port: int, method: str, path: str, calls: int) -> dict[str, float]:
    """The same over the REST facade, one keep-alive connection, for comparison."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = b"{}" if method == "POST" else None

    def one() -> None:
        connection.request(method, path, body=body)
        connection.getresponse().read()

    for _ in range(50):
        one()
    latencies = []
    cpu_before = cpu_seconds(pid)
    for _ in range(calls):
        started = time.perf_counter()
        one()
        latencies.append(time.perf_counter() - started)
    cpu = cpu_seconds(pid) - cpu_before
    connection.close()
    latencies.sort()
    return {
        "cpu_us": cpu / calls * 1e6,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
    }


def health_stream(stubs: Stubs, pid: int, calls: int) -> dict[str, float]:
    empty = stubs.pb.Empty()

    def pings() -> Iterator[Any]:
        for _ in range(calls):
            yield empty

    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    stubs.sdk.Health(pings())  # answered once the stream ends: every ping was read
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    return {"cpu_us": cpu / calls * 1e6, "per_s": calls / elapsed}


def idle_cpu(stubs: Stubs, pid: int, seconds: float = 5.0) -> float:
    """Server CPU seconds over `seconds` with a Health stream and a watch open, nothing sent."""
    import threading

    stop = threading.Event()
    empty = stubs.pb.Empty()

    def held_open() -> Iterator[Any]:
        yield empty
        stop.wait()

    health = stubs.sdk.Health.future(held_open())
    watch = stubs.sdk.WatchGameServer(empty)
    next(watch)  # the current GameServer: the watch is open
    time.sleep(0.5)
    before = cpu_seconds(pid)
    time.sleep(seconds)
    used = cpu_seconds(pid) - before
    stop.set()
    watch.cancel()
    health.result(timeout=5)
    return used


def session_rss(protos: dict[str, ModuleType], *, agones: bool, grpc: bool) -> float:
    """RSS after a short session: ready, heartbeats, players, GameServer reads."""
    port, grpc_port = free_port(), free_port()
    proc = spawn(port, grpc_port, agones=agones, grpc=grpc, cpu=None)
    with running(proc):
        wait_http_ok(port, proc)
        base = f"http://127.0.0.1:{port}"
        calls = [("POST", "/v1/ready", b"")] + [("POST", "/v1/health", b"")] * 20
        calls += [("POST", "/v1/players/connect", b'{"player_id": "p%d"}' % i) for i in range(20)]
        calls += [("GET", "/v1/status", None)] * 20
        for method, path, data in calls:
            request = urllib.request.Request(base + path, data=data, method=method)
            urllib.request.urlopen(request, timeout=5).read()
        if agones and grpc:
            stubs = Stubs(protos, grpc_port)
            empty = stubs.pb.Empty()
            stubs.sdk.Health(iter([empty] * 20))
            for _ in range(20):
                stubs.sdk.GetGameServer(empty)
            stubs.close()
        time.sleep(0.5)
        return rss_mb(proc.pid)


def grpc_round(
    protos: dict[str, ModuleType], proc: Any, grpc_port: int, calls: int
) -> tuple[dict[str, dict[str, float]], float, float, float]:
    """The gRPC calls on one started server: (rows, idle CPU s, RSS idle, RSS after load)."""
    stubs = Stubs(protos, grpc_port)
    stubs.sdk.GetGameServer(stubs.pb.Empty())
    time.sleep(0.5)
    rss_idle = rss_mb(proc.pid)
    rows = {
        "Ready (unary)": unary(stubs, proc.pid, "Ready", calls),
        "GetGameServer (unary)": unary(stubs, proc.pid, "GetGameServer", calls),
        "Health (stream, per ping)": health_stream(stubs, proc.pid, calls * 5),
    }
    idle = idle_cpu(stubs, proc.pid)
    stubs.close()
    return rows, idle, rss_idle, rss_mb(proc.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sdk-server", default=None, help="Agones' sdk-server binary, measured in the same run"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.agones_protos import generate

    protos = generate(Path(tempfile.mkdtemp(prefix="agones-protos-")))
    two_cpus = (os.cpu_count() or 1) >= 2
    if two_cpus:
        os.sched_setaffinity(0, {1})
    cpu = "0" if two_cpus else None
    servers = ["sidecar"] + (["agones"] if args.sdk_server else [])
    names = {"sidecar": "sidecar serve", "agones": "Agones sdk-server --local"}
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    idle: dict[str, list[float]] = {server: [] for server in servers}
    rss: dict[str, list[tuple[float, float]]] = {server: [] for server in servers}
    for round_number in range(args.rounds):
        # Alternate which server goes first, so neither always gets the quieter half.
        order = servers if round_number % 2 == 0 else servers[::-1]
        for server in order:
            grpc_port = free_port()
            if server == "agones":
                proc = spawn_agones(args.sdk_server, grpc_port, cpu)
                rest = None
            else:
                port, http_port = free_port(), free_port()
                proc = spawn(port, grpc_port, agones=True, grpc=True, cpu=cpu, http_port=http_port)
                rest = (port, http_port)
            with running(proc):
                if rest is not None:
                    wait_http_ok(rest[0], proc)
                    rows.setdefault(("REST POST /ready", server), []).append(
                        rest_sequential(proc.pid, rest[1], "POST", "/ready", args.calls)
                    )
                    rows.setdefault(("REST GET /gameserver", server), []).append(
                        rest_sequential(proc.pid, rest[1], "GET", "/gameserver", args.calls)
                    )
                found, idle_s, rss_idle, rss_loaded = grpc_round(
                    protos, proc, grpc_port, args.calls
                )
                for call, result in found.items():
                    rows.setdefault((call, server), []).append(result)
                idle[server].append(idle_s)
                rss[server].append((rss_idle, rss_loaded))
    session = {
        name: statistics.median(
            session_rss(protos, agones=agones, grpc=grpc) for _ in range(args.rounds)
        )
        for name, agones, grpc in (
            ("Agones off", False, False),
            ("REST facade alone", True, False),
            ("REST + gRPC", True, True),
        )
    }
    print(
        f"# Agones gRPC transport — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load "
        f"{os.getloadavg()[0]:.1f}; best of {args.rounds} rounds (least server CPU)\n"
    )
    print("| call | server | server CPU per call | p50 | p99 | rate | CPU vs Agones |")
    print("|---|---|---:|---:|---:|---:|---:|")
    best = {key: min(results, key=lambda r: r["cpu_us"]) for key, results in rows.items()}
    for (call, server), result in best.items():
        p50 = f"{result['p50_ms']:.2f} ms" if "p50_ms" in result else "—"
        p99 = f"{result['p99_ms']:.2f} ms" if "p99_ms" in result else "—"
        rate = f"{result['per_s']:.0f}/s" if "per_s" in result else "—"
        agones = best.get((call, "agones"))
        ratio = f"{result['cpu_us'] / agones['cpu_us']:.2f}x" if agones else "—"
        print(
            f"| {call} | {names[server]} | {result['cpu_us']:.0f} µs | {p50} | {p99} | {rate} "
            f"| {ratio} |"
        )
    print("\nAll rounds, server CPU per call (µs):")
    for (call, server), results in rows.items():
        figures = " / ".join(f"{result['cpu_us']:.0f}" for result in results)
        print(f"* {call}, {names[server]}: {figures}")
    print(
        "\n| server | idle CPU over 5 s, Health stream and watch open (max) "
        "| RSS idle | RSS after load |"
    )
    print("|---|---:|---:|---:|")
    for server in servers:
        idle_rss = statistics.median(r[0] for r in rss[server])
        loaded_rss = statistics.median(r[1] for r in rss[server])
        print(
            f"| {names[server]} | {max(idle[server]) * 1000:.1f} ms | {idle_rss:.1f} MiB "
            f"| {loaded_rss:.1f} MiB |"
        )
    print(f"\n(RSS: median of {args.rounds} starts each)\n")
    print("| sidecar serve after a short session | RSS (median) |")
    print("|---|---|")
    for name, value in session.items():
        print(f"| {name} | {value:.1f} MiB |")
    grpc_cost = session["REST + gRPC"] - session["REST facade alone"]
    print(f"\ngRPC on adds {grpc_cost:+.1f} MiB to the REST facade alone (target: within 2 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
