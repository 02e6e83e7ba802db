"""A small client for the Agones facade of an in-process sidecar (the tests' SidecarHandle)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from tests.conftest import SidecarHandle

_NO_BODY = object()


class Agones:
    def __init__(self, handle: SidecarHandle) -> None:
        facade = handle.agent.agones
        assert facade is not None, "SIDECAR_AGONES is off"
        assert facade.port is not None
        self.handle = handle
        self.facade = facade
        self.http = handle.http
        self.url = f"http://127.0.0.1:{facade.port}"

    async def call(
        self, method: str, path: str, body: Any = _NO_BODY, *, data: bytes | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON or None for an empty answer). `body` is sent as JSON."""
        if data is None and body is not _NO_BODY:
            data = json.dumps(body).encode()
        async with self.http.request(method, self.url + path, data=data) as response:
            raw = await response.read()
            if raw:
                assert response.content_type == "application/json", response.content_type
            return response.status, json.loads(raw) if raw else None

    async def gameserver(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/gameserver")
        assert status == 200, body
        gameserver: dict[str, Any] = body
        return gameserver

    async def state(self) -> str:
        return str((await self.gameserver())["status"]["state"])


class Watch:
    """`GET /watch/gameserver` as the Unity SDK reads it: newline-delimited JSON lines."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            line = await self.response.content.readline()
        assert line.endswith(b"\n"), f"the stream ended: {line!r}"
        message: dict[str, Any] = json.loads(line)
        assert set(message) == {"result"}
        result: dict[str, Any] = message["result"]
        return result

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        while True:
            gameserver = await self.next(timeout)
            if predicate(gameserver):
                return gameserver


@contextlib.asynccontextmanager
async def open_watch(agones: Agones) -> AsyncIterator[Watch]:
    async with agones.http.get(agones.url + "/watch/gameserver") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        yield Watch(response)
