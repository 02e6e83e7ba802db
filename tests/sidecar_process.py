"""A real sidecar in run mode against the emulator, as the output and log-order tests start it:
`python -m sidecar run -- GAME...` with the deployment's variables, on a free loopback port."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp

from sidecar.emulator import EmulatorServer
from tests.conftest import base_env, free_port


async def start_sidecar(
    emulator: EmulatorServer, *game: str, stdout: int, stderr: int
) -> tuple[asyncio.subprocess.Process, str, str]:
    """A READY deployment's sidecar (no match-end grace) running `game`: the process, its URL and
    the deployment's request id. The caller waits for it to be up (`wait_healthy`)."""
    request_id = await emulator.deploy()
    await emulator.wait_for_status(request_id, "Status.READY")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "run",
        "--",
        *game,
        env=base_env(
            SIDECAR_PORT=str(port), SIDECAR_MATCH_END_GRACE="0s", **await emulator.env(request_id)
        ),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )
    return proc, f"http://127.0.0.1:{port}", request_id


async def wait_healthy(http: aiohttp.ClientSession, url: str) -> None:
    """Until the sidecar at `url` answers /healthz with 200 (the caller bounds the wait)."""
    while True:
        try:
            async with http.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.02)


async def wait_state(http: aiohttp.ClientSession, url: str, state: str) -> None:
    """Until the sidecar's status says `state` (the caller bounds the wait)."""
    while True:
        async with http.get(url + "/v1/status") as response:
            if (await response.json())["state"] == state:
                return
        await asyncio.sleep(0.02)


async def request_shutdown(http: aiohttp.ClientSession, url: str) -> None:
    """The game's shutdown request, no grace: the sidecar must accept it (202)."""
    async with http.post(url + "/v1/shutdown", json={"grace_seconds": 0}) as response:
        assert response.status == 202
