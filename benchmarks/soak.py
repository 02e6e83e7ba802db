"""Soak test of one real sidecar process: does anything grow under sustained, mixed load?

A `sidecar serve` child is pointed at the in-process emulator (a simulated deployment, so the
self-stop at the end reaches a real `DELETE` handler that counts it). For `--duration` seconds
this process drives, concurrently and at a bounded rate:

* API calls: status, health, activity, metrics, players/connect + disconnect churn with ever-new
  player ids (so per-player bookkeeping that is never freed shows up as growth);
* SSE subscribers that churn (connect, read the first event or two, disconnect) and SSE
  subscribers that never read (tiny receive buffer, held for a while, then replaced): the two
  ways a game's event client can misbehave.

Every second it samples the sidecar's RSS, open file descriptors and CPU (psutil on its pid).
After the load stops it closes every connection, measures idle CPU over 3 s, then asks for a
stop (`POST /v1/shutdown`) and counts the `DELETE`s the emulator answered.

Checks (exit 1 when one fails):

* RSS slope after the warm-up below ``--max-rss-slope`` MiB/min (default 1). The warm-up is the
  first third of the load, at least ``WARM_UP_MIN`` s: measured, RSS climbs ~1.2 MiB over the first
  ~15 s (imports, allocator arenas, aiohttp buffers) and is flat to within allocator noise after;
  a fit that includes that climb reads as a leak. Why
  1 MiB/min: once warm, the sidecar's working set is fixed (a roster of a few dozen players, a
  handful of connections); allocator noise after warm-up is well under 1 MiB over a minute,
  while a leak of even 100 bytes per request at the default 300 req/s is ~1.7 MiB/min — and
  1 MiB/min is 1.4 GiB a day in a deployment that runs for a day. Needs >= 20 s of load (with
  less the fit is noise, and the check is reported as skipped).
* open fds at the end (all our connections closed) <= fds at the start + ``FD_SLACK``.
* idle CPU over 3 s after the load < 2 % (timers are deadlines: an idle sidecar sleeps).
* no 5xx and no failed API call (connection error or timeout) during the load.
* exactly one accepted self-stop (an emulator answer of 200; 202 = "already terminating" would be
  a duplicate) and the sidecar exits after SIGTERM.

Usage: ``scripts/soak [--duration 60] [--rate 300] [--json PATH]``. Every wait is bounded, so it
always ends by itself (about duration + 15 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.emulator import EmulatorOptions, EmulatorServer  # noqa: E402

# Lazily created resources (a resolver, the self-stop client's connector) may open a couple of
# descriptors after the start sample; more than this is a leak.
FD_SLACK = 4
IDLE_CPU_WINDOW = 3.0
IDLE_CPU_MAX_PERCENT = 2.0
MIN_LOAD_FOR_SLOPE = 20.0
WARM_UP_MIN = 20.0
SSE_CHURNERS = 4
SSE_NON_READERS = 4
NON_READER_HOLD = 8.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class Counters:
    by_status: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    api_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sse_connects: int = 0
    sse_events: int = 0
    sse_errors: int = 0
    non_reader_connects: int = 0
    non_readers_dropped_by_server: int = 0

    def error(self, what: str) -> None:
        self.api_errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sidecar_env(platform: dict[str, str], port: int) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "ARBITRIUM_", "MM_"))
    }
    env.update(platform)
    env.update(
        SIDECAR_PORT=str(port),
        # No timer may end the soak early: the only stop is the one we ask for at the end.
        SIDECAR_READY_TIMEOUT="1h",
        SIDECAR_FIRST_PLAYER_TIMEOUT="1h",
        SIDECAR_EMPTY_TIMEOUT="1h",
        SIDECAR_HEALTH_TIMEOUT="1h",
        SIDECAR_MATCH_END_GRACE="0",
        SIDECAR_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    return env


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.counters = Counters()
        self.samples: list[dict[str, float]] = []
        self.stop_load = asyncio.Event()
        self.rng = random.Random(1)
        self.next_player = 0
        self.connected: list[str] = []

    # ---- load ------------------------------------------------------------------------------

    async def call(self, http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> None:
        self.counters.by_kind[path] += 1
        try:
            async with http.request(method, self.url + path, **kw) as response:
                await response.read()
                self.counters.by_status[response.status] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counters.error(f"{method} {path}: {type(exc).__name__}: {exc}")

    async def one_api_call(self, http: aiohttp.ClientSession) -> None:
        pick = self.rng.random()
        if pick < 0.25:
            await self.call(http, "GET", "/v1/status")
        elif pick < 0.45:
            await self.call(http, "POST", "/v1/health")
        elif pick < 0.55:
            await self.call(http, "POST", "/v1/activity")
        elif pick < 0.65:
            await self.call(http, "GET", "/metrics")
        elif pick < 0.70:
            await self.call(http, "GET", "/healthz")
        elif pick < 0.85 or not self.connected:
            # A new id each time; the roster stays around 30 players because of the churn below.
            self.next_player += 1
            player = f"player-{self.next_player}"
            self.connected.append(player)
            await self.call(http, "POST", "/v1/players/connect", json={"player_id": player})
        else:
            index = self.rng.randrange(len(self.connected))
            player = self.connected.pop(index)
            await self.call(http, "POST", "/v1/players/disconnect", json={"player_id": player})
        if len(self.connected) > 30:
            player = self.connected.pop(0)
            await self.call(http, "POST", "/v1/players/disconnect", json={"player_id": player})

    async def api_worker(self, http: aiohttp.ClientSession, per_worker_rate: float) -> None:
        # Paced, not flat out: a soak measures growth at a sustained realistic load, and a
        # saturated core would make the CPU and timing figures meaningless.
        interval = 1.0 / per_worker_rate
        next_at = time.monotonic()
        while not self.stop_load.is_set():
            await self.one_api_call(http)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = time.monotonic()

    async def sse_churner(self, http: aiohttp.ClientSession) -> None:
        while not self.stop_load.is_set():
            self.counters.sse_connects += 1
            try:
                async with http.get(self.url + "/v1/events") as response:
                    self.counters.by_status[response.status] += 1
                    wanted = self.rng.randint(1, 2)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.rng.uniform(0.1, 2.0)):
                            async for line in response.content:
                                if line.startswith(b"event:"):
                                    self.counters.sse_events += 1
                                    wanted -= 1
                                    if wanted == 0:
                                        break
            except (aiohttp.ClientError, TimeoutError):
                self.counters.sse_errors += 1
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    async def sse_non_reader(self) -> None:
        """A subscriber that sends its request and never reads: a tiny receive buffer makes the
        server's writes back up at once, as with a stuck game thread."""
        loop = asyncio.get_running_loop()
        while not self.stop_load.is_set():
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", self.port))
                request = f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n"
                await loop.sock_sendall(sock, request.encode())
                self.counters.non_reader_connects += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(NON_READER_HOLD):
                        await self.stop_load.wait()
                # Did the server give up on us (SPEC §11: dropped after 16 queued events)?
                # Peek without consuming: a closed connection reads as EOF after the data.
                with contextlib.suppress(OSError):
                    sock.setblocking(True)
                    sock.settimeout(0.05)
                    try:
                        while sock.recv(65536):
                            pass
                        self.counters.non_readers_dropped_by_server += 1
                    except TimeoutError:
                        pass
            except OSError:
                self.counters.sse_errors += 1
                await asyncio.sleep(0.2)
            finally:
                sock.close()

    # ---- sampling --------------------------------------------------------------------------

    async def sampler(self, proc: psutil.Process, started: float) -> None:
        last_cpu = sum(proc.cpu_times()[:2])
        last_t = time.monotonic()
        last_requests = 0
        while True:
            await asyncio.sleep(1.0)
            try:
                cpu = sum(proc.cpu_times()[:2])
                rss = proc.memory_info().rss
                fds = proc.num_fds()
            except psutil.Error:
                return
            now = time.monotonic()
            requests = sum(self.counters.by_kind.values())
            self.samples.append(
                {
                    "t": round(now - started, 2),
                    "rss_mib": round(rss / 2**20, 3),
                    "fds": fds,
                    "cpu_percent": round(100 * (cpu - last_cpu) / (now - last_t), 1),
                    "req_per_s": round((requests - last_requests) / (now - last_t), 1),
                    "api_errors": self.counters.api_errors,
                    "sse_connects": self.counters.sse_connects,
                    "non_readers_dropped": self.counters.non_readers_dropped_by_server,
                }
            )
            if int(self.samples[-1]["t"]) % 10 == 0 or len(self.samples) == 1:
                print_row(self.samples[-1])
            last_cpu, last_t, last_requests = cpu, now, requests

    # ---- the run ---------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        options = EmulatorOptions(port=0, status_step_seconds=0.0)
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy(app="soak")  # no --app: a simulated deployment
            await emu.wait_for_status(request_id, "Status.READY")
            platform = {k: v for k, v in (await emu.env(request_id)).items()}
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sidecar",
                "serve",
                env=sidecar_env(platform, self.port),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                return await self.drive(emu, request_id, child)
            finally:
                if child.returncode is None:
                    child.kill()
                    await child.wait()

    async def drive(
        self, emu: EmulatorServer, request_id: str, child: asyncio.subprocess.Process
    ) -> dict[str, Any]:
        args = self.args
        proc = psutil.Process(child.pid)
        connector = aiohttp.TCPConnector(limit=args.concurrency + SSE_CHURNERS + 4)
        async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as http:
            await self.wait_healthy(http)
            await self.call(http, "POST", "/v1/ready")
            # One call of each kind first, so lazily built state (request models, metric
            # families) is in the start sample and not counted as growth.
            for _ in range(20):
                await self.one_api_call(http)
        await asyncio.sleep(0.5)
        fds_start = proc.num_fds()
        rss_start = proc.memory_info().rss / 2**20
        started = time.monotonic()
        print(
            f"sidecar pid {child.pid}: rss {rss_start:.1f} MiB, {fds_start} fds; load for "
            f"{args.duration:g} s at ~{args.rate:g} req/s"
        )
        print_header()
        sampler = asyncio.create_task(self.sampler(proc, started))
        connector = aiohttp.TCPConnector(limit=args.concurrency + SSE_CHURNERS + 4)
        async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as http:
            tasks = [
                asyncio.create_task(self.api_worker(http, args.rate / args.concurrency))
                for _ in range(args.concurrency)
            ]
            tasks += [asyncio.create_task(self.sse_churner(http)) for _ in range(SSE_CHURNERS)]
            tasks += [asyncio.create_task(self.sse_non_reader()) for _ in range(SSE_NON_READERS)]
            await asyncio.sleep(args.duration)
            self.stop_load.set()
            done, pending = await asyncio.wait(tasks, timeout=15)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    self.counters.error(f"load task crashed: {task.exception()!r}")
        load_s = time.monotonic() - started
        sampler.cancel()
        # Every client connection is closed now; give the server a moment to notice the FINs.
        await asyncio.sleep(1.0)
        cpu_before = sum(proc.cpu_times()[:2])
        await asyncio.sleep(IDLE_CPU_WINDOW)
        idle_cpu_percent = 100 * (sum(proc.cpu_times()[:2]) - cpu_before) / IDLE_CPU_WINDOW
        fds_end = proc.num_fds()
        rss_end = proc.memory_info().rss / 2**20

        stop = await self.self_stop(emu, request_id)
        child.send_signal(signal.SIGTERM)
        try:
            exit_code: int | None = await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            exit_code = None
        stderr = b""
        if child.stderr is not None:
            with contextlib.suppress(TimeoutError):
                stderr = await asyncio.wait_for(child.stderr.read(), 2)
        return self.report(
            load_s,
            rss_start,
            rss_end,
            fds_start,
            fds_end,
            idle_cpu_percent,
            stop,
            exit_code,
            stderr.decode(errors="replace"),
        )

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(15):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)

    async def self_stop(self, emu: EmulatorServer, request_id: str) -> dict[str, Any]:
        requested = time.time()
        async with (
            aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http,
            http.post(self.url + "/v1/shutdown", json={"grace_seconds": 0}) as r,
        ):
            shutdown_status = r.status
        with contextlib.suppress(TimeoutError):
            await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=10)
        # A duplicate would come after the first answer: wait a little for one.
        await asyncio.sleep(2.0)
        deletes = await emu.requests(path_contains=request_id, method="DELETE")
        accepted = [d for d in deletes if d["status"] == 200]
        return {
            "shutdown_status": shutdown_status,
            "deletes": len(deletes),
            "accepted": len(accepted),
            "statuses": [d["status"] for d in deletes],
            "latency_ms": round((accepted[0]["timestamp"] - requested) * 1000, 1)
            if accepted
            else None,
        }

    def report(
        self,
        load_s: float,
        rss_start: float,
        rss_end: float,
        fds_start: int,
        fds_end: int,
        idle_cpu_percent: float,
        stop: dict[str, Any],
        exit_code: int | None,
        stderr: str,
    ) -> dict[str, Any]:
        args = self.args
        c = self.counters
        warm_up = min(max(WARM_UP_MIN, load_s / 3), load_s / 2)
        warm = [s for s in self.samples if s["t"] >= warm_up]
        slope = rss_slope_mib_per_min(warm)
        server_errors = sum(n for status, n in c.by_status.items() if status >= 500)
        checks: dict[str, dict[str, Any]] = {}

        def check(name: str, ok: bool | None, value: Any, limit: str) -> None:
            checks[name] = {"ok": ok, "value": value, "limit": limit}

        if load_s >= MIN_LOAD_FOR_SLOPE and slope is not None:
            check(
                "rss_slope",
                slope <= args.max_rss_slope,
                round(slope, 3),
                f"<= {args.max_rss_slope} MiB/min after {warm_up:.0f} s of warm-up",
            )
        else:
            check(
                "rss_slope",
                None,
                None if slope is None else round(slope, 3),
                f"skipped: needs >= {MIN_LOAD_FOR_SLOPE:g} s of load",
            )
        check("fds", fds_end <= fds_start + FD_SLACK, fds_end, f"<= {fds_start} + {FD_SLACK}")
        check(
            "idle_cpu",
            idle_cpu_percent < IDLE_CPU_MAX_PERCENT,
            round(idle_cpu_percent, 2),
            f"< {IDLE_CPU_MAX_PERCENT} % over {IDLE_CPU_WINDOW:g} s",
        )
        check("no_5xx", server_errors == 0, server_errors, "0")
        check("api_errors", c.api_errors == 0, c.api_errors, "0")
        check(
            "one_accepted_stop",
            stop["accepted"] == 1 and stop["deletes"] == 1,
            f"{stop['accepted']} accepted of {stop['deletes']} DELETEs",
            "exactly 1 of 1",
        )
        check("exit_after_sigterm", exit_code == 0, exit_code, "0 within 10 s")
        requests = sum(c.by_kind.values())
        return {
            "duration_s": round(load_s, 2),
            "requests": requests,
            "req_per_s": round(requests / load_s, 1),
            "by_status": {str(k): v for k, v in sorted(c.by_status.items())},
            "by_kind": dict(c.by_kind),
            "api_errors": c.api_errors,
            "error_samples": c.error_samples,
            "players_connected_total": self.next_player,
            "sse": {
                "churn_connects": c.sse_connects,
                "events_read": c.sse_events,
                "errors": c.sse_errors,
                "non_reader_connects": c.non_reader_connects,
                "non_readers_dropped_by_server": c.non_readers_dropped_by_server,
            },
            "rss_start_mib": round(rss_start, 2),
            "rss_end_mib": round(rss_end, 2),
            "rss_peak_mib": max((s["rss_mib"] for s in self.samples), default=rss_end),
            "rss_slope_mib_per_min": None if slope is None else round(slope, 3),
            "fds_start": fds_start,
            "fds_end": fds_end,
            "fds_peak": max((s["fds"] for s in self.samples), default=fds_end),
            "cpu_load_mean_percent": round(
                sum(s["cpu_percent"] for s in self.samples) / max(len(self.samples), 1), 1
            ),
            "idle_cpu_percent": round(idle_cpu_percent, 2),
            "stop": stop,
            "exit_code": exit_code,
            "stderr_tail": stderr[-2000:],
            "samples": self.samples,
            "checks": checks,
            "ok": all(v["ok"] is not False for v in checks.values()),
        }


def rss_slope_mib_per_min(samples: list[dict[str, float]]) -> float | None:
    """Least-squares slope of RSS against time, in MiB per minute."""
    if len(samples) < 3:
        return None
    ts = [s["t"] for s in samples]
    ys = [s["rss_mib"] for s in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


COLUMNS = (
    "t",
    "rss_mib",
    "fds",
    "cpu_percent",
    "req_per_s",
    "api_errors",
    "sse_connects",
    "non_readers_dropped",
)


def print_header() -> None:
    print(" | ".join(f"{c:>10}" for c in COLUMNS), flush=True)


def print_row(sample: dict[str, float]) -> None:
    print(" | ".join(f"{sample[c]:>10}" for c in COLUMNS), flush=True)


def print_summary(result: dict[str, Any]) -> None:
    print()
    print(
        f"{result['requests']} requests in {result['duration_s']} s "
        f"({result['req_per_s']} req/s), statuses {result['by_status']}, "
        f"{result['players_connected_total']} players connected over the run"
    )
    print(f"SSE: {result['sse']}")
    print(
        f"RSS {result['rss_start_mib']} -> {result['rss_end_mib']} MiB "
        f"(peak {result['rss_peak_mib']}, slope {result['rss_slope_mib_per_min']} MiB/min); "
        f"fds {result['fds_start']} -> {result['fds_end']} (peak {result['fds_peak']}); "
        f"CPU under load {result['cpu_load_mean_percent']} %, idle "
        f"{result['idle_cpu_percent']} %"
    )
    print(f"self-stop: {result['stop']}; exit code {result['exit_code']}")
    for name, check in result["checks"].items():
        verdict = {True: "PASS", False: "FAIL", None: "skip"}[check["ok"]]
        print(f"  {verdict}  {name}: {check['value']} (limit {check['limit']})")
    if result["error_samples"]:
        print("first errors:", *result["error_samples"], sep="\n  ")
    print("OK" if result["ok"] else "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (60)")
    parser.add_argument("--rate", type=float, default=300.0, help="API calls per second (300)")
    parser.add_argument("--concurrency", type=int, default=8, help="API workers (8)")
    parser.add_argument("--max-rss-slope", type=float, default=1.0, help="MiB/min (1.0)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0 or args.concurrency <= 0:
        parser.error("--duration, --rate and --concurrency must be positive")
    result = asyncio.run(Soak(args).run())
    print_summary(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
