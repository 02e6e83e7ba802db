"""The local HTTP API (SPEC §7): thin handlers that turn requests into lifecycle events.

Error contract: every error is `{"error": {"code", "message"}}` with a 4xx status — malformed
JSON 400, wrong shape or unknown field 422, body over 64 KiB 413, unknown path 404, wrong method
405, missing/bad token 401, a lifecycle change that no longer applies 409. One middleware owns
that contract, the optional bearer token and the request counter, so handlers stay short.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from sidecar.lifecycle import TransitionRefused
from sidecar.models import (
    HoldBody,
    MatchEndBody,
    MatchStartBody,
    PlayerBody,
    PlayersBody,
    ShutdownBody,
)

if TYPE_CHECKING:
    from sidecar.agent import Agent

log = logging.getLogger("sidecar.api")

MAX_BODY_BYTES = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyT = TypeVar("BodyT", bound=BaseModel)

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


async def _body(request: web.Request, model: type[BodyT], optional: bool = False) -> BodyT:
    raw = await request.read()  # raises 413 past client_max_size
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
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, _pydantic_message(exc)) from None


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


class LocalApi:
    """Routes bound to one agent."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.lifecycle = agent.lifecycle

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        post: dict[str, Handler] = {
            "/v1/ready": self.ready,
            "/v1/health": self.health,
            "/v1/activity": self.activity,
            "/v1/players/connect": self.connect,
            "/v1/players/disconnect": self.disconnect,
            "/v1/hold": self.hold,
            "/v1/match/start": self.match_start,
            "/v1/match/end": self.match_end,
            "/v1/shutdown": self.shutdown,
        }
        get: dict[str, Handler] = {
            "/healthz": self.healthz,
            "/v1/status": self.status,
            "/v1/players": self.players,
            "/v1/events": self.events,
            "/v1/deployment": self.deployment,
            "/metrics": self.metrics,
        }
        for path, handler in post.items():
            app.router.add_post(path, handler)
        for path, handler in get.items():
            app.router.add_get(path, handler, allow_head=False)
        app.router.add_put("/v1/players", self.set_players)
        return app

    # --- middleware ------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        agent = self.agent
        try:
            token = agent.api_token
            if token is not None and request.path.startswith("/v1/"):
                self._authorize(request, token)
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message)
        except TransitionRefused as exc:
            response = error_response(409, "conflict", str(exc))
        except web.HTTPException as exc:  # routing (404/405) and body size (413)
            if exc.status == 413:
                message = f"the body is larger than {MAX_BODY_BYTES // 1024} KiB"
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
            elif exc.status == 404:
                message = f"no route {request.path}"
            else:
                message = exc.reason
            response = error_response(exc.status, _ERROR_CODES.get(exc.status, "error"), message)
        agent.requests.add(_route_label(request), request.method, response.status)
        return response

    @staticmethod
    def _authorize(request: web.Request, token: str) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            supplied.strip().encode(), token.encode()
        ):
            raise ApiError(401, "missing or invalid bearer token")

    # --- routes ----------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        return _json(self.agent.status())

    async def ready(self, request: web.Request) -> web.Response:
        self.lifecycle.ready("api")
        return self._changed()

    async def health(self, request: web.Request) -> web.Response:
        self.lifecycle.heartbeat()
        self.agent.wake()
        return _json({"ok": True})

    async def activity(self, request: web.Request) -> web.Response:
        self.lifecycle.activity()
        return self._changed()

    async def connect(self, request: web.Request) -> web.Response:
        body = await _body(request, PlayerBody)
        count = self.lifecycle.player_connected(body.player_id)
        self.agent.wake()
        return _json({"count": count})

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await _body(request, PlayerBody)
        count = self.lifecycle.player_disconnected(body.player_id)
        self.agent.wake()
        return _json({"count": count})

    async def set_players(self, request: web.Request) -> web.Response:
        body = await _body(request, PlayersBody)
        count = self.lifecycle.set_players(ids=body.player_ids, count=body.count)
        self.agent.wake()
        return _json({"count": count, "ids": self.lifecycle.player_ids})

    async def players(self, request: web.Request) -> web.Response:
        return _json({"count": self.lifecycle.player_count, "ids": self.lifecycle.player_ids})

    async def hold(self, request: web.Request) -> web.Response:
        body = await _body(request, HoldBody)
        self.lifecycle.hold(body.seconds)
        return self._changed()

    async def match_start(self, request: web.Request) -> web.Response:
        body = await _body(request, MatchStartBody, optional=True)
        self.lifecycle.match_started(body.match_id)
        return self._changed()

    async def match_end(self, request: web.Request) -> web.Response:
        body = await _body(request, MatchEndBody, optional=True)
        self.lifecycle.match_ended(body.result, body.grace_seconds)
        return self._changed(202)

    async def shutdown(self, request: web.Request) -> web.Response:
        body = await _body(request, ShutdownBody, optional=True)
        self.lifecycle.shutdown_requested(body.reason, body.grace_seconds, body.log_storage)
        return self._changed(202)

    async def deployment(self, request: web.Request) -> web.Response:
        return _json(self.agent.deployment.to_json())

    async def metrics(self, request: web.Request) -> web.Response:
        from sidecar.metrics import CONTENT_TYPE

        response = web.Response(body=self.agent.render_metrics())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

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
        return _json(self.agent.status(), status)
