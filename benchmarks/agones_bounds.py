"""The Agones GameServer's size and what a change costs (issue 15 item 4), as a markdown table.

Runs `sidecar serve` with the Agones facade (a manifest declaring a list `big`, capacity 1000)
from a source tree (`--source`, default this one: point it at an older checkout for the
"before" column), drives it over loopback with aiohttp, and prints:

* SetLabel: the server's CPU time per call (robust on a shared machine) and the median and p99
  latency of sequential calls, on a small GameServer and on one filled to ~900 KB with list
  values, with no watcher and with one watcher reading everything;
* `GET /gameserver` of the ~900 KB GameServer, unchanged between reads;
* the `:addValue` flood of the issue: 300 KB values, one reading watcher, until refused or the
  time budget: values kept, GET size, bytes pushed to the watcher, server CPU and RSS;
* a SetLabel flood (distinct keys, 63-character values), one reading watcher: the same figures,
  on a small GameServer and on the ~900 KB one.

First, in process, the GameServer core alone (CPU time per SetLabel, then per SetLabel plus
what one reader costs: the old code rendered the snapshot for each GET and each watch check,
the new one renders once per change). The core comes from the tree the bench runs in, so run the
"before" from the older checkout (`cd old && python -m benchmarks.agones_bounds`).

Timings are printed, never asserted. Usage:
    python -m benchmarks.agones_bounds [--source DIR] [--budget 15] [--labels 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIG_VALUE = 300_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: asyncio.subprocess.Process
    url: str

    def rss_mb(self) -> float:
        return float(psutil.Process(self.process.pid).memory_info().rss) / 1e6

    def cpu_seconds(self) -> float:
        """The server's CPU time: what a change costs it, whatever else the machine runs."""
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@asynccontextmanager
async def serve(source: Path, http: aiohttp.ClientSession) -> AsyncIterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "gameserver.json"
        manifest.write_text(json.dumps({"spec": {"lists": {"big": {"capacity": 1000}}}}))
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(source),
            "SIDECAR_PORT": "0",
            "SIDECAR_AGONES": "true",
            "SIDECAR_AGONES_HTTP_PORT": str(port),
            "SIDECAR_AGONES_GAMESERVER": str(manifest),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sidecar",
            "serve",
            cwd=source,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = Server(process, f"http://127.0.0.1:{port}")
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(server.url + "/gameserver") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or process.returncode is not None:
                    raise RuntimeError("the sidecar did not start")
                await asyncio.sleep(0.05)
            yield server
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)


async def call(http: aiohttp.ClientSession, method: str, url: str, body: object) -> int:
    async with http.request(method, url, data=json.dumps(body).encode()) as response:
        await response.read()
        return response.status


class Watcher:
    """One watch stream read as fast as it comes: bytes counted, nothing kept."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.bytes = 0
        self.started = asyncio.Event()
        self._task = asyncio.create_task(self._read(http, url))

    async def _read(self, http: aiohttp.ClientSession, url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with http.get(url + "/watch/gameserver", timeout=timeout) as response:
            async for chunk in response.content.iter_any():
                self.bytes += len(chunk)
                self.started.set()

    async def close(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task


async def get_size(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/gameserver") as response:
        return len(await response.read())


async def fill(http: aiohttp.ClientSession, url: str, values: int) -> None:
    for index in range(values):
        value = f"{index}" + "f" * BIG_VALUE
        await call(http, "POST", url + "/v1beta1/lists/big:addValue", {"value": value})


async def label_latency(
    source: Path, http: aiohttp.ClientSession, filled: bool, watched: bool, calls: int
) -> tuple[float, float, float, int]:
    async with serve(source, http) as server:
        if filled:
            await fill(http, server.url, 3)
        watcher = Watcher(http, server.url) if watched else None
        if watcher is not None:
            await watcher.started.wait()
        times = []
        cpu_before = server.cpu_seconds()
        for index in range(calls):
            body = {"key": "round", "value": f"r{index}"}
            start = time.perf_counter()
            await call(http, "PUT", server.url + "/metadata/label", body)
            times.append(time.perf_counter() - start)
        cpu = (server.cpu_seconds() - cpu_before) / calls
        size = await get_size(http, server.url)
        if watcher is not None:
            await watcher.close()
    times.sort()
    p99 = times[int(len(times) * 0.99)]
    return cpu * 1e6, statistics.median(times) * 1e6, p99 * 1e6, size


async def get_cost(source: Path, http: aiohttp.ClientSession, calls: int) -> tuple[float, float]:
    """Server CPU µs and median µs per `GET /gameserver` of a ~900 KB GameServer."""
    async with serve(source, http) as server:
        await fill(http, server.url, 3)
        times = []
        cpu_before = server.cpu_seconds()
        for _ in range(calls):
            start = time.perf_counter()
            await get_size(http, server.url)
            times.append(time.perf_counter() - start)
        cpu = (server.cpu_seconds() - cpu_before) / calls
    return cpu * 1e6, statistics.median(times) * 1e6


@dataclass
class Flood:
    tried: int
    kept: int
    seconds: float
    get_bytes: int
    pushed_mb: float
    cpu_seconds: float
    rss_mb: float


async def flood(
    source: Path, http: aiohttp.ClientSession, kind: str, count: int, budget: float, filled: bool
) -> Flood:
    async with serve(source, http) as server:
        if filled:
            await fill(http, server.url, 3)
        watcher = Watcher(http, server.url)
        await watcher.started.wait()
        kept = tried = 0
        cpu_before = server.cpu_seconds()
        start = time.monotonic()
        for index in range(count):
            if time.monotonic() - start > budget:
                break
            tried += 1
            if kind == "list":
                value = f"{index}" + "v" * BIG_VALUE
                status = await call(
                    http, "POST", server.url + "/v1beta1/lists/big:addValue", {"value": value}
                )
            else:
                body = {"key": f"k{index}", "value": f"{index}".ljust(63, "x")}
                status = await call(http, "PUT", server.url + "/metadata/label", body)
            kept += status == 200
        seconds = time.monotonic() - start
        rss = server.rss_mb()
        size = await get_size(http, server.url)
        await asyncio.sleep(0.5)  # let the watcher drain what was sent
        pushed = watcher.bytes / 1e6
        cpu = server.cpu_seconds() - cpu_before
        await watcher.close()
    return Flood(tried, kept, seconds, size, pushed, cpu, rss)


def core_costs(calls: int) -> None:
    """CPU µs per SetLabel on the GameServer object itself, without HTTP."""
    from sidecar.agones import proto_json
    from sidecar.agones.counters import ListState
    from sidecar.agones.gameserver import FacadeOptions, GameServer
    from sidecar.deployment import DeploymentInfo
    from sidecar.lifecycle import Lifecycle, TimerSettings

    print("| GameServer core, SetLabel | CPU µs/call | + one reader (GET or watch line) |")
    print("|---|---|---|")
    for filled in (False, True):
        gameserver = GameServer(
            Lifecycle(TimerSettings(), time.monotonic), FacadeOptions(), DeploymentInfo()
        )
        gameserver.lists["big"] = ListState(1000, ())
        if filled:
            for index in range(3):
                gameserver.add_list_value("big", f"{index}" + "f" * BIG_VALUE)

        def read(gameserver: GameServer = gameserver) -> bytes:
            body = getattr(gameserver, "body", None)
            if body is not None:  # rendered once per change
                rendered: bytes = body()
                return rendered
            return proto_json.dumps({"result": gameserver.snapshot()})  # the old main

        costs = []
        for with_reader in (False, True):
            start = time.process_time()
            for index in range(calls):
                gameserver.set_label("round", f"r{index}")
                if with_reader:
                    read()
            costs.append((time.process_time() - start) / calls * 1e6)
        name = f"{'~900 KB' if filled else 'small'} ({len(read())} bytes)"
        print(f"| {name} | {costs[0]:.0f} | {costs[1]:.0f} |")
    print()


def describe(source: Path) -> str:
    commit = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"source {source} ({commit or 'not a git checkout'}); {platform.node()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs (load {load}), "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


async def main(source: Path, budget: float, labels: int, calls: int) -> None:
    limits = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(connector=limits) as http:
        print("| SetLabel | server CPU µs/call | median µs | p99 µs | GameServer bytes |")
        print("|---|---|---|---|---|")
        for filled in (False, True):
            for watched in (False, True):
                cpu, median, p99, size = await label_latency(source, http, filled, watched, calls)
                size_name = "~900 KB" if filled else "small"
                name = f"{size_name} GameServer, {'1' if watched else 'no'} watcher"
                print(f"| {name} | {cpu:.0f} | {median:.0f} | {p99:.0f} | {size} |")
        cpu, median = await get_cost(source, http, calls // 3)
        print(f"| (`GET /gameserver`, ~900 KB, unchanged) | {cpu:.0f} | {median:.0f} | | |")
        print()
        print(
            "| flood (1 reading watcher) | calls | kept | seconds | GET bytes | pushed MB "
            "| server CPU s | server RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for kind, count, filled in (
            ("list", 152, False),
            ("label", labels, False),
            ("label", labels, True),
        ):
            result = await flood(source, http, kind, count, budget, filled)
            name = "`:addValue` 300 KB values" if kind == "list" else "SetLabel, distinct keys"
            if filled:
                name += ", on a ~900 KB GameServer"
            print(
                f"| {name} | {result.tried} | {result.kept} | {result.seconds:.1f} "
                f"| {result.get_bytes} | {result.pushed_mb:.0f} | {result.cpu_seconds:.1f} "
                f"| {result.rss_mb:.0f} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT)
    parser.add_argument("--budget", type=float, default=15.0, help="seconds per flood")
    parser.add_argument("--labels", type=int, default=3000, help="SetLabel flood calls")
    parser.add_argument("--calls", type=int, default=300, help="SetLabel latency calls")
    args = parser.parse_args()
    print(describe(args.source.resolve()))
    print()
    core_costs(args.calls)
    asyncio.run(main(args.source.resolve(), args.budget, args.labels, args.calls))
