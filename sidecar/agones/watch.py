"""`GET /watch/gameserver` over REST: the core's watch (sdk.py) written as Agones' gateway does.

Two transports on one path: chunked newline-delimited `{"result": GameServer}` (the Unity SDK,
Agones' REST clients), or one WebSocket text frame per GameServer when the request asks for an
upgrade (the Unreal SDK). Streams stay open until the sidecar exits: Agones' REST client breaks
if one closes at Shutdown.

Which GameServer and when is the core's (`GameServerWatch`: one update per change, coalesced,
at most MAX_WATCHERS); this module only frames it. The line is built once per resource version
from the GameServer's one rendering, and the same bytes go to every REST watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from sidecar.agones import proto_json
from sidecar.agones.sdk import MAX_WATCHERS, AgonesSdk, Watcher

log = logging.getLogger("sidecar.agones")

__all__ = ["MAX_WATCHERS", "RestWatch"]


class RestWatch:
    def __init__(self, sdk: AgonesSdk) -> None:
        self.sdk = sdk
        self._line_version: int | None = None
        self._line = b""
        self._text_version: int | None = None
        self._text = ""

    def _current_line(self) -> tuple[int, bytes]:
        """`{"result": GameServer}` and a newline, as it is now, built once per version."""
        body = self.sdk.get_game_server()
        version = self.sdk.gameserver.version
        if version != self._line_version:
            self._line_version = version
            self._line = b"".join((b'{"result":', body, b"}\n"))
        return version, self._line

    def _current_text(self) -> tuple[int, str]:
        """The same without its newline, as a WebSocket text frame takes it, once per version."""
        version, line = self._current_line()
        if version != self._text_version:
            self._text_version = version
            self._text = line[:-1].decode()
        return version, self._text

    async def ndjson(self, request: web.Request) -> web.StreamResponse:
        watcher = self.sdk.watch_game_server()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            sent: int | None = None
            async with contextlib.aclosing(watcher.updates()) as updates:
                async for _ in updates:
                    version, line = self._current_line()
                    if version != sent:
                        sent = version
                        await response.write(line)
        except ConnectionError:
            log.debug("an Agones watcher went away")
        finally:
            # Also on cancellation: the runner cancels the handler when the client disconnects.
            self.sdk.unwatch(watcher)
        return response

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            raise proto_json.invalid_argument("not a valid WebSocket upgrade")
        watcher = self.sdk.watch_game_server()
        try:
            await ws.prepare(request)
            # The client's frames are read (and dropped) so that its close frame is seen; the
            # task is owned here: cancelled and awaited before the handler returns.
            reader = asyncio.create_task(_until_closed(ws, watcher))
            try:
                sent: int | None = None
                async with contextlib.aclosing(watcher.updates()) as updates:
                    async for _ in updates:
                        if ws.closed:
                            break
                        version, text = self._current_text()
                        if version != sent:
                            sent = version
                            await ws.send_str(text)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await ws.close()
        except ConnectionError:
            log.debug("an Agones WebSocket watcher went away")
        finally:
            self.sdk.unwatch(watcher)
        return ws


async def _until_closed(ws: web.WebSocketResponse, watcher: Watcher) -> None:
    try:
        async for message in ws:
            if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        watcher.end()
