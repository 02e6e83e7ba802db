"""The Agones SDK REST API on 127.0.0.1 (SPEC §10): routes, the watch, start and close.

A sibling of the local API, built the same way from narrow parts: the lifecycle, the platform's
deployment info and the facade's options. No token: the Agones SDKs send none, and the port is
bound on loopback only.

A thin adapter over the transport-independent core (sdk.py): parse the body (proto_json.py),
make the SDK call, answer in Agones' proto-JSON shapes. The core announces its own changes to the
watch, so no handler tells anyone anything. Routing mirrors grpc-gateway: an unknown path is 404
(code 5), a known path with another method 501 (code 12).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.access_log import AccessLog, error_of
from sidecar.agones import proto_json
from sidecar.agones.counters import LIST_FIELDS, Counter, ListState, Refused
from sidecar.agones.gameserver import FacadeOptions
from sidecar.agones.proto_json import EMPTY, AgonesError, PingScanner
from sidecar.agones.sdk import MAX_WATCHERS, AgonesSdk
from sidecar.agones.watch import RestWatch
from sidecar.deployment import DeploymentInfo
from sidecar.errors import StartupError
from sidecar.lifecycle import Lifecycle

if TYPE_CHECKING:
    from sidecar.config import Settings

log = logging.getLogger("sidecar.agones")

HOST = "127.0.0.1"  # SPEC §10: whatever SIDECAR_HOST is
# Annotations may hold 256 KiB in all (Kubernetes); one body may carry that much.
MAX_BODY_BYTES = 320 * 1024
BODY_TIMEOUT = 10.0
HEALTH_READ_AT_ONCE = 64 * 1024
# A game needs a handful; the cap only keeps a flood from taking descriptors the self-stop needs.
MAX_CONNECTIONS = 2 * MAX_WATCHERS
SHUTDOWN_STEP_TIMEOUT = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AgonesFacade:
    def __init__(
        self,
        lifecycle: Lifecycle,
        options: FacadeOptions,
        deployment: DeploymentInfo,
        *,
        port: int = 9358,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.lifecycle = lifecycle
        self.sdk = AgonesSdk(lifecycle, options, deployment)
        self.gameserver = self.sdk.gameserver
        self.watch = self.sdk.watch  # the core's fan-out: its watchers are every transport's
        self._rest_watch = RestWatch(self.sdk)
        self._requested_port = port
        self.port: int | None = None
        self.body_timeout = body_timeout
        self._runner: web.AppRunner | None = None
        # Every SDK call the game makes, as Agones' local mode logs them (SPEC §13).
        self.access_log = AccessLog(logging.getLogger("sidecar.agones.access"))

    @classmethod
    def from_settings(
        cls, lifecycle: Lifecycle, deployment: DeploymentInfo, settings: Settings
    ) -> AgonesFacade:
        """The facade the SIDECAR_AGONES_* variables describe."""
        options = FacadeOptions(
            players_list=settings.agones_players_list,
            auto_allocate=settings.agones_auto_allocate,
            manifest=settings.agones_gameserver,
            health_timeout=settings.health_timeout,
        )
        return cls(lifecycle, options, deployment, port=settings.agones_http_port)

    # --- start and close ---------------------------------------------------------------------
    async def start(self) -> int:
        """Bind 127.0.0.1:port; StartupError when it cannot. Returns the port bound."""
        from sidecar.http_server import ApiRunner, connection_cap

        runner = ApiRunner(
            self.build_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            max_connections=min(MAX_CONNECTIONS, connection_cap()),
        )
        await runner.setup()
        try:
            self.port = await runner.listen(HOST, self._requested_port)
        except OSError as exc:
            await runner.cleanup()
            why = (
                "the port is already in use (set SIDECAR_AGONES_HTTP_PORT to a free port, or 0)"
                if exc.errno == errno.EADDRINUSE
                else exc.strerror
            )
            raise StartupError(
                f"cannot serve the Agones SDK on {HOST}:{self._requested_port}: {why}"
            ) from None
        self._runner = runner
        log.info("Agones SDK REST API on http://%s:%s", HOST, self.port)
        return self.port

    async def close(self) -> None:
        """End the watch streams, then stop serving (each step bounded)."""
        self.sdk.close()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), SHUTDOWN_STEP_TIMEOUT)
            self._runner = None

    # --- the application ---------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        routes: list[tuple[str, dict[str, Handler]]] = [
            ("/ready", {"POST": self.ready}),
            ("/allocate", {"POST": self.allocate}),
            ("/shutdown", {"POST": self.shutdown}),
            ("/health", {"POST": self.health}),
            ("/reserve", {"POST": self.reserve}),
            ("/gameserver", {"GET": self.get_gameserver}),
            ("/watch/gameserver", {"GET": self.watch_gameserver}),
            ("/metadata/label", {"PUT": self.set_label}),
            ("/metadata/annotation", {"PUT": self.set_annotation}),
            ("/alpha/player/connect", {"POST": self.player_connect}),
            ("/alpha/player/disconnect", {"POST": self.player_disconnect}),
            (
                "/alpha/player/capacity",
                {"GET": self.get_player_capacity, "PUT": self.set_player_capacity},
            ),
            ("/alpha/player/count", {"GET": self.get_player_count}),
            ("/alpha/player/connected", {"GET": self.connected_players}),
            ("/alpha/player/connected/{playerID}", {"GET": self.is_player_connected}),
            (
                "/v1beta1/counters/{name}",
                {"GET": self.get_counter, "PATCH": self.update_counter},
            ),
            # Before /lists/{name}, which would also match "name:addValue".
            ("/v1beta1/lists/{name}:addValue", {"POST": self.add_list_value}),
            ("/v1beta1/lists/{name}:removeValue", {"POST": self.remove_list_value}),
            ("/v1beta1/lists/{name}", {"GET": self.get_list, "PATCH": self.update_list}),
        ]
        for path, methods in routes:
            for method, handler in methods.items():
                app.router.add_route(method, path, self._guarded(handler))
            # Same resource, the methods above did not take: grpc-gateway's 501.
            app.router.add_route("*", path, self._guarded(self._method_not_allowed))
        app.router.add_route("*", "/{tail:.*}", self._guarded(self._not_found))
        return app

    def _guarded(self, handler: Handler) -> Handler:
        access = self.access_log

        async def guarded(request: web.Request) -> web.StreamResponse:
            # Timed only when every call is logged (DEBUG): the default level reads no clock.
            started = time.perf_counter() if access.enabled_for_all() else None
            try:
                response = await handler(request)
            except AgonesError as exc:
                response = _error(exc)
            except Refused as exc:
                response = _error(proto_json.refused(str(exc)))
            status = response.status
            if status >= 400 or started is not None:
                body = response.body if isinstance(response, web.Response) else None
                code, message = error_of(body)
                took = None if started is None else time.perf_counter() - started
                # A refused SDK call is 500 with code 2 (Agones' own answer): the game's
                # developer wants to see it as much as a 4xx.
                access.record(
                    request.method,
                    request.path,
                    status,
                    took,
                    code,
                    message,
                    refused=code == "2",
                )
            return response

        return guarded

    @staticmethod
    async def _method_not_allowed(request: web.Request) -> web.StreamResponse:
        raise proto_json.METHOD_NOT_ALLOWED

    @staticmethod
    async def _not_found(request: web.Request) -> web.StreamResponse:
        raise proto_json.NOT_FOUND

    async def _read(self, request: web.Request) -> bytes:
        try:
            async with asyncio.timeout(self.body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise proto_json.invalid_argument(
                f"the body is larger than {MAX_BODY_BYTES // 1024} KiB"
            ) from None
        except TimeoutError:
            raise AgonesError(
                504, 4, f"the body did not arrive within {self.body_timeout:g}s", close=True
            ) from None

    async def _body(self, request: web.Request, message: proto_json.Message) -> dict[str, Any]:
        return message.parse(await self._read(request))

    # --- SDK ---------------------------------------------------------------------------------
    async def ready(self, request: web.Request) -> web.Response:
        await self._body(request, proto_json.EMPTY_MESSAGE)
        self.sdk.ready()
        return _ok(EMPTY)

    async def allocate(self, request: web.Request) -> web.Response:
        await self._body(request, proto_json.EMPTY_MESSAGE)
        self.sdk.allocate()
        return _ok(EMPTY)

    async def shutdown(self, request: web.Request) -> web.Response:
        await self._body(request, proto_json.EMPTY_MESSAGE)
        self.sdk.shutdown()
        return _ok(EMPTY)

    async def reserve(self, request: web.Request) -> web.Response:
        body = await self._body(request, proto_json.DURATION)
        self.sdk.reserve(body["seconds"])
        return _ok(EMPTY)

    async def health(self, request: web.Request) -> web.Response:
        """Client streaming: one ping per JSON object, counted as the bytes arrive."""
        if not request.body_exists:
            # What Agones' sdk-server answers to a body-less ping (its healthCheckWrapper).
            return web.Response(status=400)
        length = request.content_length
        if length is not None and length <= HEALTH_READ_AT_ONCE:
            # The SDKs send one `{}` per request: read it whole (the hot path, ~15% cheaper).
            raw = await self._read(request)
            if raw == EMPTY:
                self.sdk.health(1)
                return _ok(EMPTY)
            chunks: AsyncIterator[bytes] = _once(raw)
        else:
            chunks = request.content.iter_any()  # a long-lived client stream
        scanner = PingScanner()
        try:
            async for chunk in chunks:
                self.sdk.health(scanner.feed(chunk))
            scanner.close()
        except AgonesError as exc:
            # Pings before the malformed part were counted; close the connection rather than
            # read the rest of a stream we refused.
            raise AgonesError(exc.status, exc.code, exc.message, close=True) from None
        return _ok(EMPTY)

    async def get_gameserver(self, request: web.Request) -> web.Response:
        return _ok(self.sdk.get_game_server())

    async def watch_gameserver(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._rest_watch.websocket(request)
        return await self._rest_watch.ndjson(request)

    async def set_label(self, request: web.Request) -> web.Response:
        body = await self._body(request, proto_json.KEY_VALUE)
        self.sdk.set_label(body["key"], body["value"])
        return _ok(EMPTY)

    async def set_annotation(self, request: web.Request) -> web.Response:
        body = await self._body(request, proto_json.KEY_VALUE)
        self.sdk.set_annotation(body["key"], body["value"])
        return _ok(EMPTY)

    # --- players (alpha) -------------------------------------------------------------------
    async def player_connect(self, request: web.Request) -> web.Response:
        body = await self._body(request, proto_json.PLAYER_ID)
        return _ok(proto_json.dumps({"bool": self.sdk.player_connect(body["playerID"])}))

    async def player_disconnect(self, request: web.Request) -> web.Response:
        body = await self._body(request, proto_json.PLAYER_ID)
        return _ok(proto_json.dumps({"bool": self.sdk.player_disconnect(body["playerID"])}))

    async def set_player_capacity(self, request: web.Request) -> web.Response:
        body = await self._body(request, proto_json.COUNT)
        self.sdk.set_player_capacity(body["count"])
        return _ok(EMPTY)

    async def get_player_capacity(self, request: web.Request) -> web.Response:
        return _ok(proto_json.dumps({"count": proto_json.int64(self.sdk.get_player_capacity())}))

    async def get_player_count(self, request: web.Request) -> web.Response:
        return _ok(proto_json.dumps({"count": proto_json.int64(self.sdk.get_player_count())}))

    async def connected_players(self, request: web.Request) -> web.Response:
        return _ok(proto_json.dumps({"list": self.sdk.get_connected_players()}))

    async def is_player_connected(self, request: web.Request) -> web.Response:
        player_id = request.match_info["playerID"]
        return _ok(proto_json.dumps({"bool": self.sdk.is_player_connected(player_id)}))

    # --- counters and lists (beta) ---------------------------------------------------------
    async def get_counter(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _ok(proto_json.dumps(counter_json(name, self.sdk.get_counter(name))))

    async def update_counter(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await self._body(request, proto_json.COUNTER_UPDATE)
        counter = self.sdk.update_counter(
            name, count=body["count"], capacity=body["capacity"], diff=body["countDiff"]
        )
        return _ok(proto_json.dumps(counter_json(name, counter)))

    async def get_list(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _ok(proto_json.dumps(list_json(name, self.sdk.get_list(name))))

    async def update_list(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = await self._read(request)
        body = proto_json.LIST.parse(raw)
        mask = _update_mask(request, raw)
        updated = self.sdk.update_list(name, mask, capacity=body["capacity"], values=body["values"])
        return _ok(proto_json.dumps(list_json(name, updated)))

    async def add_list_value(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await self._body(request, proto_json.LIST_VALUE)
        return _ok(proto_json.dumps(list_json(name, self.sdk.add_list_value(name, body["value"]))))

    async def remove_list_value(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await self._body(request, proto_json.LIST_VALUE)
        updated = self.sdk.remove_list_value(name, body["value"])
        return _ok(proto_json.dumps(list_json(name, updated)))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _update_mask(request: web.Request, raw: bytes) -> list[str]:
    """The fields an UpdateList sets: `?update_mask=` (or `updateMask`), comma-separated, or
    else the top-level fields the body names, as grpc-gateway infers a PATCH's mask."""
    given = request.query.getall("update_mask", []) or request.query.getall("updateMask", [])
    if given:
        return [path.strip() for item in given for path in item.split(",") if path.strip()]
    if not raw.strip():
        return []
    data = proto_json.parse_json(raw)  # already parsed once: it is an object
    return [key for key in data if key in LIST_FIELDS]


def counter_json(name: str, counter: Counter) -> dict[str, Any]:
    return {
        "name": name,
        "count": proto_json.int64(counter.count),
        "capacity": proto_json.int64(counter.capacity),
    }


def list_json(name: str, item: ListState) -> dict[str, Any]:
    return {"name": name, "capacity": proto_json.int64(item.capacity), "values": list(item.values)}


def _ok(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _error(exc: AgonesError) -> web.Response:
    response = web.Response(body=exc.body(), status=exc.status, content_type="application/json")
    if exc.close:
        response.force_close()
    return response
