"""Shared fixtures: an in-process sidecar on a loopback port, and the project's own emulator."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.agent import Agent
from sidecar.config import load_settings
from sidecar.emulator import EmulatorOptions, EmulatorServer

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
        return self.agent.status()


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
async def emulator() -> AsyncIterator[EmulatorServer]:
    """The project's emulator on 127.0.0.1, port 0, with instant status steps."""
    options = EmulatorOptions(port=0, status_step_seconds=0.0)
    async with EmulatorServer(options) as emu:
        yield emu


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
