"""The local HTTP API (SPEC §7): thin handlers that turn requests into lifecycle events.

Error contract: every error is `{"error": {"code", "message"}}` with a 4xx status — malformed
JSON 400 (`NaN` and `Infinity` too: they are not JSON), wrong shape or unknown field 422 (also
JSON nested deeper than 64 levels, and a roster over its cap), body over 64 KiB 413, a body not
sent within 10 s 408, unknown path 404, wrong method 405, missing/bad token 401 (also a
non-ASCII `Authorization` header), a lifecycle change that no longer applies 409, more than 64
event subscribers 429. The envelope, strict JSON and the body limits are api_wire.py's;
aiohttp's own answers to unparsable requests get the same envelope (http_server.py).

The routes are the route table's (sidecar.routes), which the OpenAPI document is generated from
too: `build_app` registers each entry's handler, and for a route with a body reads and validates
it with the entry's request model before the handler sees it.

`LocalApi` gets only what it uses: the lifecycle (its events are the commands), the status view,
the event hub, the request counters and the token. The lifecycle announces its own changes, so
no handler has to tell the timer loop anything.

One wrapper (`_guarded`), applied to every handler when it is registered, owns that contract,
the optional bearer token and the request counter. Not an aiohttp middleware: a middleware
costs every request an extra layer of wrapping (measured at 4-7 µs, ~15% of a heartbeat), and
the JSON 404/405 answers come just as well from a catch-all route and a `*` route per path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import importlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.access_log import AccessLog, error_of
from sidecar.api_wire import (
    BODY_TIMEOUT,
    MAX_BODY_BYTES,
    ApiError,
    error_response,
    json_response,
    read_body,
)
from sidecar.errors import StartupError
from sidecar.events import TooManySubscribers
from sidecar.lifecycle import ReadySource, RosterFull, TransitionRefused, UnknownTicket
from sidecar.redaction import all_forms, redact_json
from sidecar.routes import by_path

# Request bodies are checked by `sidecar.bodies`: the pydantic models of `sidecar.models`
# compiled, so that pydantic is never loaded here. A route's body class is looked up by its
# model's name in the route table on first use; `warm_up` loads them right after the API is
# listening. Handlers name them for typing only.
if TYPE_CHECKING:
    from sidecar.bodies import (
        ConnectBody,
        HoldBody,
        MatchEndBody,
        MatchStartBody,
        PlayerBody,
        PlayersBody,
        ShutdownBody,
    )
    from sidecar.events import EventHub
    from sidecar.lifecycle import Lifecycle
    from sidecar.metrics import RequestCounter
    from sidecar.status import StatusView

log = logging.getLogger("sidecar.api")

# An event stream's kernel send buffer. Linux grows a socket's buffer to megabytes, which would
# let a subscriber that never reads soak up dozens of events before any back-pressure reaches
# the sidecar (and keep one of the 64 places); with 64 KiB it is found out after a few events.
SSE_SEND_BUFFER = 64 * 1024
# Request counters are labelled by method: the other methods aiohttp's parser accepts (WebDAV's
# and others, some thirty) share one label, so that they cannot multiply the counters.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A route with a body (routes.Route.body): its handler gets the validated model too.
BodyHandler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]

_HEARTBEAT_OK = b'{"ok":true}'


class LocalApi:
    """The routes of SPEC §7 over one lifecycle."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        status: StatusView,
        events: EventHub,
        requests: RequestCounter,
        *,
        token: str | None,
        body_timeout: float = BODY_TIMEOUT,
        match_strict: bool = False,
        secrets: Sequence[str] = (),
    ) -> None:
        self.lifecycle = lifecycle
        self.status_view = status
        self.hub = events
        self.requests = requests
        self.token = token
        self.body_timeout = body_timeout
        # SIDECAR_MATCH_STRICT: with match data, players who bring no ticket are refused (403).
        self.match_strict = match_strict and lifecycle.expected is not None
        self.access_log = AccessLog()
        # Texts the game hands us (a shutdown reason, a match result) end up in the stop record,
        # status, events and the result delivery: a secret of ours in them is hidden at the door
        # (SPEC §11), so that every one of those outputs shows the same redacted text.
        self._secret_forms = all_forms(secrets)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Serve on `host:port` (port 0 picks one); returns the port bound. StartupError when it
        cannot be bound (in use, or not an address of this machine)."""
        from sidecar.http_server import ApiRunner

        # Header, keep-alive and write-stall timeouts, JSON answers to malformed requests and
        # rate-limited accept errors: see http_server. Short shutdown timeout: SSE streams are
        # closed explicitly before cleanup.
        runner = ApiRunner(
            self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            bound = await runner.listen(host, port)
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"cannot listen on {host}:{port}: the port is already in use (set "
                    "SIDECAR_PORT to a free port)"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self._runner = runner
        return bound

    async def close(self) -> None:
        """Stop serving. Close the event hub first: its open streams would hold this up."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @staticmethod
    async def warm_up() -> None:
        """Build the request models off the event loop, once `/healthz` answers. Best effort:
        they load on first use anyway, so a failure here (descriptors exhausted at start-up)
        must not count as a failed task and end the sidecar."""
        try:
            await asyncio.to_thread(importlib.import_module, "sidecar.bodies")
        except Exception as exc:
            log.debug("could not load the request models ahead of use: %r", exc)

    def build_app(self) -> web.Application:
        """The app of the route table (sidecar.routes): the document describes the same table."""
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        for path, routes in by_path().items():
            for route in routes:
                method = getattr(self, route.handler)
                handler: Handler = (
                    method
                    if route.body is None
                    else self._with_body(method, route.body, not route.body_required)
                )
                app.router.add_route(
                    route.method, path, self._guarded(path, handler, route.needs_token)
                )
            # Registered right after the path's own methods, so it joins the same resource and
            # only answers the methods above did not.
            allowed = sorted(route.method for route in routes)
            app.router.add_route(
                "*", path, self._guarded(path, self._method_not_allowed(allowed), False)
            )
        app.router.add_route("*", "/{tail:.*}", self._guarded("unmatched", self._not_found, False))
        return app

    def _with_body(self, handler: BodyHandler, model_name: str, optional: bool) -> Handler:
        """Read and validate the body with the route's request model (its compiled form, held
        to the model by tests/test_models_compiled.py), then call the handler with it."""
        timeout = self.body_timeout
        model: type[Any] | None = None

        async def with_body(request: web.Request) -> web.StreamResponse:
            nonlocal model
            if model is None:
                from sidecar import bodies  # on first use, unless warm_up came first

                model = getattr(bodies, model_name)
            return await handler(request, await read_body(request, model, optional, timeout))

        return with_body

    # --- the guard ---------------------------------------------------------------------------
    def _guarded(self, label: str, handler: Handler, needs_token: bool) -> Handler:
        token = self.token if needs_token else None
        counts = self.requests.counts
        access = self.access_log

        async def guarded(request: web.Request) -> web.StreamResponse:
            # The access log reads the clock only when every call is logged (DEBUG): a
            # heartbeat at the default level pays one level check (docs/benchmarks.md).
            started = time.perf_counter() if access.enabled_for_all() else None
            code: str | None = None
            message: str | None = None
            try:
                if token is not None:
                    _authorize(request, token)
                response = await handler(request)
            except ApiError as exc:
                response = error_response(exc.status, exc.code, exc.message)
                code, message = exc.code, exc.message
                if exc.close:
                    response.force_close()
            except TransitionRefused as exc:
                code, message = "conflict", str(exc)
                response = error_response(409, code, message)
            except RosterFull as exc:
                code, message = "roster_full", str(exc)
                response = error_response(422, code, message)
            except UnknownTicket as exc:
                code, message = "unknown_ticket", str(exc)
                response = error_response(422, code, message)
            status = response.status
            method = request.method if request.method in _METHODS else "OTHER"
            counts[(label, method, status)] += 1
            if status >= 400 or started is not None:
                if code is None and status >= 400 and isinstance(response, web.Response):
                    code, message = error_of(response.body)  # a 404/405 built by its handler
                took = time.perf_counter() - started if started is not None else None
                access.record(method, request.path, status, took, code, message)
            return response

        return guarded

    @staticmethod
    def _method_not_allowed(allowed: list[str]) -> Handler:
        async def method_not_allowed(request: web.Request) -> web.StreamResponse:
            response = error_response(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.path} (use {', '.join(allowed)})",
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response

        return method_not_allowed

    @staticmethod
    async def _not_found(request: web.Request) -> web.StreamResponse:
        return error_response(404, "not_found", f"no route {request.path}")

    # --- routes ----------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(body=self.status_view.body(), content_type="application/json")

    async def ready(self, request: web.Request) -> web.Response:
        self.lifecycle.ready(ReadySource.API)
        return self._status_answer()

    async def health(self, request: web.Request) -> web.Response:
        self.lifecycle.heartbeat()
        return web.Response(body=_HEARTBEAT_OK, content_type="application/json")

    async def activity(self, request: web.Request) -> web.Response:
        self.lifecycle.activity()
        return self._status_answer()

    async def connect(self, request: web.Request, body: ConnectBody) -> web.Response:
        lifecycle = self.lifecycle
        if (
            self.match_strict
            and body.ticket_id is None
            and not lifecycle.is_expected(body.player_id)
        ):
            raise _not_in_match(f"player {body.player_id!r} brings none of this match's tickets")
        return json_response({"count": lifecycle.player_connected(body.player_id, body.ticket_id)})

    async def disconnect(self, request: web.Request, body: PlayerBody) -> web.Response:
        return json_response({"count": self.lifecycle.player_disconnected(body.player_id)})

    async def set_players(self, request: web.Request, body: PlayersBody) -> web.Response:
        if self.match_strict:
            if body.player_ids is None:
                raise _not_in_match("a roster by count names no ticket (SIDECAR_MATCH_STRICT)")
            strangers = [i for i in body.player_ids if not self.lifecycle.is_expected(i)]
            if strangers:
                raise _not_in_match(
                    f"{len(strangers)} of these players bring none of this match's tickets "
                    f"(first: {strangers[0]!r})"
                )
        count = self.lifecycle.set_players(ids=body.player_ids, count=body.count)
        return json_response({"count": count, "ids": self.lifecycle.player_ids})

    async def players(self, request: web.Request) -> web.Response:
        return json_response(
            {"count": self.lifecycle.player_count, "ids": self.lifecycle.player_ids}
        )

    async def hold(self, request: web.Request, body: HoldBody) -> web.Response:
        self.lifecycle.hold(body.seconds)
        return self._status_answer()

    async def match(self, request: web.Request) -> web.Response:
        from sidecar.match import match_document
        from sidecar.outcomes import DeliveryOutcome

        info = self.status_view.deployment.match
        # SPEC §12: null in status until a stop is decided; here, with a URL, it is to come.
        delivery = self.status_view.delivery.outcome or DeliveryOutcome.PENDING
        return json_response(match_document(info, self.lifecycle, delivery.value))

    async def ticket(self, request: web.Request) -> web.Response:
        from sidecar.match import ticket_document

        ticket_id = request.match_info["ticket_id"]
        info = self.status_view.deployment.match
        document = ticket_document(info, self.lifecycle, ticket_id)
        if document is None:
            raise ApiError(
                404, f"ticket {ticket_id[:128]!r} is not one of this match's", "unknown_ticket"
            )
        return json_response(document)

    async def match_start(self, request: web.Request, body: MatchStartBody) -> web.Response:
        self.lifecycle.match_started(self._redacted(body.match_id))
        return self._status_answer()

    async def match_end(self, request: web.Request, body: MatchEndBody) -> web.Response:
        self.lifecycle.match_ended(self._redacted(body.result), body.grace_seconds)
        return self._status_answer(202)

    async def shutdown(self, request: web.Request, body: ShutdownBody) -> web.Response:
        self.lifecycle.shutdown_requested(
            self._redacted(body.reason), body.grace_seconds, self._redacted(body.log_storage)
        )
        return self._status_answer(202)

    async def deployment(self, request: web.Request) -> web.Response:
        return json_response(self.status_view.deployment.to_json())

    async def metrics(self, request: web.Request) -> web.Response:
        from sidecar.metrics import CONTENT_TYPE, render

        response = web.Response(body=render(self.status_view.snapshot(), self.requests))
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def openapi(self, request: web.Request) -> web.Response:
        from sidecar.openapi import document_bytes  # pydantic work, paid on the first call

        body = document_bytes(token_required=self.token is not None)
        return web.Response(body=body, content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        hub = self.hub
        try:
            # Registered before the first await, so the subscriber cap holds under a burst of
            # concurrent subscribers. A subscriber that falls 16 events behind is cut off.
            subscription = hub.subscribe(
                first=("state", self.status_view.to_json()),
                on_overflow=transport.abort if transport is not None else None,
            )
        except TooManySubscribers as exc:
            raise ApiError(429, str(exc)) from None
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SSE_SEND_BUFFER)
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            async with contextlib.aclosing(subscription.frames()) as frames:
                async for frame in frames:
                    await response.write(frame)
        except ConnectionError:
            log.debug("an events subscriber went away")
        finally:
            # Also on cancellation: the runner cancels the handler when the client disconnects.
            hub.unsubscribe(subscription)
        return response

    def _redacted(self, value: Any) -> Any:
        """A game-supplied value with our secrets hidden (see __init__)."""
        return redact_json(value, self._secret_forms)

    def _status_answer(self, status: int = 200) -> web.Response:
        """A lifecycle call's answer: the status after it (the lifecycle already announced the
        change, so the body is fresh)."""
        return web.Response(
            body=self.status_view.body(), status=status, content_type="application/json"
        )


def _not_in_match(message: str) -> ApiError:
    return ApiError(403, message + "; nothing changed", "not_in_match")


def _authorize(request: web.Request, token: str) -> None:
    header = request.headers.get("Authorization", "")
    # A header that is not ASCII is refused before comparing (SPEC §11): aiohttp decodes bytes
    # that are not UTF-8 as surrogates, which `.encode()` would raise on (a 500).
    scheme, _, supplied = header.partition(" ")
    if (
        not header.isascii()
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(supplied.strip().encode(), token.encode())
    ):
        raise ApiError(401, "missing or invalid bearer token")
