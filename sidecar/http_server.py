"""HTTP server plumbing for the local API: the connection rules of SPEC §11 ("The local API
stays up") that aiohttp's defaults leave open to a client on the port. Routes live in api.py.

* Header timeout: a connection must complete its request headers within `header_timeout`
  (10 s) of connecting, or of the first byte of its next request on a kept-alive connection;
  otherwise it is closed. aiohttp has no such timer: a half-open or trickling connection
  otherwise holds a descriptor for ever, and enough of them exhaust the process's descriptors
  (the self-stop then fails with "Too many open files").
* Body deadline: a request's body must have arrived in full within `body_deadline` (15 s) of its
  headers, or the connection is closed. The routes bound their own reads at 10 s and answer
  408/504 first; this catches a route that streams a body (the Agones facade's `POST /health`)
  from a client that trickles it without end. A connection that has been receiving a body for
  more than `BODY_EVICTABLE_AFTER` (1 s; a local client sends one in milliseconds) can also be
  closed by the connection cap below, as one waiting for its headers can.
* Idle keep-alive connections close after `keepalive_timeout` (60 s; aiohttp's default is an
  hour).
* Unread bodies: after an answer that did not read the whole body (a 408 or 413, a route that
  takes no body), aiohttp reads and discards the rest before closing, so that the client sees
  the answer rather than a reset. It does so for `lingering_time` (2 s here, 10 s by default):
  a local client delivers a body in milliseconds, and longer only lets a trickle hold on.
* Stalled writes: a connection whose peer has not taken our bytes for `write_stall_timeout`
  (10 s, measured while the transport is over its high-water mark) is aborted, so a client that
  sends requests and never reads the answers cannot pin a handler and its buffers.
* aiohttp's own error answers (a malformed request line or header) are the JSON error
  envelope, logged at DEBUG: they are a client's mistake, and at ERROR with a traceback each one
  was 11 log lines.
* A connection cap below the descriptor limit (`connection_cap`): a connection beyond it closes
  the oldest one that is still waiting for its request headers (half-open, trickling or idle
  keep-alive, which HTTP lets a server close at any time), else the oldest one still receiving
  a body after BODY_EVICTABLE_AFTER, or itself if every connection is in a request. The header
  timeout alone frees descriptors every 10 s, but a client that keeps reopening connections
  would keep them exhausted, and the self-stop needs one to connect. The listening sockets
  (`ApiRunner.listen`, sidecar/listener.py) stop accepting at the cap plus one accept burst, so
  a flood cannot outrun the cap before it closes anything.
* A disconnecting client cancels its handler (`handler_cancellation`): an SSE subscriber that
  goes away is dropped at once instead of at its next keep-alive write.
* Failures to accept (descriptor exhaustion) are logged at most once per 10 s: asyncio logs each
  failed `accept()` with a traceback, about a hundred a second while the limit is reached.

None of this is public aiohttp API: the classes below subclass `RequestHandler` and `web.Server`,
override `AppRunner._make_server` and read private attributes. pyproject.toml therefore bounds
aiohttp to the minors the suite runs on (`SUPPORTED_AIOHTTP`), and `ApiRunner.setup` checks
that every hook is there before the first connection (`check_aiohttp`): an aiohttp without one
is a start-up error (exit 3, one line), never a server silently missing its rules.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from sidecar.api_wire import error_code, error_response
from sidecar.errors import StartupError
from sidecar.listener import ConnectionBudget, bind_listeners

log = logging.getLogger("sidecar.http")

HEADER_TIMEOUT = 10.0
BODY_DEADLINE = 15.0
BODY_EVICTABLE_AFTER = 1.0
KEEPALIVE_TIMEOUT = 60.0
WRITE_STALL_TIMEOUT = 10.0
LINGERING_TIME = 2.0
MAX_CONNECTIONS = 1024  # a game uses a handful; this only bounds a flood
MIN_CONNECTIONS = 16
ACCEPT_BURST = 128  # aiohttp's listen backlog, which asyncio also accepts per loop pass
CAP_LOG_INTERVAL = 10.0
ACCEPT_ERROR_LOG_INTERVAL = 10.0
# What asyncio's accept loop reports through the loop's exception handler when the process or
# the system is out of descriptors or buffers (selector_events._accept_connection).
_ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_MAX_ERROR_MESSAGE = 200

# pyproject.toml's aiohttp range (tests/test_http_server.py checks that the two agree): the
# minors the suite has run on, newest and lowest (`scripts/test --lowest`).
SUPPORTED_AIOHTTP = ">=3.14,<3.15"

# What the classes below take from aiohttp beyond its public API, checked by `check_aiohttp`.
# RequestHandler: attributes read, then methods overridden with the parameters they are given.
_HANDLER_ATTRIBUTES = (
    "_request_count",
    "_waiter",
    "_manager",
    "_loop",
    "_messages",
    "transport",
    "peername",
)
_HANDLER_OVERRIDES: dict[str, tuple[str, ...]] = {
    # GuardedServer passes the runner's options on; these two are ApiRunner's own.
    "__init__": ("manager", "loop", "keepalive_timeout", "lingering_time"),
    "connection_made": ("transport",),
    "data_received": ("data",),
    "pause_writing": (),
    "resume_writing": (),
    "connection_lost": ("exc",),
    "handle_error": ("request", "status", "exc", "message"),
    "force_close": (),
}
# web.Server: set in its __init__, so looked for on an instance.
_SERVER_ATTRIBUTES = (
    "_loop",
    "_kwargs",
    "_connections",
    "request_handler",
    "request_factory",
    "handler_cancellation",
)
_SERVER_INIT = ("handler", "request_factory", "handler_cancellation", "loop")


class UnsupportedAiohttp(StartupError):
    """The installed aiohttp lacks a hook this module builds on (exit 3): serving anyway would
    leave the local API without its connection rules."""


def missing_aiohttp_hooks() -> list[str]:
    """The private aiohttp hooks (SUPPORTED_AIOHTTP) this module needs and cannot find, as
    `Class.name(parameters)`; empty when everything is there. Needs a running loop."""
    missing = [f"RequestHandler.{n}" for n in _HANDLER_ATTRIBUTES if not hasattr(RequestHandler, n)]
    for name, wanted in _HANDLER_OVERRIDES.items():
        if not _accepts(getattr(RequestHandler, name, None), wanted):
            missing.append(f"RequestHandler.{name}({', '.join(wanted)})")
    if not _accepts(web.Server.__init__, _SERVER_INIT, passes_on=True):
        missing.append(f"Server.__init__({', '.join(_SERVER_INIT)}, **kwargs)")
    else:
        server = web.Server(_never_called)
        missing += [f"Server.{n}" for n in _SERVER_ATTRIBUTES if not hasattr(server, n)]
    if not inspect.iscoroutinefunction(getattr(web.AppRunner, "_make_server", None)):
        missing.append("AppRunner._make_server()")
    return missing


def check_aiohttp() -> None:
    """UnsupportedAiohttp, one line naming what is missing, unless every hook is there."""
    missing = missing_aiohttp_hooks()
    if missing:
        raise UnsupportedAiohttp(
            f"aiohttp {aiohttp.__version__} is not supported: {', '.join(missing)} missing; "
            f"supported: aiohttp{SUPPORTED_AIOHTTP}"
        )


def _accepts(method: Any, wanted: tuple[str, ...], *, passes_on: bool = False) -> bool:
    """`method` exists, takes each of `wanted` by name and requires nothing else; with
    `passes_on`, it also takes **kwargs (which the subclass forwards)."""
    if not callable(method):
        return False
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    if any(name not in parameters for name in wanted):
        return False
    optional = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if any(
        p.default is inspect.Parameter.empty and p.kind not in optional
        for name, p in parameters.items()
        if name != "self" and name not in wanted
    ):
        return False
    return not passes_on or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


async def _never_called(request: BaseRequest) -> web.StreamResponse:
    raise AssertionError("the probe server in missing_aiohttp_hooks never serves")


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol plus the header timer, the write-stall timer and JSON
    error answers."""

    __slots__ = (
        "_body",
        "_body_deadline",
        "_body_since",
        "_body_timer",
        "_header_timeout",
        "_header_timer",
        "_requests_at_arm",
        "_stall_timer",
        "_write_stall_timeout",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        header_timeout: float,
        write_stall_timeout: float,
        body_deadline: float = BODY_DEADLINE,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._write_stall_timeout = write_stall_timeout
        self._body_deadline = body_deadline
        self._body: Any = None  # the payload of the request whose body is arriving
        self._body_since = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._requests_at_arm = 0
        self._stall_timer: asyncio.TimerHandle | None = None

    # --- the header timer ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()
        manager = self._manager
        if isinstance(manager, GuardedServer) and not manager.admit(self):
            self.force_close()

    def data_received(self, data: bytes) -> None:
        # Bytes that arrive while the connection waits for its next request start that
        # request's header window; body bytes arrive while a request is in progress (no waiter).
        if self._header_timer is None and data and self._waiting_for_request():
            self._arm_header_timer()
        requests_before = self._request_count
        super().data_received(data)
        # `_request_count` counts messages whose headers the parser has completed.
        if self._request_count != requests_before:
            self._cancel_header_timer()
            if self._messages:
                self._watch_body(self._messages[-1][1])

    # --- the body deadline ---------------------------------------------------------------------
    def _watch_body(self, payload: Any) -> None:
        """Time the body of the request whose headers just completed (the latest one: on a
        pipelined connection, those before it had theirs)."""
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._body_deadline <= 0 or payload.is_eof():
            self._body = None
            return
        self._body = payload
        self._body_since = self._loop.time()
        self._body_timer = self._loop.call_later(self._body_deadline, self._body_late)

    @property
    def receiving_body_for(self) -> float:
        """Seconds this connection has been receiving a request body (0 when it is not)."""
        body = self._body
        if body is None or body.is_eof():
            return 0.0
        return self._loop.time() - self._body_since

    def _body_late(self) -> None:
        self._body_timer = None
        if self._body is not None and not self._body.is_eof() and self.transport is not None:
            log.debug(
                "closing a connection from %s: its request body did not arrive within %gs",
                self.peername,
                self._body_deadline,
            )
            self.force_close()

    @property
    def awaiting_headers(self) -> bool:
        """Not in a request: headers not complete yet, or idle between requests."""
        return self._header_timer is not None or self._waiting_for_request()

    def _waiting_for_request(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm_header_timer(self) -> None:
        if self._header_timeout > 0 and self.transport is not None:
            self._requests_at_arm = self._request_count
            self._header_timer = self._loop.call_later(self._header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        # aiohttp also completes requests outside data_received (since 3.14, those pipelined
        # behind a declined upgrade, parsed as the upgrade's answer finishes): headers that
        # completed there count as much as those seen above.
        if self._request_count != self._requests_at_arm:
            return
        if self.transport is not None:
            log.debug(
                "closing a connection from %s: no complete request headers within %gs",
                self.peername,
                self._header_timeout,
            )
            self.force_close()

    # --- the write-stall timer -----------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None and self._write_stall_timeout > 0:
            self._stall_timer = self._loop.call_later(
                self._write_stall_timeout, self._write_stalled
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _write_stalled(self) -> None:
        self._stall_timer = None
        transport = self.transport
        if transport is not None:
            log.debug(
                "aborting a connection from %s: it has not read our answer for %gs",
                self.peername,
                self._write_stall_timeout,
            )
            transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._body = None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().connection_lost(exc)

    # --- aiohttp's own error answers -----------------------------------------------------------
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The JSON envelope for the errors aiohttp answers itself: 400 for a request it
        cannot parse, 500 for an exception that escaped a handler (a bug: logged with its
        traceback), 504 for a handler's TimeoutError."""
        if status >= 500:
            log.error("error handling %s %s", request.method, request.path, exc_info=exc)
            text = "internal error" if status == 500 else "the request timed out"
        else:
            # %r: the parser's message quotes the client's bytes, newlines included.
            log.debug("malformed request from %s: %r", request.remote, message or exc)
            # One line: aiohttp's message points at the bad byte with a caret on a second line.
            detail = " ".join(str(message or exc or "bad request").split())
            text = f"malformed HTTP request: {detail}"
            if len(text) > _MAX_ERROR_MESSAGE:
                text = text[: _MAX_ERROR_MESSAGE - 3] + "..."
        # Part of an answer already went out: there is no way to send another one.
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started; cannot send the error answer")
        response = error_response(status, error_code(status), text)
        response.force_close()
        return response


class GuardedServer(web.Server):
    """aiohttp's low-level server, building `GuardedRequestHandler` connections and keeping
    at most `max_connections` of them."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        write_stall_timeout: float,
        max_connections: int,
        body_deadline: float = BODY_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._write_stall_timeout = write_stall_timeout
        self._body_deadline = body_deadline
        self.max_connections = max_connections
        self._clock = clock
        self._next_cap_log_at = -float("inf")
        self.shed = 0  # connections closed to stay under the cap

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self,
            loop=self._loop,
            header_timeout=self._header_timeout,
            write_stall_timeout=self._write_stall_timeout,
            body_deadline=self._body_deadline,
            **self._kwargs,
        )

    def admit(self, newcomer: GuardedRequestHandler) -> bool:
        """Called as each connection is made; False when the newcomer must close."""
        if len(self._connections) <= self.max_connections:
            return True
        self.shed += 1
        # Oldest first (the dict keeps connection order): it has had the longest to send.
        others = [
            handler
            for handler in self._connections
            if handler is not newcomer
            and isinstance(handler, GuardedRequestHandler)
            and handler.transport is not None
        ]
        victim = next((h for h in others if h.awaiting_headers), None) or next(
            (h for h in others if h.receiving_body_for > BODY_EVICTABLE_AFTER), None
        )
        now = self._clock()
        if now >= self._next_cap_log_at:
            self._next_cap_log_at = now + CAP_LOG_INTERVAL
            log.warning(
                "the local API is at its cap of %d connections: closing %s (%d closed so far; "
                "logged at most once per %gs)",
                self.max_connections,
                "the oldest one waiting for its request or its body" if victim else "the new one",
                self.shed,
                CAP_LOG_INTERVAL,
            )
        if victim is None:
            return False
        victim.force_close()
        return True


def connection_cap(limit: int | None = None) -> int:
    """The connection cap for a descriptor limit (RLIMIT_NOFILE's soft limit by default).

    Kept free: a quarter of the limit (at least 32) for everything else the sidecar opens — the
    self-stop's connection first — plus ACCEPT_BURST, because asyncio accepts up to the listen
    backlog's worth of connections in one pass before any of them reaches `admit`. At least
    MIN_CONNECTIONS (with a limit that low, exhaustion is handled by the header timeout and
    the accept-error log instead), at most MAX_CONNECTIONS."""
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY or limit <= 0:
        return MAX_CONNECTIONS
    free = max(32, limit // 4) + ACCEPT_BURST
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, limit - free))


class ApiRunner(web.AppRunner):
    """An AppRunner whose connections follow the rules in this module's docstring, and which
    rate-limits accept-failure logs on its loop while it runs."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        write_stall_timeout: float = WRITE_STALL_TIMEOUT,
        body_deadline: float | None = None,
        max_connections: int | None = None,
        accept_error_interval: float = ACCEPT_ERROR_LOG_INTERVAL,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("lingering_time", LINGERING_TIME)
        super().__init__(
            app, keepalive_timeout=keepalive_timeout, handler_cancellation=True, **kwargs
        )
        self._header_timeout = header_timeout
        self._write_stall_timeout = write_stall_timeout
        self._body_deadline = BODY_DEADLINE if body_deadline is None else body_deadline
        # Fixed at start from the limit then in force (None: see connection_cap).
        self._max_connections = max_connections
        self.accept_errors = AcceptErrorLog(accept_error_interval)

    async def _make_server(self) -> web.Server:
        # AppRunner's own server runs the application's start-up and carries its request
        # handler and factory; rebuild it as a GuardedServer with the same arguments.
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            header_timeout=self._header_timeout,
            write_stall_timeout=self._write_stall_timeout,
            body_deadline=self._body_deadline,
            max_connections=(
                connection_cap() if self._max_connections is None else self._max_connections
            ),
            **plain._kwargs,
        )

    async def listen(self, host: str | None, port: int) -> int:
        """Serve on host:port (port 0 picks one) and return the port bound. Raises OSError as
        `web.TCPSite.start` does. The listening sockets hand out at most the connection cap
        plus one accept burst of connections (sidecar/listener.py): the cap then always has
        the time to close the excess before the descriptors run out."""
        server = self.server
        assert isinstance(server, GuardedServer), "listen() comes after setup()"
        budget = ConnectionBudget(server.max_connections + ACCEPT_BURST)
        listeners = bind_listeners(host, port, budget)
        try:
            for sock in listeners:
                await web.SockSite(self, sock, backlog=ACCEPT_BURST).start()
        except BaseException:
            for sock in listeners:
                sock.close()
            raise
        return int(listeners[0].getsockname()[1])

    async def setup(self) -> None:
        check_aiohttp()  # before the application's start-up runs: nothing to undo
        self.accept_errors.install(asyncio.get_running_loop())
        await super().setup()

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            self.accept_errors.uninstall()


class AcceptErrorLog:
    """A loop exception handler that logs failed `accept()` calls at most once per `interval`
    (with the count of those it did not log) and hands every other context to the handler
    that was installed before it, or to the loop's default one."""

    def __init__(
        self,
        interval: float = ACCEPT_ERROR_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: Any = None
        self._next_log_at = -float("inf")
        self.failures = 0
        self._unlogged = 0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            return
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.get_exception_handler() is self:
            loop.set_exception_handler(self._previous)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        # asyncio's accept loop passes the listening socket; its message text is a fallback
        # (both stdlib details: tests/test_api_hardening.py exhausts descriptors for real).
        if (
            isinstance(exc, OSError)
            and exc.errno in _ACCEPT_ERRNOS
            and (
                "socket" in context or str(context.get("message", "")).startswith("socket.accept()")
            )
        ):
            self._accept_failed(exc)
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def _accept_failed(self, exc: OSError) -> None:
        self.failures += 1
        now = self._clock()
        if now < self._next_log_at:
            self._unlogged += 1
            return
        unlogged, self._unlogged = self._unlogged, 0
        self._next_log_at = now + self.interval
        log.error(
            "the local API cannot accept connections: %s (%s); asyncio retries every second. "
            "Logged at most once per %gs",
            exc.strerror or exc,
            f"{unlogged} more since the last message" if unlogged else "first failure",
            self.interval,
        )
