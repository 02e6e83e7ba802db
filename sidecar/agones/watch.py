"""`GET /watch/gameserver`: the GameServer pushed to every watcher, once now and once per change.

Two transports on one path, as Agones' gateway has them: chunked newline-delimited
`{"result": GameServer}` (the Unity SDK, Agones' REST clients), or one WebSocket text frame per
GameServer when the request asks for an upgrade (the Unreal SDK). Streams stay open until the
sidecar exits: Agones' REST client breaks if one closes at Shutdown.

`changed()` schedules one check at the end of the loop pass, so the changes one call makes are
one line; a check sends only when the GameServer's resource version moved. Nothing announces the
end of a hold (Reserved -> back), so a check that sees one plans another for its end.

Coalescing: each line is built once per resource version from the GameServer's one rendering
and the same bytes are offered to every watcher. A watcher holds a slot for the newest line and
an event, not a queue: one that does not read gets only the latest GameServer when it catches
up, so it costs at most the line its socket is sending plus the newest. At most MAX_WATCHERS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator

from aiohttp import WSMsgType, web

from sidecar.agones import wire
from sidecar.agones.gameserver import GameServer
from sidecar.agones.wire import AgonesError
from sidecar.lifecycle import Lifecycle

log = logging.getLogger("sidecar.agones")

MAX_WATCHERS = 64


class Watcher:
    """One watch stream: the newest unsent line, not a queue."""

    def __init__(self) -> None:
        self._line: bytes | None = None
        self._ready = asyncio.Event()
        self.ended = False

    def offer(self, line: bytes) -> None:
        self._line = line
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def lines(self) -> AsyncGenerator[bytes, None]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            line, self._line = self._line, None
            if line is not None:
                yield line
            if self.ended:
                return


class Watch:
    def __init__(self, lifecycle: Lifecycle, gameserver: GameServer) -> None:
        self.lifecycle = lifecycle
        self.gameserver = gameserver
        self.watchers: set[Watcher] = set()
        self._sent_version: int | None = None
        self._line_version: int | None = None
        self._cached_line = b""
        self._check_scheduled = False
        self._hold_timer: asyncio.TimerHandle | None = None
        self._closed = False

    def changed(self) -> None:
        """Something the GameServer shows may have changed: check at the end of this loop pass."""
        if self.watchers and not self._check_scheduled and not self._closed:
            self._check_scheduled = True
            asyncio.get_running_loop().call_soon(self._check)

    def close(self) -> None:
        """End every stream (shutdown): each handler then returns."""
        self._closed = True
        for watcher in list(self.watchers):
            watcher.end()
        if self._hold_timer is not None:
            self._hold_timer.cancel()

    def _check(self) -> None:
        self._check_scheduled = False
        line = self._current_line()
        if self._line_version != self._sent_version:
            self._sent_version = self._line_version
            for watcher in self.watchers:
                watcher.offer(line)
        self._plan_hold_end()

    def _current_line(self) -> bytes:
        """`{"result": GameServer}` and a newline, built once per resource version."""
        body = self.gameserver.body()
        version = self.gameserver.version
        if version != self._line_version:
            self._line_version = version
            self._cached_line = b"".join((b'{"result":', body, b"}\n"))
        return self._cached_line

    def _plan_hold_end(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        left = self.lifecycle.timers_left().get("hold")
        if left is not None and self.watchers:
            loop = asyncio.get_running_loop()
            # Just after the end: at the exact deadline the hold still counts as active.
            self._hold_timer = loop.call_later(left + 0.001, self.changed)

    def _subscribe(self) -> Watcher:
        if len(self.watchers) >= MAX_WATCHERS:
            raise AgonesError(429, 8, f"{MAX_WATCHERS} watchers are already connected")
        watcher = Watcher()
        watcher.offer(self._current_line())
        if self._closed:
            watcher.end()
        self.watchers.add(watcher)
        self._plan_hold_end()
        return watcher

    async def ndjson(self, request: web.Request) -> web.StreamResponse:
        watcher = self._subscribe()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            async with contextlib.aclosing(watcher.lines()) as lines:
                async for line in lines:
                    await response.write(line)
        except ConnectionError:
            log.debug("an Agones watcher went away")
        finally:
            # Also on cancellation: the runner cancels the handler when the client disconnects.
            self.watchers.discard(watcher)
        return response

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            raise wire.invalid_argument("not a valid WebSocket upgrade")
        watcher = self._subscribe()
        try:
            await ws.prepare(request)
            # The client's frames are read (and dropped) so that its close frame is seen; the
            # task is owned here: cancelled and awaited before the handler returns.
            reader = asyncio.create_task(_until_closed(ws, watcher))
            try:
                async with contextlib.aclosing(watcher.lines()) as lines:
                    async for line in lines:
                        if ws.closed:
                            break
                        await ws.send_str(line.rstrip(b"\n").decode())
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await ws.close()
        except ConnectionError:
            log.debug("an Agones WebSocket watcher went away")
        finally:
            self.watchers.discard(watcher)
        return ws


async def _until_closed(ws: web.WebSocketResponse, watcher: Watcher) -> None:
    try:
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        watcher.end()
