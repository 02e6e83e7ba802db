"""The local HTTP API (SPEC §7): thin handlers that turn requests into lifecycle events.

Error contract: every error is `{"error": {"code", "message"}}` with a 4xx status — malformed
JSON 400 (`NaN` and `Infinity` too: they are not JSON), wrong shape or unknown field 422 (also
JSON nested deeper than 64 levels, and a roster over its cap), body over 64 KiB 413, a body not
sent within 10 s 408, unknown path 404, wrong method 405, missing/bad token 401 (also a
non-ASCII `Authorization` header), a lifecycle change that no longer applies 409, more than 64
event subscribers 429. aiohttp's own answers to unparsable requests get the same envelope
(http_server.py).

One wrapper (`_guarded`), applied to every handler when it is registered, owns that contract,
the optional bearer token and the request counter. Not an aiohttp middleware: a middleware
costs every request an extra layer of wrapping (measured at 4-7 µs, ~15% of a heartbeat), and
the JSON 404/405 answers come just as well from a catch-all route and a `*` route per path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from sidecar.errors import HttpError
from sidecar.events import TooManySubscribers
from sidecar.lifecycle import RosterFull, TransitionRefused

# pydantic is only imported with the request models, after start-up (see `_models`).
if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from sidecar import models
    from sidecar.agent import Agent

log = logging.getLogger("sidecar.api")

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64
# An event stream's kernel send buffer. Linux grows a socket's buffer to megabytes, which would
# let a subscriber that never reads soak up dozens of events before any back-pressure reaches
# the sidecar (and keep one of the 64 places); with 64 KiB it is found out after a few events.
SSE_SEND_BUFFER = 64 * 1024
BODY_TIMEOUT = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyT = TypeVar("BodyT", bound="BaseModel")

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
    429: "too_many_subscribers",
    500: "internal_error",
    504: "timeout",
}
# Request counters are labelled by method: the other methods aiohttp's parser accepts (WebDAV's
# and others, some thirty) share one label, so that they cannot multiply the counters.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def error_code(status: int) -> str:
    return _ERROR_CODES.get(status, "error")


class ApiError(HttpError):
    """An error answer of the local API, rendered as SPEC §7's envelope."""

    def __init__(
        self, status: int, message: str, code: str | None = None, *, close: bool = False
    ) -> None:
        super().__init__(status, message)
        self.code = code or error_code(status)
        self.close = close  # end the connection after the answer


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, code: str, message: str) -> web.Response:
    return _json({"error": {"code": code, "message": message}}, status)


def _pydantic_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ())) or "body"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _models() -> Any:
    """The request models, imported on first use: building the pydantic models costs ~70 ms,
    which start-up (`/healthz` answering) should not wait for. The agent warms them up in a
    thread right after the API is listening."""
    from sidecar import models

    return models


class _NotJson(ValueError):
    """A JSON extension Python's parser accepts and JSON does not."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON (send null or a string instead)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as infinity
        raise _NotJson(f"{text[:40]} does not fit a finite number")
    return value


# Strings (skipped whole, possessive: linear time on any input) and brackets.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit`, found by one
    iterative pass over the text (never recursion), before any parser recurses into it."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case: too few brackets to be that deep
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        first = match.group()[0]
        if first in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif first in b"]}":
            depth -= 1
    return False


# Built once: json.loads with keyword arguments builds a decoder per call (+1.4 us a body).
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: `ApiError` 400 for malformed text, `NaN`, `Infinity` or an overflowing
    number; 422 for nesting deeper than MAX_JSON_DEPTH."""
    if json_depth_exceeds(raw):
        raise ApiError(422, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        # As json.loads does for bytes: UTF-8, -16 or -32 by the first bytes.
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except ValueError as exc:  # also _NotJson, UnicodeDecodeError, an int over 4300 digits
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:  # unreachable after the depth check; kept so it can never be a 500
        raise ApiError(422, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None


async def read_body(
    request: web.Request,
    model: type[BodyT],
    optional: bool = False,
    timeout_s: float = BODY_TIMEOUT,
) -> BodyT:
    try:
        # A client that sent its headers but trickles (or never sends) the body would hold
        # the connection and this handler for ever.
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES // 1024} KiB") from None
    except TimeoutError:
        # Closed after the answer: aiohttp would otherwise wait up to 10 s more for the body.
        raise ApiError(408, f"the body did not arrive within {timeout_s:g}s", close=True) from None
    if not raw.strip():
        if optional:
            return model()
        raise ApiError(400, "a JSON body is required")
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object")
    from pydantic import ValidationError  # already loaded with the models: a dict lookup

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, _pydantic_message(exc)) from None


_HEARTBEAT_OK = b'{"ok":true}'


class LocalApi:
    """Routes bound to one agent."""

    def __init__(self, agent: Agent, *, body_timeout: float = BODY_TIMEOUT) -> None:
        self.agent = agent
        self.lifecycle = agent.lifecycle
        self.body_timeout = body_timeout

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        routes: dict[str, dict[str, Handler]] = {
            "/healthz": {"GET": self.healthz},
            "/metrics": {"GET": self.metrics},
            "/openapi.json": {"GET": self.openapi},
            "/v1/status": {"GET": self.status},
            "/v1/ready": {"POST": self.ready},
            "/v1/health": {"POST": self.health},
            "/v1/activity": {"POST": self.activity},
            "/v1/players": {"GET": self.players, "PUT": self.set_players},
            "/v1/players/connect": {"POST": self.connect},
            "/v1/players/disconnect": {"POST": self.disconnect},
            "/v1/hold": {"POST": self.hold},
            "/v1/match/start": {"POST": self.match_start},
            "/v1/match/end": {"POST": self.match_end},
            "/v1/shutdown": {"POST": self.shutdown},
            "/v1/events": {"GET": self.events},
            "/v1/deployment": {"GET": self.deployment},
        }
        for path, methods in routes.items():
            needs_token = path.startswith("/v1/")
            for method, handler in methods.items():
                app.router.add_route(method, path, self._guarded(path, handler, needs_token))
            # Registered right after the path's own methods, so it joins the same resource and
            # only answers the methods above did not.
            app.router.add_route(
                "*", path, self._guarded(path, self._method_not_allowed(sorted(methods)), False)
            )
        app.router.add_route("*", "/{tail:.*}", self._guarded("unmatched", self._not_found, False))
        return app

    # --- the guard ---------------------------------------------------------------------------
    def _guarded(self, label: str, handler: Handler, needs_token: bool) -> Handler:
        token = self.agent.api_token if needs_token else None
        counts = self.agent.requests.counts

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                if token is not None:
                    _authorize(request, token)
                response = await handler(request)
            except ApiError as exc:
                response = error_response(exc.status, exc.code, exc.message)
                if exc.close:
                    response.force_close()
            except TransitionRefused as exc:
                response = error_response(409, "conflict", str(exc))
            except RosterFull as exc:
                response = error_response(422, "roster_full", str(exc))
            method = request.method if request.method in _METHODS else "OTHER"
            counts[(label, method, response.status)] += 1
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

    async def _body(
        self, request: web.Request, model: type[BodyT], optional: bool = False
    ) -> BodyT:
        return await read_body(request, model, optional, self.body_timeout)

    # --- routes ----------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(body=self.agent.status_body(), content_type="application/json")

    async def ready(self, request: web.Request) -> web.Response:
        self.lifecycle.ready("api")
        return self._changed()

    async def health(self, request: web.Request) -> web.Response:
        armed = self.lifecycle.last_heartbeat is not None
        self.lifecycle.heartbeat()
        if armed:
            # Only moves the health deadline later: the timer loop finds the new one when it
            # wakes at the old, so games heartbeating many times a second cost no wake-ups.
            self.agent.touch()
        else:
            self.agent.wake()  # arms a timer the loop does not know yet
        return web.Response(body=_HEARTBEAT_OK, content_type="application/json")

    async def activity(self, request: web.Request) -> web.Response:
        self.lifecycle.activity()
        return self._changed()

    async def connect(self, request: web.Request) -> web.Response:
        body = await self._body(request, _models().PlayerBody)
        count = self.lifecycle.player_connected(body.player_id)
        self.agent.wake()
        return _json({"count": count})

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await self._body(request, _models().PlayerBody)
        count = self.lifecycle.player_disconnected(body.player_id)
        self.agent.wake()
        return _json({"count": count})

    async def set_players(self, request: web.Request) -> web.Response:
        body: models.PlayersBody = await self._body(request, _models().PlayersBody)
        count = self.lifecycle.set_players(ids=body.player_ids, count=body.count)
        self.agent.wake()
        return _json({"count": count, "ids": self.lifecycle.player_ids})

    async def players(self, request: web.Request) -> web.Response:
        return _json({"count": self.lifecycle.player_count, "ids": self.lifecycle.player_ids})

    async def hold(self, request: web.Request) -> web.Response:
        body = await self._body(request, _models().HoldBody)
        self.lifecycle.hold(body.seconds)
        return self._changed()

    async def match_start(self, request: web.Request) -> web.Response:
        body = await self._body(request, _models().MatchStartBody, optional=True)
        self.lifecycle.match_started(body.match_id)
        return self._changed()

    async def match_end(self, request: web.Request) -> web.Response:
        body: models.MatchEndBody = await self._body(request, _models().MatchEndBody, optional=True)
        self.lifecycle.match_ended(body.result, body.grace_seconds)
        return self._changed(202)

    async def shutdown(self, request: web.Request) -> web.Response:
        body: models.ShutdownBody = await self._body(request, _models().ShutdownBody, optional=True)
        self.lifecycle.shutdown_requested(body.reason, body.grace_seconds, body.log_storage)
        return self._changed(202)

    async def deployment(self, request: web.Request) -> web.Response:
        return _json(self.agent.deployment.to_json())

    async def metrics(self, request: web.Request) -> web.Response:
        from sidecar.metrics import CONTENT_TYPE

        response = web.Response(body=self.agent.render_metrics())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def openapi(self, request: web.Request) -> web.Response:
        from sidecar.openapi import document_bytes  # pydantic work, paid on the first call

        body = document_bytes(token_required=self.agent.api_token is not None)
        return web.Response(body=body, content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        hub = self.agent.events
        try:
            # Registered before the first await, so the subscriber cap holds under a burst of
            # concurrent subscribers. A subscriber that falls 16 events behind is cut off.
            subscription = hub.subscribe(
                first=("state", self.agent.status()),
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

    def _changed(self, status: int = 200) -> web.Response:
        self.agent.wake()
        return web.Response(
            body=self.agent.status_body(), status=status, content_type="application/json"
        )


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
