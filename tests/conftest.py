"""Shared fixtures: an in-process sidecar on a loopback port, a real sidecar process, the
project's own emulator, and a match-result receiver."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from games.harness import GameRunner

from sidecar.agent import Agent
from sidecar.config import load_settings, without_sidecar_variables
from sidecar.emulator import EmulatorOptions, EmulatorServer
from sidecar.reaper import Reaper

ROOT = Path(__file__).resolve().parent.parent
GAMES = Path(__file__).resolve().parent / "games"


class SidecarHandle:
    """A running in-process agent plus an HTTP client pointed at it."""

    def __init__(self, agent: Agent, session: aiohttp.ClientSession) -> None:
        self.agent = agent
        self.http = session
        self.url = f"http://127.0.0.1:{agent.port}"

    async def call(
        self, method: str, path: str, json: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=json, **kwargs) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None) if text else None
            except ValueError:
                body = text
            return response.status, body

    async def wait_state(self, *states: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait (event-driven) until the lifecycle reaches one of `states`."""
        changed = asyncio.Event()
        self.agent.lifecycle.subscribe(lambda old, new: changed.set())
        async with asyncio.timeout(timeout):
            while self.agent.lifecycle.state.value not in states:
                changed.clear()
                await changed.wait()
        return self.agent.status_view.to_json()


SidecarFactory = Callable[..., Awaitable[SidecarHandle]]


@pytest.fixture
async def sidecar() -> AsyncIterator[SidecarFactory]:
    """Factory: `await sidecar(SIDECAR_EMPTY_TIMEOUT="1s", environ={...})` → SidecarHandle."""
    handles: list[SidecarHandle] = []

    async def make(environ: dict[str, str] | None = None, **variables: str) -> SidecarHandle:
        env = {"SIDECAR_PORT": "0", **(environ or {}), **variables}
        agent = Agent(load_settings(env), environ=env, handle_signals=False)
        await agent.start()
        handle = SidecarHandle(agent, aiohttp.ClientSession())
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        await handle.http.close()
        await handle.agent.close()


@pytest.fixture
async def games() -> AsyncIterator[GameRunner]:
    """Real game processes (tests/games/) under a reaper of their own."""
    async with Reaper(orphan_grace=0.05) as reaper:
        runner = GameRunner(reaper)
        try:
            yield runner
        finally:
            await runner.close()


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    """The project's emulator on 127.0.0.1, port 0, with instant status steps; its request log
    shows tokens as sent, so tests can check the one the sidecar used."""
    options = EmulatorOptions(port=0, status_step_seconds=0.0, show_tokens=True)
    async with EmulatorServer(options) as emu:
        yield emu


def base_env(**extra: str) -> dict[str, str]:
    """The test environment without platform or sidecar settings, plus `extra`."""
    env = without_sidecar_variables(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Sidecar:
    """A sidecar process whose stdout is read line by line as it arrives."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stdout = bytearray()
        self._grew = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(65536):
            self.stdout += chunk
            self._grew.set()

    async def wait_output(self, needle: bytes, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.stdout:
                self._grew.clear()
                if self._reader.done():
                    raise AssertionError(f"{needle!r} never printed: {bytes(self.stdout[-500:])!r}")
                await self._grew.wait()

    async def finish(self, timeout: float = 20.0) -> tuple[int, bytes, str]:
        """Wait for exit; returns (code, stdout, stderr)."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            stderr = await self.proc.stderr.read()
            await self._reader
            code = await self.proc.wait()
        return code, bytes(self.stdout), stderr.decode(errors="replace")

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.url + "/v1/status") as r:
            body: dict[str, Any] = await r.json()
            return body

    async def wait_status(self, timeout: float = 10.0, **expected: Any) -> dict[str, Any]:
        """Poll the real API until every expected field matches (bounded)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    status = await self.status()
                    if all(status.get(k) == v for k, v in expected.items()):
                        return status
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """End it as the platform would: SIGTERM (forwarded to its game, which it then waits
        for), SIGKILL only if that fails. A SIGKILL first would orphan the game, which lives in
        its own session."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
        await self.proc.wait()


Launch = Callable[..., Awaitable["Sidecar"]]


@pytest.fixture
async def launch() -> AsyncIterator[Launch]:
    """Factory: `await launch("run", "--", *game, env={...}, SIDECAR_X="1")` → a real sidecar
    process on a free port, killed at teardown if still running."""
    started: list[Sidecar] = []

    async def start(*argv: str, env: dict[str, str] | None = None, **variables: str) -> Sidecar:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sidecar",
            *argv,
            env=base_env(SIDECAR_PORT=str(port), **(env or {}), **variables),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        sidecar = Sidecar(proc, port)
        started.append(sidecar)
        return sidecar

    yield start
    await asyncio.gather(*(sidecar.stop() for sidecar in started))
    for sidecar in started:
        await asyncio.gather(sidecar._reader, return_exceptions=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Synchronous tests: poll `predicate` until it returns something truthy (fail after
    `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill_pipe(write_fd: int) -> None:
    """Make the pipe full, as a reader that stopped reading leaves it: the next write blocks."""
    import fcntl

    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(write_fd, False)
    try:
        while True:
            os.write(write_fd, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_fd, True)


async def assert_answers_while_busy(url: str, times: int = 5, within: float = 2.0) -> None:
    """`GET /healthz` answers `times` times, each within `within` seconds: the event loop is not
    held by whatever the test loads it with. (Loose on purpose: a blocked loop took 10 s and
    more; a loaded CI machine takes a few hundred ms.)"""
    async with aiohttp.ClientSession() as http:
        for _ in range(times):
            started = time.monotonic()
            async with http.get(
                url + "/healthz", timeout=aiohttp.ClientTimeout(total=within + 3)
            ) as response:
                assert response.status == 200
            assert time.monotonic() - started < within
            await asyncio.sleep(0.1)


@dataclass
class Receiver:
    """A result endpoint on 127.0.0.1:0: answers attempt N with `script[N]` (status, headers),
    then `then`; records every request; accepts one delivery per idempotency key."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    then: int = 200
    hang: bool = False
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    released: asyncio.Event = field(default_factory=asyncio.Event)
    got: asyncio.Event = field(default_factory=asyncio.Event)  # set at the first request

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        self.got.set()
        if self.hang:
            await self.released.wait()  # until the test ends
            return web.Response(status=503)
        status, headers = self.script.pop(0) if self.script else (self.then, {})
        if 200 <= status < 300:
            self.accepted.setdefault(request.headers["Idempotency-Key"], body)
        return web.Response(status=status, headers=headers, text='{"ok": true}')


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/results", recv.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recv.url = f"http://127.0.0.1:{port}/results"
    yield recv
    recv.released.set()
    await runner.cleanup()
