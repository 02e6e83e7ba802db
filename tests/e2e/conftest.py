"""Fixtures of the end-to-end tests: start the sidecar as a real process, always clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import pytest

from tests.e2e.process import SidecarProcess

StartSidecar = Callable[..., Awaitable[SidecarProcess]]


@pytest.fixture
async def start_sidecar() -> AsyncIterator[StartSidecar]:
    """Factory: `await start_sidecar(["serve"], env, port=...)` → a running SidecarProcess."""
    started: list[SidecarProcess] = []

    async def start(
        args: Sequence[str], env: Mapping[str, str], port: int | None = None
    ) -> SidecarProcess:
        process = await SidecarProcess.start(args, env, port)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.close()
