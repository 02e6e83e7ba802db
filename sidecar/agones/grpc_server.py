"""The Agones SDK over gRPC on 127.0.0.1 (SPEC §10.1): Agones' Go, C#, Node, Rust, C++, Python
and Java SDKs, unchanged.

The three services of sdk.proto, alpha.proto and beta.proto (`agones.dev.sdk.SDK`,
`agones.dev.sdk.alpha.SDK`, `agones.dev.sdk.beta.SDK`), every RPC, over plain HTTP/2 with no
token, as a second transport over the same core as REST (sdk.py): one GameServer, one watch
fan-out (its 64-watcher cap counts both), one self-stop. Messages are encoded by grpc_wire.py;
the HTTP/2 and gRPC framing is grpclib's (pure Python on asyncio: ~1.7 MB of RSS where grpcio
takes ~9 MB). Imported only when SIDECAR_AGONES=true.

What the SDKs rely on, measured against Agones' own clients:
* `Health` is a client stream the SDKs open at connect and never close: every message is one
  ping, and the call is answered only when the client ends it. Ending it first (even with OK)
  makes Agones' Go client fail its next ping with EOF.
* `WatchGameServer` sends the current GameServer first (a client whose stream ends before its
  first message hangs for ever), then the latest one per change, and stays open until the
  sidecar exits (through Shutdown).
* A refused call is status 2 (UNKNOWN) with Agones' message, as Agones' SDK server answers.
* Bytes that are not HTTP/2 close that connection only (grpclib's protocol does so).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import time
from asyncio import BaseTransport
from collections.abc import Callable, Mapping
from typing import Any, cast

from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.protocol import H2Protocol
from grpclib.server import Handler as GrpclibHandler
from grpclib.server import Server, Stream

from sidecar.agones import grpc_wire as pb
from sidecar.agones.counters import Counter, ListState, Refused
from sidecar.agones.proto_json import AgonesError
from sidecar.agones.sdk import AgonesSdk
from sidecar.errors import StartupError

log = logging.getLogger("sidecar.agones")

HOST = "127.0.0.1"  # SPEC §10.1: whatever SIDECAR_HOST is
DEFAULT_PORT = 9357
# gRPC's own default limit for a received message. No SDK call needs more (the GameServer is
# bounded at 1 MiB), and grpclib itself has no limit: it would buffer a 4 GiB length prefix.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# As the REST facade: a game needs one or two; the cap keeps a flood from taking the
# descriptors the self-stop needs.
MAX_CONNECTIONS = 128
SHUTDOWN_STEP_TIMEOUT = 5.0


class WireCodec(CodecBase):
    """grpclib's codec seam: messages are grpc_wire dicts; bytes already encoded pass as they
    are (the GameServer, encoded once per version for every caller and watcher)."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        assert isinstance(message_type, pb.Message)
        return pb.encode(message_type, message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        assert isinstance(message_type, pb.Message)
        try:
            return pb.decode(message_type, data)
        except pb.DecodeError as exc:
            raise GRPCError(
                Status.INVALID_ARGUMENT, f"malformed {message_type.name}: {exc}"
            ) from None


_CODEC = WireCodec()


class _Service:
    """One gRPC service: `__mapping__` is what grpclib's Server reads."""

    def __init__(self, name: str, rpcs: Mapping[str, Handler]) -> None:
        self._mapping = {f"/{name}/{method}": handler for method, handler in rpcs.items()}

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping


class _CorkedTransport:
    """The writes of one loop pass go out as one send. grpclib flushes a unary answer's
    headers, message and trailers one by one: three syscalls, and three wake-ups of the client,
    where one does (measured: about a third of a call's CPU)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info...: the transport's
        return getattr(self._transport, name)


class _Protocol(H2Protocol):
    def __init__(self, server: _Server, *args: Any) -> None:
        super().__init__(*args)
        self._server = server
        self._refused = False

    def connection_made(self, transport: BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        live = self._server.live
        if len(live) >= MAX_CONNECTIONS:
            self._refused = True
            self._server.refused()
            transport.close()
            return
        live.add(self)
        super().connection_made(cast(asyncio.Transport, _CorkedTransport(transport)))

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._refused:
            self._server.live.discard(self)
            super().connection_lost(exc)


class _Server(Server):
    """grpclib's Server, plus what it lacks here: writes corked per loop pass, and its
    connections closed with it (not only their calls cancelled). Built on grpclib's
    `_protocol_factory` (pinned <0.5 in pyproject.toml)."""

    def __init__(self, services: list[_Service]) -> None:
        super().__init__(services, codec=_CODEC)
        self.live: set[_Protocol] = set()
        self._refused_logged_at: float | None = None

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = GrpclibHandler(
            self._mapping, self._codec, self._status_details_codec, self.__dispatch__
        )
        self._handlers.add(handler)
        return _Protocol(self, handler, self._config, self._h2_config)

    def refused(self) -> None:
        """A connection beyond MAX_CONNECTIONS was closed: said at most once per 10 s."""
        now = time.monotonic()
        if self._refused_logged_at is None or now - self._refused_logged_at >= 10:
            self._refused_logged_at = now
            log.warning("Agones gRPC: %d connections are open; closing new ones", MAX_CONNECTIONS)

    def close_connections(self) -> None:
        for protocol in list(self.live):
            protocol.processor.close("the sidecar is stopping")


async def _recv(stream: Stream[Any, Any], message_type: pb.Message) -> dict[str, Any] | None:
    """The next message of the call, None at its end: grpclib's framing (a flag byte, a 4-byte
    length, the message), with the bound it lacks and errors a client can act on."""
    raw = stream._stream  # grpclib's HTTP/2 stream (pinned <0.5 in pyproject.toml)
    prefix = await raw.recv_data(5)
    if not prefix:
        return None
    if len(prefix) < 5:
        raise GRPCError(Status.INVALID_ARGUMENT, "the stream ended inside a message")
    if prefix[0]:
        raise GRPCError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    length = int.from_bytes(prefix[1:5], "big")
    if length > MAX_MESSAGE_BYTES:
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"a message of {length} bytes is larger than {MAX_MESSAGE_BYTES} (4 MiB)",
        )
    data = await raw.recv_data(length)
    if len(data) < length:
        raise GRPCError(Status.INVALID_ARGUMENT, "the stream ended inside a message")
    decoded: dict[str, Any] = _CODEC.decode(data, message_type)
    return decoded


def _unary(func: Callable[[Any], Any], request: pb.Message, reply: pb.Message) -> Handler:
    async def rpc(stream: Stream[Any, Any]) -> None:
        message = await _recv(stream, request)
        if message is None:
            raise GRPCError(Status.INVALID_ARGUMENT, f"no {request.name} was sent")
        with _as_grpc_errors():
            answer = func(message)
        await stream.send_message(answer)

    return Handler(rpc, Cardinality.UNARY_UNARY, request, reply)


@contextlib.contextmanager
def _as_grpc_errors() -> Any:
    try:
        yield
    except Refused as exc:
        raise GRPCError(Status.UNKNOWN, str(exc)) from None
    except AgonesError as exc:
        raise GRPCError(Status(exc.code), exc.message) from None


def _empty_after(action: Callable[[Any], None]) -> Callable[[Any], dict[str, Any]]:
    """An RPC that answers Empty once `action(request)` is done."""

    def run(message: Any) -> dict[str, Any]:
        action(message)
        return {}

    return run


def _counter(name: str, counter: Counter) -> dict[str, Any]:
    return {"name": name, "count": counter.count, "capacity": counter.capacity}


def _list(name: str, item: ListState) -> dict[str, Any]:
    return {"name": name, "capacity": item.capacity, "values": list(item.values)}


def _wrapped(value: dict[str, Any] | None) -> int | None:
    """An Int64Value: None when not given, its value (0 included) when given."""
    return None if value is None else int(value["value"])


class AgonesGrpc:
    """The gRPC server over an AgonesSdk (the REST facade's: one core for both)."""

    def __init__(self, sdk: AgonesSdk, *, port: int = DEFAULT_PORT) -> None:
        self.sdk = sdk
        self._requested_port = port
        self.port: int | None = None
        self._server: _Server | None = None
        self._encoded_version: int | None = None
        self._encoded = b""

    # --- start and close -----------------------------------------------------------------------
    async def start(self) -> int:
        """Bind 127.0.0.1:port; StartupError when it cannot. Returns the port bound."""
        # grpclib logs every call a client cancels at INFO (a watch the game stops reading, its
        # Health stream at exit): noise in the game's log. Its errors still show.
        logging.getLogger("grpclib").setLevel(logging.WARNING)
        server = _Server(self._services())
        try:
            await server.start(HOST, self._requested_port)
        except OSError as exc:
            why = (
                "the port is already in use (set SIDECAR_AGONES_GRPC_PORT to a free port, or 0)"
                if exc.errno == errno.EADDRINUSE
                else exc.strerror
            )
            raise StartupError(
                f"cannot serve the Agones SDK over gRPC on {HOST}:{self._requested_port}: {why}"
            ) from None
        self._server = server
        listening = cast("asyncio.Server | None", server._server)
        sockets = listening.sockets if listening is not None else ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port
        log.info("Agones SDK gRPC API on %s:%s", HOST, self.port)
        return self.port

    async def close(self) -> None:
        """Cancel the calls still open (Health streams; watch streams end with the core), then
        close every connection (each step bounded)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_STEP_TIMEOUT)
        server.close_connections()

    # --- the services --------------------------------------------------------------------------
    def _services(self) -> list[_Service]:
        sdk = self.sdk
        empty, alpha_empty = pb.EMPTY, pb.ALPHA_EMPTY

        def call(action: Callable[[], None]) -> Callable[[Any], dict[str, Any]]:
            return _empty_after(lambda _: action())

        main = _Service(
            "agones.dev.sdk.SDK",
            {
                "Ready": _unary(call(sdk.ready), empty, empty),
                "Allocate": _unary(call(sdk.allocate), empty, empty),
                "Shutdown": _unary(call(sdk.shutdown), empty, empty),
                "Health": Handler(self._health, Cardinality.STREAM_UNARY, empty, empty),
                "GetGameServer": _unary(lambda _: self._gameserver()[1], empty, pb.GAMESERVER),
                "WatchGameServer": Handler(
                    self._watch, Cardinality.UNARY_STREAM, empty, pb.GAMESERVER
                ),
                "SetLabel": _unary(
                    _empty_after(lambda m: sdk.set_label(m["key"], m["value"])), pb.KEY_VALUE, empty
                ),
                "SetAnnotation": _unary(
                    _empty_after(lambda m: sdk.set_annotation(m["key"], m["value"])),
                    pb.KEY_VALUE,
                    empty,
                ),
                "Reserve": _unary(
                    _empty_after(lambda m: sdk.reserve(m["seconds"])), pb.DURATION, empty
                ),
            },
        )
        alpha = _Service(
            "agones.dev.sdk.alpha.SDK",
            {
                "PlayerConnect": _unary(
                    lambda m: {"bool": sdk.player_connect(m["playerID"])},
                    pb.PLAYER_ID,
                    pb.BOOL_MESSAGE,
                ),
                "PlayerDisconnect": _unary(
                    lambda m: {"bool": sdk.player_disconnect(m["playerID"])},
                    pb.PLAYER_ID,
                    pb.BOOL_MESSAGE,
                ),
                "SetPlayerCapacity": _unary(
                    _empty_after(lambda m: sdk.set_player_capacity(m["count"])),
                    pb.COUNT,
                    alpha_empty,
                ),
                "GetPlayerCapacity": _unary(
                    lambda _: {"count": sdk.get_player_capacity()}, alpha_empty, pb.COUNT
                ),
                "GetPlayerCount": _unary(
                    lambda _: {"count": sdk.get_player_count()}, alpha_empty, pb.COUNT
                ),
                "IsPlayerConnected": _unary(
                    lambda m: {"bool": sdk.is_player_connected(m["playerID"])},
                    pb.PLAYER_ID,
                    pb.BOOL_MESSAGE,
                ),
                "GetConnectedPlayers": _unary(
                    lambda _: {"list": sdk.get_connected_players()}, alpha_empty, pb.PLAYER_ID_LIST
                ),
            },
        )
        beta = _Service(
            "agones.dev.sdk.beta.SDK",
            {
                "GetCounter": _unary(
                    lambda m: _counter(m["name"], sdk.get_counter(m["name"])),
                    pb.GET_COUNTER,
                    pb.COUNTER,
                ),
                "UpdateCounter": _unary(self._update_counter, pb.UPDATE_COUNTER, pb.COUNTER),
                "GetList": _unary(
                    lambda m: _list(m["name"], sdk.get_list(m["name"])), pb.GET_LIST, pb.LIST
                ),
                "UpdateList": _unary(self._update_list, pb.UPDATE_LIST, pb.LIST),
                "AddListValue": _unary(
                    lambda m: _list(m["name"], sdk.add_list_value(m["name"], m["value"])),
                    pb.LIST_VALUE_ADD,
                    pb.LIST,
                ),
                "RemoveListValue": _unary(
                    lambda m: _list(m["name"], sdk.remove_list_value(m["name"], m["value"])),
                    pb.LIST_VALUE_REMOVE,
                    pb.LIST,
                ),
            },
        )
        return [main, alpha, beta]

    def _gameserver(self) -> tuple[int, bytes]:
        """The GameServer as protobuf bytes, encoded once per resource version from the core's
        one rendering, the same bytes for GetGameServer and every watcher."""
        body = self.sdk.get_game_server()
        version = self.sdk.gameserver.version
        if version != self._encoded_version:
            self._encoded_version = version
            self._encoded = pb.encode(pb.GAMESERVER, json.loads(body))
        return version, self._encoded

    async def _health(self, stream: Stream[Any, Any]) -> None:
        # Answered only once the client ends its stream: the SDKs never do while they run.
        while await _recv(stream, pb.EMPTY) is not None:
            self.sdk.health(1)
        await stream.send_message({})

    async def _watch(self, stream: Stream[Any, Any]) -> None:
        await _recv(stream, pb.EMPTY)
        try:
            watcher = self.sdk.watch_game_server()
        except AgonesError as exc:  # beyond the shared cap
            raise GRPCError(Status.RESOURCE_EXHAUSTED, exc.message) from None
        try:
            sent: int | None = None
            async with contextlib.aclosing(watcher.updates()) as updates:
                async for _ in updates:
                    version, data = self._gameserver()
                    if version != sent:
                        sent = version
                        await stream.send_message(data)
        finally:
            # Also on cancellation: grpclib cancels the call when the client goes away.
            self.sdk.unwatch(watcher)

    def _update_counter(self, message: dict[str, Any]) -> dict[str, Any]:
        update = message["counterUpdateRequest"]
        if update is None:
            raise Refused("invalid argument. Malformed CounterUpdateRequest: it is missing")
        name = update["name"]
        counter = self.sdk.update_counter(
            name,
            count=_wrapped(update["count"]),
            capacity=_wrapped(update["capacity"]),
            diff=update["countDiff"],
        )
        return _counter(name, counter)

    def _update_list(self, message: dict[str, Any]) -> dict[str, Any]:
        item = message["list"]
        if item is None:
            raise Refused("invalid argument. Malformed UpdateListRequest: the list is missing")
        mask = message["update_mask"]
        paths = [] if mask is None else list(mask["paths"])
        name = item["name"]
        updated = self.sdk.update_list(
            name, paths, capacity=item["capacity"], values=item["values"]
        )
        return _list(name, updated)
