"""Measurement 4: a decided stop (`POST /v1/shutdown {"grace_seconds": 0}`) → the self-stop
`DELETE` received by the platform (the in-process emulator, which records its arrival), with a
fresh sidecar per sample."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from benchmarks.core.harness import Children, Process, free_port, stop_process, wait_http_ok
from sidecar.emulator import EmulatorOptions, EmulatorServer


@dataclass
class StopLatency:
    delete_ms: list[float] = field(default_factory=list)  # shutdown sent → DELETE arrived
    answer_ms: list[float] = field(default_factory=list)  # shutdown sent → its 202 received
    failures: list[str] = field(default_factory=list)


async def measure(children: Children, samples: int, batch: int) -> StopLatency:
    result = StopLatency()
    options = EmulatorOptions(port=0, status_step_seconds=0.0, metrics_interval_seconds=60.0)
    async with EmulatorServer(options) as emu, aiohttp.ClientSession() as session:
        done = 0
        while done < samples:
            size = min(batch, samples - done)
            # A small pool of fresh sidecars, all started before any is measured: an idle
            # sidecar costs nothing, so the measured one has the machine to itself.
            pool: list[tuple[str, int, Process]] = []
            try:
                for _ in range(size):
                    request_id = await emu.deploy(app="bench")
                    env = await emu.env(request_id)
                    port = free_port()
                    pool.append((request_id, port, children.spawn_sidecar(port, env)))
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
    emu: EmulatorServer,
    session: aiohttp.ClientSession,
    request_id: str,
    port: int,
    result: StopLatency,
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
