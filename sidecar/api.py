"""The local HTTP API (SPEC §7): thin handlers that turn requests into lifecycle events.

Error contract: every error is `{"error": {"code", "message"}}` with a 4xx status — malformed
JSON 400, wrong shape or unknown field 422, body over 64 KiB 413, unknown path 404, wrong method
405, missing/bad token 401, a lifecycle change that no longer applies 409.

One wrapper (`_guarded`), applied to every handler when it is registered, owns that contract,
the optional bearer token and the request counter. Not an aiohttp middleware: a middleware
costs every request an extra layer of wrapping (measured at 4-7 µs, ~15% of a heartbeat), and
the JSON 404/405 answers come just as well from a catch-all route and a `*` route per path.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from sidecar.lifecycle import TransitionRefused

# pydantic is only imported with the request models, after start-up (see `_models`).
if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from sidecar import models
    from sidecar.agent import Agent

log = logging.getLogger("sidecar.api")

MAX_BODY_BYTES = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyT = TypeVar("BodyT", bound="BaseModel")

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _ERROR_CODES.get(status, "error")
        self.message = message


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


async def _body(request: web.Request, model: type[BodyT], optional: bool = False) -> BodyT:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES // 1024} KiB") from None
    if not raw.strip():
        if optional:
            return model()
        raise ApiError(400, "a JSON body is required")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from None
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

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.lifecycle = agent.lifecycle

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
            except TransitionRefused as exc:
                response = error_response(409, "conflict", str(exc))
            counts[(label, request.method, response.status)] += 1
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
        body = await _body(request, _models().PlayerBody)
        count = self.lifecycle.player_connected(body.player_id)
        self.agent.wake()
        return _json({"count": count})

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await _body(request, _models().PlayerBody)
        count = self.lifecycle.player_disconnected(body.player_id)
        self.agent.wake()
        return _json({"count": count})

    async def set_players(self, request: web.Request) -> web.Response:
        body: models.PlayersBody = await _body(request, _models().PlayersBody)
        count = self.lifecycle.set_players(ids=body.player_ids, count=body.count)
        self.agent.wake()
        return _json({"count": count, "ids": self.lifecycle.player_ids})

    async def players(self, request: web.Request) -> web.Response:
        return _json({"count": self.lifecycle.player_count, "ids": self.lifecycle.player_ids})

    async def hold(self, request: web.Request) -> web.Response:
        body = await _body(request, _models().HoldBody)
        self.lifecycle.hold(body.seconds)
        return self._changed()

    async def match_start(self, request: web.Request) -> web.Response:
        body = await _body(request, _models().MatchStartBody, optional=True)
        self.lifecycle.match_started(body.match_id)
        return self._changed()

    async def match_end(self, request: web.Request) -> web.Response:
        body: models.MatchEndBody = await _body(request, _models().MatchEndBody, optional=True)
        self.lifecycle.match_ended(body.result, body.grace_seconds)
        return self._changed(202)

    async def shutdown(self, request: web.Request) -> web.Response:
        body: models.ShutdownBody = await _body(request, _models().ShutdownBody, optional=True)
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
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        stream = self.agent.events.subscribe(first=("state", self.agent.status()))
        try:
            async for frame in stream:
                await response.write(frame)
        except (ConnectionResetError, ConnectionError):
            log.debug("an events subscriber went away")
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return response

    def _changed(self, status: int = 200) -> web.Response:
        self.agent.wake()
        return web.Response(
            body=self.agent.status_body(), status=status, content_type="application/json"
        )


def _authorize(request: web.Request, token: str) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        supplied.strip().encode(), token.encode()
    ):
        raise ApiError(401, "missing or invalid bearer token")
