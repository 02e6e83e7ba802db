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

What a client on the port can make the sidecar hold is bounded (the constants below, the table
in docs/agones.md): message sizes and the bytes of messages in flight, flow-control windows,
open calls, resets, PING and SETTINGS frames, unread answers, the handshake time and the number
of connections; grpclib bounds none of these itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import time
import weakref
from asyncio import BaseTransport
from collections.abc import Callable, Mapping
from typing import Any, cast

from grpclib.config import Configuration
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.protocol import Connection, H2Protocol
from grpclib.protocol import Stream as RawStream
from grpclib.server import Handler as GrpclibHandler
from grpclib.server import Server, Stream
from h2.errors import ErrorCodes
from h2.events import PingReceived, RemoteSettingsChanged, RequestReceived, StreamReset
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from sidecar.agones import grpc_wire as pb
from sidecar.agones.counters import Counter, ListState, Refused
from sidecar.agones.proto_json import AgonesError
from sidecar.agones.sdk import AgonesSdk
from sidecar.errors import StartupError

log = logging.getLogger("sidecar.agones")

HOST = "127.0.0.1"  # SPEC §10.1: whatever SIDECAR_HOST is
DEFAULT_PORT = 9357
# The largest message a call may send: the GameServer is bounded at 1 MiB (gameserver.py), and
# no request can carry more than the change it makes to it (a label, an annotation, a list
# value), so a larger one could only be refused. gRPC's default of 4 MiB only let a client make
# the sidecar buffer more. grpclib itself has no limit.
MAX_MESSAGE_BYTES = 1024 * 1024
# Bytes of messages being received at once (declared lengths of the messages still arriving),
# per connection and for the whole server: a call whose message does not fit is answered
# RESOURCE_EXHAUSTED at once, so a client that announces large messages and never finishes them
# cannot make the sidecar hold more than this. A game sends one message at a time, or a few.
CONNECTION_MESSAGE_BYTES = 2 * MAX_MESSAGE_BYTES
SERVER_MESSAGE_BYTES = 8 * MAX_MESSAGE_BYTES
# HTTP/2 flow control bounds what a client may send that no call has read yet (grpclib's
# defaults are 4 MiB for each stream and for the connection): HTTP/2's initial 64 KiB per
# stream, 256 KiB per connection. Calls acknowledge their bytes as they read them, so a message
# of any allowed size still arrives, in round trips that cost nothing on loopback.
CONNECTION_WINDOW = 256 * 1024
STREAM_WINDOW = 65535
# Calls open at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; h2's default is
# 100): an SDK holds Health and WatchGameServer open and makes one call at a time beside them,
# and gRPC clients queue calls beyond the limit rather than fail them. Each open call costs
# ~15 KB (measured: 12,800 open calls took 197 MB). A call beyond it is refused with
# REFUSED_STREAM (which gRPC clients retry), also before the client acknowledged the setting.
MAX_CONCURRENT_STREAMS = 16
# Worst case, every connection at its bounds: MAX_CONNECTIONS x CONNECTION_WINDOW unread (32 MiB)
# plus SERVER_MESSAGE_BYTES being assembled (8 MiB), plus MAX_CONNECTIONS x
# MAX_CONCURRENT_STREAMS open calls (~30 MB): about 70 MB. docs/agones.md has the measurements.

# As the REST facade: a game needs one or two; the cap keeps a flood from taking the
# descriptors the self-stop needs. At the cap, a new connection closes the oldest one with no
# call open (a real SDK holds its Health and Watch calls open, so it is never that one).
MAX_CONNECTIONS = 128
# A connection must send the HTTP/2 preface and its SETTINGS within this long of connecting, as
# the local API's header timeout: otherwise idle sockets could hold every connection slot.
HANDSHAKE_TIMEOUT = 10.0
# A client that resets calls faster than this (a burst, then a rate) is disconnected with
# GOAWAY ENHANCE_YOUR_CALM, as servers answered HTTP/2 "rapid reset" (CVE-2023-44487): every
# call it opens and cancels still costs the sidecar a task. A real SDK cancels a call rarely.
RESET_BURST = 200
RESET_RATE = 50.0  # per second
# Likewise for PING and SETTINGS frames, which a client can send by the thousand per read: a
# real one sends SETTINGS once or twice and PINGs every few seconds at most.
CONTROL_BURST = 100
CONTROL_RATE = 10.0  # per second
# Bytes of one read given to h2 at once (h2 parses a whole buffer before anything is seen).
FEED_SLICE = 4 * 1024
# While a client leaves our answers unread (the transport over its high-water mark), its bytes
# are not read either: a client that sends PINGs or SETTINGS and never reads the ACKs cannot grow
# the sidecar's write buffer. A connection stalled that way this long is aborted.
WRITE_STALL_TIMEOUT = 10.0
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


class _Rate:
    """A token bucket: `burst` events at once, then `rate` a second."""

    def __init__(self, burst: int, rate: float) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._tokens = float(burst)
        self._at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _ByteBudget:
    """Bytes that may be held at once, within an optional parent budget (the server's)."""

    def __init__(self, size: int, parent: _ByteBudget | None = None) -> None:
        self.left = size
        self._parent = parent

    def take(self, size: int) -> bool:
        if size > self.left or (self._parent is not None and not self._parent.take(size)):
            return False
        self.left -= size
        return True

    def give(self, size: int) -> None:
        self.left += size
        if self._parent is not None:
            self._parent.give(size)


# Each live connection's message budget, found from the grpclib connection a call runs on.
_BUDGETS: weakref.WeakKeyDictionary[Connection, _ByteBudget] = weakref.WeakKeyDictionary()


class _Protocol(H2Protocol):
    """grpclib's connection, plus the rules a client on the port cannot break (the constants
    above): the connection cap with eviction of idle connections, the handshake timeout, the
    open-call limit, the reset and PING/SETTINGS rates, reading paused while writes are, and
    the message budget."""

    def __init__(self, server: _Server, *args: Any) -> None:
        super().__init__(*args)
        self._server = server
        self._refused = False
        self._loop = asyncio.get_running_loop()
        self._raw: asyncio.Transport | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._resets = _Rate(RESET_BURST, RESET_RATE)
        self._control = _Rate(CONTROL_BURST, CONTROL_RATE)

    def connection_made(self, transport: BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self._server.admit(self):
            self._refused = True
            transport.close()
            return
        self._raw = transport
        super().connection_made(cast(asyncio.Transport, _CorkedTransport(transport)))
        h2 = self.connection._connection
        h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS})
        self.connection.flush()
        _BUDGETS[self.connection] = _ByteBudget(CONNECTION_MESSAGE_BYTES, self._server.messages)
        self._handshake_timer = self._loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_late)

    @property
    def idle(self) -> bool:
        """No call open: closing it loses nothing (a gRPC client reconnects when it next calls)."""
        return not self.processor.streams

    def data_received(self, data: bytes) -> None:
        # grpclib's H2Protocol.data_received, with each event seen before it is processed, fed
        # a slice at a time: one read may hold 256 KiB of 9-byte frames, and h2 would parse them
        # all (seconds of the loop) before a flood could be noticed.
        view = memoryview(data)
        for at in range(0, len(view), FEED_SLICE):
            if self._refused or self.connection.is_closing():
                return
            self._feed(view[at : at + FEED_SLICE].tobytes())

    def _feed(self, data: bytes) -> None:
        try:
            events = self.connection.feed(data)
        except ProtocolError:
            log.debug(
                "Agones gRPC: closing a connection on an HTTP/2 protocol error", exc_info=True
            )
            self.processor.close("Protocol error")
            return
        self.connection.flush()
        for event in events:
            if isinstance(event, RemoteSettingsChanged | PingReceived):
                if self._handshake_timer is not None:
                    self._handshake_timer.cancel()  # the client's preface and SETTINGS
                    self._handshake_timer = None
                if not self._control.allow():
                    self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "too many PING or SETTINGS frames")
                    return
            elif isinstance(event, StreamReset) and event.remote_reset and not self._resets.allow():
                self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "the client resets calls too fast")
                return
            elif (
                isinstance(event, RequestReceived)
                and len(self.processor.streams) >= MAX_CONCURRENT_STREAMS
            ):
                if not self._resets.allow():  # a refusal costs what a reset does
                    self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "the client opens too many calls")
                    return
                # Its DATA, if any, is then acknowledged and dropped (no stream to take it).
                # Already closed (the client reset it in the same read): nothing to refuse.
                with contextlib.suppress(ProtocolError):
                    h2 = self.connection._connection
                    h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                continue
            self.processor.process(event)
        self.connection.flush()

    def goaway(self, code: ErrorCodes, why: str) -> None:
        """Say GOAWAY and close the connection (its calls are cancelled)."""
        if self._raw is None or self._raw.is_closing():
            return
        log.debug("Agones gRPC: closing a connection: %s", why)
        with contextlib.suppress(Exception):  # an h2 state that cannot say it: close anyway
            self.connection._connection.close_connection(error_code=code)
            self.connection.flush()
        self.processor.close(why)

    def _handshake_late(self) -> None:
        self._handshake_timer = None
        self.goaway(ErrorCodes.PROTOCOL_ERROR, f"no HTTP/2 preface within {HANDSHAKE_TIMEOUT:g}s")

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._raw is not None:
            self._raw.pause_reading()
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_later(WRITE_STALL_TIMEOUT, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._raw is not None and not self._raw.is_closing():
            self._raw.resume_reading()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _write_stalled(self) -> None:
        self._stall_timer = None
        if self._raw is not None:
            log.debug(
                "Agones gRPC: aborting a connection that has not read for %gs", WRITE_STALL_TIMEOUT
            )
            self._raw.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        for timer in (self._handshake_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._server.live.pop(self, None)
        super().connection_lost(exc)


class _Handler(GrpclibHandler):
    """grpclib's per-connection handler, releasing every call's stream when its task ends.

    grpclib releases a call's stream in the `finally` of its request handler; a call the client
    resets before that handler ran is cancelled before the coroutine starts, its `finally` never
    runs, and the stream, its buffer and its bytes stayed on the connection for good (a client
    opening and resetting calls grew the sidecar by gigabytes)."""

    def accept(self, stream: RawStream, headers: Any, release_stream: Callable[[], Any]) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                release_stream()

        super().accept(stream, headers, release)
        task = self._tasks.get(stream)
        if task is not None:
            task.add_done_callback(lambda _: release())


class _Server(Server):
    """grpclib's Server, plus what it lacks here: the connection rules of _Protocol, writes
    corked per loop pass, and its connections closed with it (not only their calls cancelled).
    Built on grpclib's `_protocol_factory` and `Handler` (pinned <0.5 in pyproject.toml)."""

    def __init__(self, services: list[_Service]) -> None:
        config = Configuration(
            http2_connection_window_size=CONNECTION_WINDOW,
            http2_stream_window_size=STREAM_WINDOW,
        )
        super().__init__(services, codec=_CODEC, config=config)
        self.live: dict[_Protocol, None] = {}  # in connection order, oldest first
        self.messages = _ByteBudget(SERVER_MESSAGE_BYTES)
        self.evicted = 0
        self._refused_logged_at: float | None = None

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = _Handler(
            self._mapping, self._codec, self._status_details_codec, self.__dispatch__
        )
        self._handlers.add(handler)
        return _Protocol(self, handler, self._config, self._h2_config)

    def admit(self, newcomer: _Protocol) -> bool:
        """Called as each connection is made; False when the newcomer must close. At the cap,
        the oldest connection with no call open makes room."""
        live = self.live
        if len(live) >= MAX_CONNECTIONS:
            victim = next((p for p in live if p.idle), None)
            self._log_cap("the oldest idle one" if victim else "the new one")
            if victim is None:
                return False
            self.evicted += 1
            live.pop(victim, None)
            victim.goaway(ErrorCodes.NO_ERROR, "the connection cap is reached")
        live[newcomer] = None
        return True

    def _log_cap(self, closing: str) -> None:
        """Said at most once per 10 s."""
        now = time.monotonic()
        if self._refused_logged_at is None or now - self._refused_logged_at >= 10:
            self._refused_logged_at = now
            log.warning(
                "Agones gRPC: %d connections are open; closing %s", MAX_CONNECTIONS, closing
            )

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
            f"a message of {length} bytes is larger than {MAX_MESSAGE_BYTES} (1 MiB)",
        )
    budget = _BUDGETS.get(raw.connection)
    if budget is not None and not budget.take(length):
        raise GRPCError(
            Status.RESOURCE_EXHAUSTED,
            f"a message of {length} bytes does not fit: the sidecar is receiving too many "
            "messages at once",
        )
    try:
        data = await raw.recv_data(length)
    finally:
        if budget is not None:
            budget.give(length)
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
