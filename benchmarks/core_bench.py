"""Core figures of the sidecar, in one run (about a minute), printed as a markdown table.

1. Local API throughput and latency: `POST /v1/health` and `GET /v1/status` at 16 connections,
   for `sidecar serve` and for a bare aiohttp app answering the same bodies
   (`benchmarks/bare_app.py`), so the ratio sidecar / bare is what our own code costs. Load comes
   from wrk (`apt-get install wrk`) or, without it, from an aiohttp load generator in its own
   process; server and load generator are pinned to different cores when `taskset` exists.
2. Memory: RSS after a realistic session (ready, match, players in and out, heartbeats, status,
   metrics: a few hundred calls), RSS right after the load test, and for reference the RSS of a
   process that only imports aiohttp.web + pydantic. CPU time of an idle sidecar over 30 s.
3. Start-up: process spawn → `/healthz` answers (median of 10), with an import profile
   (`python -X importtime`) of `serve` showing what dominates.
4. Stop latency: a decided stop (`POST /v1/shutdown {"grace_seconds": 0}`) → the self-stop
   `DELETE` received by the platform (the in-process emulator, which records its arrival),
   with a fresh sidecar per sample.

Every server is a child process on loopback (ephemeral ports) and is always terminated; every
wait is bounded. Usage: ``scripts/bench [--quick] [--json PATH]`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the emulator (section 4) runs in this process
from sidecar.config import without_sidecar_variables  # noqa: E402

PYTHON = sys.executable  # the real interpreter, never a pyenv shim: start-up is measured
CONNECTIONS = 16

TARGETS = {
    "health_ratio": 0.90,
    "status_ratio": 0.85,
    "p99_ms": 1.0,
    "rss_session_mb": 45.0,
    "rss_load_mb": 47.0,
    "idle_cpu_s": 0.03,
    "startup_s": 0.25,
    "stop_p99_ms": 20.0,
}


# ---- processes and loopback HTTP ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Children read and write bytecode here, like an installed wheel whose .pyc were compiled at
# install time, without writing __pycache__ into the work tree (and whatever
# PYTHONDONTWRITEBYTECODE says). `main()` sets it and warms it before anything is timed.
PYCACHE: str | None = None


def child_env(extra: dict[str, str] | None = None, bytecode_cache: bool = True) -> dict[str, str]:
    """This environment without platform variables (dry-run unless `extra` sets them)."""
    env = without_sidecar_variables(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONPYCACHEPREFIX", None)
    if bytecode_cache and PYCACHE is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # never write into the work tree
    env.update(extra or {})
    return env


def pinned(argv: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def spawn_sidecar(
    port: int,
    env: dict[str, str] | None = None,
    cpu: str | None = None,
    python_flags: Sequence[str] = (),
    stderr: Any = subprocess.DEVNULL,
    bytecode_cache: bool = True,
) -> subprocess.Popen[bytes]:
    full_env = child_env(
        {"SIDECAR_HOST": "127.0.0.1", "SIDECAR_PORT": str(port), **(env or {})}, bytecode_cache
    )
    return subprocess.Popen(
        pinned([PYTHON, *python_flags, "-m", "sidecar", "serve"], cpu),
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def spawn_bare(port: int, cpu: str | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        pinned([PYTHON, str(ROOT / "benchmarks" / "bare_app.py"), str(port)], cpu),
        cwd=ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def server_pid(proc: subprocess.Popen[bytes]) -> int:
    """The Python process itself (taskset execs, so it is the same PID)."""
    return proc.pid


def stop_process(
    proc: subprocess.Popen[bytes], timeout: float = 5.0, sig: int = signal.SIGKILL
) -> None:
    """Teardown. SIGKILL by default: nothing here needs a graceful exit, and a slow SIGTERM
    path (measured on its own by `shutdown_times`) must not stretch the rest of the bench."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        stop_process(proc)


def wait_http_ok(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0
) -> float:
    """Poll `GET /healthz` as fast as connect() is refused; returns when it answers 200."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(request)
                head = sock.recv(64)
            if head.startswith(b"HTTP/1.1 200"):
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.001)
    raise TimeoutError(f"nothing answered /healthz on port {port} within {timeout}s")


class Client:
    """A keep-alive JSON client for scripted sessions (what a game's HTTP client does)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
        self.calls = 0

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        self.calls += 1
        if response.status >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status}: {payload[:200]!r}")
        return response.status, payload

    def close(self) -> None:
        self.conn.close()


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


# ---- 1. throughput ---------------------------------------------------------------------------


@dataclass
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


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, percentile: str) -> float:
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if match is None:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{text}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def run_wrk(
    url: str, lua: Path | None, seconds: float, cpu: str | None, connections: int = CONNECTIONS
) -> LoadResult:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if lua is not None:
        argv += ["-s", str(lua)]
    out = subprocess.run(
        pinned([*argv, url], cpu), capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock_errors = re.search(r"Socket errors:.*", out)
    errors = int(bad.group(1)) if bad else 0
    if sock_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", sock_errors.group(0)))
    return LoadResult(rps, _wrk_ms(out, "50"), _wrk_ms(out, "99"), total, errors, "wrk")


async def _aiohttp_load(url: str, method: str, seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < end:
                async with session.request(method, url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - now)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "requests": len(latencies),
        "errors": errors,
    }


def run_aiohttp_load(url: str, method: str, seconds: float, cpu: str | None) -> LoadResult:
    """The fallback load generator, in its own (pinned) process so it does not share our GIL."""
    out = subprocess.run(
        pinned([PYTHON, __file__, "--loadgen", url, method, str(seconds)], cpu),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
        env=child_env(),
    ).stdout
    data = json.loads(out)
    return LoadResult(tool="aiohttp client", **data)


@dataclass
class Throughput:
    results: dict[tuple[str, str], LoadResult] = field(default_factory=dict)  # kept round
    rounds: dict[tuple[str, str], list[LoadResult]] = field(default_factory=dict)
    # One connection, one request at a time: latency without queueing (wrk only).
    single: dict[tuple[str, str], LoadResult] = field(default_factory=dict)
    rss_after_load_mb: float = 0.0
    tool: str = ""
    pinning: str = ""


def throughput(seconds: float, warmup: float, rounds: int) -> Throughput:
    """Sidecar and bare app alternate, `rounds` times, each in a fresh process; the round with
    the least CPU per request is kept (other work on a shared machine only makes runs worse)."""
    have_wrk = shutil.which("wrk") is not None
    cores = len(os.sched_getaffinity(0))
    can_pin = shutil.which("taskset") is not None and cores >= 2
    server_cpu, load_cpu = ("0", "1") if can_pin else (None, None)
    out = Throughput(
        tool="wrk -t1 -c16 --latency" if have_wrk else "aiohttp client, 16 connections",
        pinning="server on CPU 0, load on CPU 1" if can_pin else "not pinned",
    )
    with tempfile.TemporaryDirectory() as tmp:
        post_lua = Path(tmp) / "post.lua"
        post_lua.write_text('wrk.method = "POST"\nwrk.body = ""\n')
        routes = [("health", "POST", "/v1/health", post_lua), ("status", "GET", "/v1/status", None)]
        for round_ in range(rounds):
            for server in ("sidecar", "bare"):
                port = free_port()
                # The health timer is armed by the heartbeats; keep it far away so the load
                # never turns into an `unhealthy` stop and the status body keeps its shape.
                proc = (
                    spawn_sidecar(port, {"SIDECAR_HEALTH_TIMEOUT": "10m"}, cpu=server_cpu)
                    if server == "sidecar"
                    else spawn_bare(port, server_cpu)
                )
                with running(proc):
                    wait_http_ok(port, proc)
                    process = psutil.Process(server_pid(proc))
                    for name, method, path, lua in routes:
                        url = f"http://127.0.0.1:{port}{path}"
                        if have_wrk:
                            run_wrk(url, lua, warmup, load_cpu)
                        else:
                            run_aiohttp_load(url, method, warmup, load_cpu)
                        before = process.cpu_times()
                        if have_wrk:
                            result = run_wrk(url, lua, seconds, load_cpu)
                        else:
                            result = run_aiohttp_load(url, method, seconds, load_cpu)
                        after = process.cpu_times()
                        used = (after.user - before.user) + (after.system - before.system)
                        result.cpu_us = used / max(1, result.requests) * 1e6
                        out.rounds.setdefault((server, name), []).append(result)
                        if have_wrk and round_ == 0:
                            out.single[(server, name)] = run_wrk(
                                url, lua, min(seconds, 3.0), load_cpu, connections=1
                            )
                    if server == "sidecar":
                        out.rss_after_load_mb = rss_mb(server_pid(proc))
    for key, results in out.rounds.items():
        out.results[key] = min(results, key=lambda r: r.cpu_us)
    return out


# ---- 2. memory and idle CPU ------------------------------------------------------------------


def realistic_session(client: Client, players: int = 40) -> None:
    """What a match looks like from the game: about 300 calls."""
    client.call("GET", "/v1/deployment")
    client.call("POST", "/v1/ready")
    client.call("POST", "/v1/match/start", {"match_id": "bench-match-1"})
    for i in range(players):
        client.call("POST", "/v1/players/connect", {"player_id": f"player-{i:03d}"})
        client.call("POST", "/v1/health")
        if i % 4 == 0:
            client.call("GET", "/v1/status")
    for round_ in range(20):
        client.call("POST", "/v1/health")
        client.call("GET", "/v1/players")
        if round_ % 5 == 0:
            client.call("GET", "/metrics")
            client.call("POST", "/v1/activity")
    client.call("POST", "/v1/hold", {"seconds": 30})
    client.call("POST", "/v1/hold", {"seconds": 0})
    for i in range(0, players, 2):  # half of them leave, some come back
        client.call("POST", "/v1/players/disconnect", {"player_id": f"player-{i:03d}"})
        client.call("POST", "/v1/health")
    for i in range(0, players, 4):
        client.call("POST", "/v1/players/connect", {"player_id": f"player-{i:03d}"})
    client.call("PUT", "/v1/players", {"player_ids": [f"player-{i:03d}" for i in range(10)]})
    for _ in range(20):
        client.call("GET", "/v1/status")
        client.call("GET", "/metrics")


def reference_rss_mb(code: str) -> float:
    probe = (
        f"{code}\nimport os\nfor line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]))"
    )
    out = subprocess.run(
        [PYTHON, "-c", probe], capture_output=True, text=True, check=True, env=child_env()
    ).stdout
    return int(out) / 1024


class IdleProbe:
    """CPU time an idle sidecar uses over `seconds`, sampled from a timer thread so the rest of
    the bench can run meanwhile (an idle process's own CPU time does not depend on them)."""

    def __init__(self, pid: int, seconds: float) -> None:
        self.process = psutil.Process(pid)
        self.seconds = seconds
        self.cpu_s: float | None = None
        self.wakeups: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        before = self.process.cpu_times()
        ctx_before = self.process.num_ctx_switches().voluntary
        time.sleep(self.seconds)
        after = self.process.cpu_times()
        self.wakeups = self.process.num_ctx_switches().voluntary - ctx_before
        self.cpu_s = (after.user - before.user) + (after.system - before.system)

    def join(self) -> None:
        self._thread.join(self.seconds + 10)


# ---- 3. start-up -----------------------------------------------------------------------------


def startup_times(runs: int, bytecode_cache: bool = True) -> list[float]:
    times = []
    for _ in range(runs):
        port = free_port()
        started = time.perf_counter()
        proc = spawn_sidecar(port, bytecode_cache=bytecode_cache)
        with running(proc):
            wait_http_ok(port, proc)
            times.append(time.perf_counter() - started)
    return times


def import_time(modules: str, runs: int) -> float:
    """Seconds to import `modules` in a fresh interpreter, timed inside it (median): unlike
    timing `python -c 'import ...'` it leaves out interpreter start-up and exit, and exit
    alone (tearing down pydantic & co.) costs tens of milliseconds."""
    probe = (
        "import time\nstarted = time.perf_counter()\n"
        f"import {modules}\nprint(time.perf_counter() - started)"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [PYTHON, "-c", probe], check=True, env=child_env(), cwd=ROOT, capture_output=True
        ).stdout
        samples.append(float(out))
    return statistics.median(samples)


def shutdown_times(runs: int) -> list[float]:
    """SIGTERM → process exit, for `runs` idle sidecars signalled together."""
    procs = []
    try:
        for _ in range(runs):
            port = free_port()
            procs.append(spawn_sidecar(port))
            wait_http_ok(port, procs[-1])
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        signalled = time.perf_counter()
        exited: dict[int, float] = {}
        while len(exited) < len(procs) and time.perf_counter() - signalled < 15.0:
            for proc in procs:
                if proc.pid not in exited and proc.poll() is not None:
                    exited[proc.pid] = time.perf_counter() - signalled
            time.sleep(0.005)
        return [exited.get(proc.pid, float("inf")) for proc in procs]
    finally:
        for proc in procs:
            stop_process(proc)


def command_time(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=child_env(), cwd=ROOT, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


@dataclass
class ImportProfile:
    total_ms: float  # sum of self times: the whole import cost under -X importtime
    by_package: list[tuple[str, float]]  # self time grouped by top-level package
    slowest: list[tuple[str, float, float]]  # (module, self ms, cumulative ms)


def parse_importtime(text: str) -> ImportProfile:
    rows = []
    for line in text.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            rows.append((match.group(4), int(match.group(1)) / 1000, int(match.group(2)) / 1000))
    groups: dict[str, float] = {}
    for module, self_ms, _ in rows:
        top = module.split(".")[0]
        top = {"_ssl": "ssl", "_hashlib": "hashlib"}.get(top, top)
        groups[top] = groups.get(top, 0.0) + self_ms
    by_package = sorted(groups.items(), key=lambda kv: -kv[1])
    slowest = sorted(rows, key=lambda r: -r[1])[:10]
    return ImportProfile(sum(r[1] for r in rows), by_package, slowest)


def serve_import_profile() -> ImportProfile:
    with tempfile.TemporaryFile() as err:
        port = free_port()
        proc = spawn_sidecar(port, python_flags=["-X", "importtime"], stderr=err)
        with running(proc):
            wait_http_ok(port, proc)
        err.seek(0)
        return parse_importtime(err.read().decode(errors="replace"))


def site_import_ms() -> float:
    """What `site` (the .pth files of this environment) costs every interpreter start."""
    err = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
    ).stderr
    for line in err.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and match.group(4) == "site" and len(match.group(3)) == 1:
            return int(match.group(2)) / 1000
    return 0.0


def version_import_profile() -> ImportProfile:
    out = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "sidecar", "--version"],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        check=True,
    )
    return parse_importtime(out.stderr)


# ---- 4. decided stop → DELETE at the platform --------------------------------------------


@dataclass
class StopLatency:
    delete_ms: list[float]  # POST /v1/shutdown sent → DELETE arrived at the emulator
    answer_ms: list[float]  # POST /v1/shutdown sent → its 202 received
    failures: list[str]


async def stop_latency(samples: int, batch: int) -> StopLatency:
    import aiohttp

    from sidecar.emulator import EmulatorOptions, EmulatorServer

    result = StopLatency([], [], [])
    options = EmulatorOptions(port=0, status_step_seconds=0.0, metrics_interval_seconds=60.0)
    async with EmulatorServer(options) as emu, aiohttp.ClientSession() as session:
        done = 0
        while done < samples:
            size = min(batch, samples - done)
            # A small pool of fresh sidecars, all started before any is measured: an idle
            # sidecar costs nothing, so the measured one has the machine to itself.
            pool: list[tuple[str, int, subprocess.Popen[bytes]]] = []
            try:
                for _ in range(size):
                    request_id = await emu.deploy(app="bench")
                    env = await emu.env(request_id)
                    port = free_port()
                    pool.append((request_id, port, spawn_sidecar(port, env)))
                for _, port, proc in pool:
                    await asyncio.to_thread(wait_http_ok, port, proc)
                # Each sidecar loads its request models in a thread once /healthz answers (a
                # one-time ~70 ms; the start-up row measures start-up). This figure is the stop
                # path of a server that is running, so let that finish first.
                await asyncio.sleep(0.3)
                for request_id, port, _ in pool:
                    await _one_stop(emu, session, request_id, port, result)
                    done += 1
            finally:
                for _, _, proc in pool:
                    await asyncio.to_thread(stop_process, proc)
    return result


async def _one_stop(
    emu: Any, session: Any, request_id: str, port: int, result: StopLatency
) -> None:
    url = f"http://127.0.0.1:{port}/v1/shutdown"
    sent = time.time()
    async with session.post(url, json={"grace_seconds": 0}) as response:
        await response.read()
        answered = time.time()
        if response.status != 202:
            result.failures.append(f"{request_id}: shutdown answered {response.status}")
            return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        entries = await emu.requests(path_contains=request_id, method="DELETE")
        if entries:
            entry = entries[0]
            if entry["status"] not in (200, 202):
                result.failures.append(f"{request_id}: self-stop answered {entry['status']}")
            # The log entry is written when the answer is ready; its arrival is that instant
            # minus the time the emulator spent on it.
            arrived = entry["timestamp"] - entry["duration_ms"] / 1000
            result.delete_ms.append((arrived - sent) * 1000)
            result.answer_ms.append((answered - sent) * 1000)
            return
        await asyncio.sleep(0.002)
    result.failures.append(f"{request_id}: no DELETE within 5 s")


# ---- report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import aiohttp
    import pydantic

    return {
        "cpu": model,
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "python": f"{platform.python_version()} ({PYTHON})",
        "kernel": platform.release(),
        "aiohttp": aiohttp.__version__,
        "pydantic": pydantic.VERSION,
    }


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _busy(result: LoadResult) -> str:
    """How much of its core the server got: well under 100% means other work took the rest,
    and that run's req/s (not its CPU per request) understates the server."""
    return f"{result.rps * result.cpu_us / 1e4:.0f}%"


def report(data: dict[str, Any]) -> str:
    lines = ["## Machine", ""]
    lines += [f"* {k}: {v}" for k, v in data["machine"].items()]
    before, after = data["load_before"], data["load_after"]
    lines.append(
        f"* load average (1 min) before / after the bench: {before[0]:.2f} / {after[0]:.2f}"
        + (" — **other work was running: figures are noisy**" if before[0] > 0.7 else "")
    )
    tp: Throughput = data["throughput"]
    lines += [
        "",
        f"## Local API at {CONNECTIONS} connections ({tp.tool}; {tp.pinning}; "
        f"{data['seconds']:g} s per run after {data['warmup']:g} s warm-up; best of "
        f"{data['rounds']} alternating rounds, the one with the least CPU per request)",
        "",
        "| route | server | req/s | p50 ms | p99 ms | CPU µs/req | server core busy | errors "
        "| sidecar / bare: req/s, **CPU** | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for route, target_key in (("health", "health_ratio"), ("status", "status_ratio")):
        side, bare = tp.results[("sidecar", route)], tp.results[("bare", route)]
        ratio = side.rps / bare.rps
        cpu_ratio = bare.cpu_us / side.cpu_us
        label = "POST /v1/health" if route == "health" else "GET /v1/status"
        p99_ok = side.p99_ms <= TARGETS["p99_ms"]
        # The verdict uses the CPU ratio: a saturated server's req/s is (its share of the core)
        # / (CPU per request), and on a shared machine the share moves from run to run.
        lines.append(
            f"| {label} | sidecar | {side.rps:,.0f} | {side.p50_ms:.2f} | {side.p99_ms:.2f} | "
            f"{side.cpu_us:.1f} | {_busy(side)} | {side.errors} | {ratio:.2f}x, "
            f"**{cpu_ratio:.2f}x** | ≥ {TARGETS[target_key]}x "
            f"{verdict(cpu_ratio >= TARGETS[target_key])}; p99 ≤ 1 ms {verdict(p99_ok)} |"
        )
        lines.append(
            f"| {label} | bare aiohttp | {bare.rps:,.0f} | {bare.p50_ms:.2f} | "
            f"{bare.p99_ms:.2f} | {bare.cpu_us:.1f} | {_busy(bare)} | {bare.errors} | | "
            f"p99 {'≤' if bare.p99_ms <= TARGETS['p99_ms'] else '>'} 1 ms |"
        )
    if tp.single:
        lines += [
            "",
            "Without queueing (1 connection, wrk, first round): "
            + "; ".join(
                f"{server} {route} p50 {r.p50_ms:.3f} ms / p99 {r.p99_ms:.3f} ms"
                for (server, route), r in sorted(tp.single.items())
            )
            + ".",
        ]
    lines.append("")
    lines.append(
        "All rounds, req/s: "
        + "; ".join(
            f"{server} {route} " + " / ".join(f"{r.rps:,.0f}" for r in results)
            for (server, route), results in sorted(tp.rounds.items())
        )
    )
    idle: IdleProbe = data["idle"]
    lines += [
        "",
        "## Memory and idle CPU",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| RSS after a realistic session ({data['session_calls']} calls) | "
        f"{data['rss_session_mb']:.1f} MB | ≤ 45 MB "
        f"{verdict(data['rss_session_mb'] <= TARGETS['rss_session_mb'])} |",
        f"| the same process, USS (pages only it uses: no shared libraries) | "
        f"{data['uss_session_mb']:.1f} MB | |",
        f"| RSS right after the load test | {tp.rss_after_load_mb:.1f} MB | ≤ 47 MB "
        f"{verdict(tp.rss_after_load_mb <= TARGETS['rss_load_mb'])} |",
    ]
    for label, value in data["reference_rss"].items():
        lines.append(f"| reference: a process that only does {label} | {value:.1f} MB | |")
    cpu = idle.cpu_s if idle.cpu_s is not None else float("nan")
    lines += [
        f"| CPU time over {idle.seconds:g} s idle (user + system) | {cpu:.3f} s "
        f"({idle.wakeups} voluntary wake-ups) | ≤ 0.03 s {verdict(cpu <= TARGETS['idle_cpu_s'])} |",
    ]
    starts: list[float] = data["startup"]
    median_start = statistics.median(starts)
    lines += [
        "",
        "## Start-up",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| spawn → `/healthz` answers, median of {len(starts)} (min {min(starts):.3f}, "
        f"max {max(starts):.3f}) | {median_start:.3f} s | ≤ 0.25 s "
        f"{verdict(median_start <= TARGETS['startup_s'])} |",
        f"| the same without a bytecode cache for `sidecar/` ({_bytecode_note()}), median of "
        f"{len(data['startup_cold'])} | {statistics.median(data['startup_cold']):.3f} s | |",
        f"| for comparison: bare interpreter (`python -c pass`) | "
        f"{data['python_startup']:.3f} s | |",
        f"| for comparison: `site` at interpreter start (.pth files of this environment; "
        f"`-X importtime`) | {data['site_ms'] / 1000:.3f} s | |",
        f"| for comparison: `import {SERVE_IMPORTS}` (timed inside the interpreter) | "
        f"{data['serve_imports']:.3f} s | |",
        f"| reference: `import aiohttp.web` alone, the same way (the floor for any aiohttp "
        "server) | "
        f"{data['aiohttp_import']:.3f} s | |",
        f"| `python -m sidecar --version` | {data['version_time']:.3f} s | |",
        f"| SIGTERM → process exit (idle `serve`, median of {len(data['shutdown'])}) | "
        f"{statistics.median(data['shutdown']):.3f} s | (no target) |",
        "",
        f"Import profile of `serve` (`-X importtime`, self time grouped by top-level package; "
        f"total {data['serve_profile'].total_ms:.0f} ms, inflated by the profiler; "
        f"`--version` alone: {data['version_profile'].total_ms:.0f} ms):",
        "",
        "| package | self ms |",
        "|---|---:|",
    ]
    lines += [f"| {pkg} | {ms:.1f} |" for pkg, ms in data["serve_profile"].by_package[:14]]
    lines += ["", "Slowest single modules (self ms / cumulative ms):", ""]
    lines += [
        f"* `{mod}` {self_ms:.1f} / {cum_ms:.1f}"
        for mod, self_ms, cum_ms in data["serve_profile"].slowest[:8]
    ]
    stop: StopLatency = data["stop"]
    p50, p99 = percentile(stop.delete_ms, 50), percentile(stop.delete_ms, 99)
    lines += [
        "",
        "## Decided stop → DELETE at the platform",
        "",
        "| measure | p50 | p99 | max | target |",
        "|---|---:|---:|---:|---|",
        f'| `POST /v1/shutdown {{"grace_seconds":0}}` sent → self-stop DELETE arrives at the '
        f"emulator ({len(stop.delete_ms)} fresh sidecars) | {p50:.1f} ms | {p99:.1f} ms | "
        f"{max(stop.delete_ms, default=float('nan')):.1f} ms | p99 ≤ 20 ms "
        f"{verdict(p99 <= TARGETS['stop_p99_ms'] and not stop.failures)} |",
        f"| the same call answered 202 | {percentile(stop.answer_ms, 50):.1f} ms | "
        f"{percentile(stop.answer_ms, 99):.1f} ms | "
        f"{max(stop.answer_ms, default=float('nan')):.1f} ms | |",
    ]
    if stop.failures:
        lines += ["", "Stop failures:", *[f"* {f}" for f in stop.failures]]
    lines += ["", f"Bench wall time: {data['wall_s']:.0f} s."]
    return "\n".join(lines)


def _bytecode_note() -> str:
    if (ROOT / "sidecar" / "__pycache__").is_dir():
        return "the tree's own sidecar/__pycache__, site-packages' .pyc"
    return "no sidecar/__pycache__ in this tree: sidecar/ compiled at every start"


SERVE_IMPORTS = "sidecar.cli, sidecar.config, sidecar.logs, sidecar.agent"


def to_json(data: dict[str, Any]) -> dict[str, Any]:
    tp: Throughput = data["throughput"]
    stop: StopLatency = data["stop"]
    return {
        "machine": data["machine"],
        "throughput": {
            f"{server}/{route}": [vars(r) for r in results]
            for (server, route), results in tp.rounds.items()
        },
        "single_connection": {f"{k[0]}/{k[1]}": vars(v) for k, v in tp.single.items()},
        "rss_after_load_mb": tp.rss_after_load_mb,
        "rss_session_mb": data["rss_session_mb"],
        "uss_session_mb": data["uss_session_mb"],
        "reference_rss_mb": data["reference_rss"],
        "idle_cpu_s": data["idle"].cpu_s,
        "startup_s": data["startup"],
        "startup_cold_s": data["startup_cold"],
        "sigterm_exit_s": data["shutdown"],
        "stop_delete_ms": stop.delete_ms,
        "stop_failures": stop.failures,
        "serve_import_ms_by_package": dict(data["serve_profile"].by_package),
    }


# ---- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="each load run (default 6)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per run (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds (default 3)")
    parser.add_argument("--idle", type=float, default=30.0, help="idle CPU window (default 30)")
    parser.add_argument("--starts", type=int, default=10, help="start-up samples (default 10)")
    parser.add_argument("--stops", type=int, default=30, help="stop samples (default 30)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (~20 s)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--loadgen", nargs=3, metavar=("URL", "METHOD", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.loadgen:
        url, method, seconds = args.loadgen
        print(json.dumps(asyncio.run(_aiohttp_load(url, method, float(seconds)))))
        return 0
    if args.quick:
        args.seconds, args.warmup, args.idle, args.starts, args.stops = 2.0, 0.5, 5.0, 3, 6
        args.rounds = 1

    global PYCACHE
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-pycache-") as pycache:
        PYCACHE = pycache
        try:
            return _run(args)
        finally:
            PYCACHE = None


def _run(args: argparse.Namespace) -> int:
    wall = time.perf_counter()
    data: dict[str, Any] = {
        "machine": machine(),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rounds": args.rounds,
    }
    data["load_before"] = os.getloadavg()

    def step(message: str) -> None:
        print(f"[{time.perf_counter() - wall:5.1f}s] {message}", file=sys.stderr, flush=True)

    step("compiling bytecode into the bench's cache")
    subprocess.run(
        [PYTHON, "-c", f"import {SERVE_IMPORTS}, aiohttp.web, sidecar.emulator, sidecar.models"],
        check=True,
        env=child_env(),
        cwd=ROOT,
    )

    step("realistic session")
    port = free_port()
    # A far health timeout: the idle sidecar keeps an armed timer but never stops during the bench.
    session_proc = spawn_sidecar(port, {"SIDECAR_HEALTH_TIMEOUT": "10m"})
    with running(session_proc):
        wait_http_ok(port, session_proc)
        client = Client(port)
        realistic_session(client)
        client.close()
        data["session_calls"] = client.calls
        data["rss_session_mb"] = rss_mb(session_proc.pid)
        data["uss_session_mb"] = psutil.Process(session_proc.pid).memory_full_info().uss / 2**20
        time.sleep(0.5)  # let the last connection close before the idle window starts
        idle = IdleProbe(session_proc.pid, args.idle)
        idle.start()
        data["idle"] = idle

        step("reference RSS")
        data["reference_rss"] = {
            "`import aiohttp.web, pydantic`": reference_rss_mb("import aiohttp.web, pydantic"),
            # `import pydantic` is lazy: the first model class pulls in the real machinery.
            "`import aiohttp.web, pydantic` + one `BaseModel` class": reference_rss_mb(
                "import aiohttp.web, pydantic\nclass M(pydantic.BaseModel):\n    x: int = 0"
            ),
        }
        step("start-up")
        data["startup"] = startup_times(args.starts)
        data["startup_cold"] = startup_times(max(1, args.starts // 3), bytecode_cache=False)
        data["shutdown"] = shutdown_times(3)
        data["python_startup"] = command_time([PYTHON, "-c", "pass"], 5)
        data["serve_imports"] = import_time(SERVE_IMPORTS, 5)
        data["aiohttp_import"] = import_time("aiohttp.web", 5)
        data["version_time"] = command_time([PYTHON, "-m", "sidecar", "--version"], 5)
        data["site_ms"] = site_import_ms()
        data["serve_profile"] = serve_import_profile()
        data["version_profile"] = version_import_profile()

        step("stop latency")
        data["stop"] = asyncio.run(stop_latency(args.stops, batch=6))

        step("throughput")
        data["throughput"] = throughput(args.seconds, args.warmup, args.rounds)

        step("waiting for the idle window to end")
        idle.join()
    data["wall_s"] = time.perf_counter() - wall
    data["load_after"] = os.getloadavg()
    print(report(data))
    if args.json:
        args.json.write_text(json.dumps(to_json(data), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
