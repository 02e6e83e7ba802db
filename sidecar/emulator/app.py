"""The emulator's aiohttp application: the middleware chain and the routes.

Every platform call passes, in order:

    record    logs the call and its answer in the request log (not /_emulator/ calls), with
              its tokens redacted unless `show_tokens`
    errors    turns PlatformError / FleetError / aiohttp errors into `{"message"}` bodies,
              and a bug into a logged 500 (the top-level guard of one request)
    auth      management token (`authorization: token <TOKEN>`), or the deployment's own raw
              token for self-stop and context (unknown deployment or access point → 404,
              wrong token → 401); with `api_token`, the control API needs it too (but
              `GET /_emulator/health`, and `POST /_emulator/results`: the result sink takes
              the sidecar's own bearer token)
    limits    with `rate_limits`, the reference's limits (ratelimit.py): 429 + Retry-After
    faults    plays back an injected fault for the call's route: after auth, so a call the
              platform would refuse (a wrong delete token) neither meets nor uses up a fault

The routes are in `routes/` (one module per resource of the reference, and the control API);
the platform rules they call are in the manager (`deployments.py`) and the stores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from sidecar.emulator.auth import management_error, raw_token_matches
from sidecar.emulator.deployments import DeploymentManager
from sidecar.emulator.faults import CURRENT_FAULT, FaultQueue
from sidecar.emulator.fleets import FleetError
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.recorder import AUTHORIZED_KEY, RATE_LIMITED_KEY
from sidecar.emulator.route_io import PlatformError, error_response
from sidecar.emulator.routes import add_platform_routes, control, dashboard, matches, results
from sidecar.emulator.state import STATE_KEY, EmulatorState, deployment_of, state_of
from sidecar.emulator.store import DeploymentStore

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that authenticate with a per-deployment raw token instead of the management token:
# route name -> (path segment that must match, the deployment attribute it must equal, token).
_RAW_TOKEN_ROUTES = {
    "self_stop": ("access_point_id", "access_point_id", "delete_token"),
    "context": ("number", "context_number", "context_token"),
}

# Routes open to any caller: the readiness probe (no secret), and the result sink, which takes
# the sidecar's own `Bearer` token as a studio's backend would (routes/results.py).
_OPEN_ROUTES = {"control_health", "result_sink"}


def create_app(options: EmulatorOptions) -> web.Application:
    """A fresh emulator (its own state and tasks) ready to be served by any aiohttp runner."""
    app = web.Application(
        middlewares=[
            _record_middleware,
            _error_middleware,
            _auth_middleware,
            _limit_middleware,
            _fault_middleware,
        ]
    )
    store = DeploymentStore()
    app[STATE_KEY] = EmulatorState(
        options=options,
        manager=DeploymentManager(options, store),
        faults=FaultQueue(options.faults),
        store=store,
    )
    app.cleanup_ctx.append(_manager_context)
    add_platform_routes(app)
    control.add_routes(app)
    dashboard.add_routes(app)
    matches.add_routes(app)
    results.add_routes(app)
    return app


async def _manager_context(app: web.Application) -> AsyncIterator[None]:
    manager = app[STATE_KEY].manager
    await manager.start()
    yield
    await manager.close()


@web.middleware
async def _record_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(control.PREFIX):
        return await handler(request)
    started = time.monotonic()
    CURRENT_FAULT.set(None)
    response = await handler(request)
    state = state_of(request)
    state.requests.record(
        request, response, started, CURRENT_FAULT.get(), show_tokens=state.options.show_tokens
    )
    return response


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PlatformError as exc:
        return error_response(exc.status, exc.message, exc.extra, exc.headers)
    except FleetError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, exc.reason, headers=headers)
    except Exception:
        # The top-level guard: a bug answers 500 with a logged traceback, never a dead server.
        log.exception("emulator error on %s %s", request.method, request.path)
        return error_response(500, "Internal Server Error")


@web.middleware
async def _limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = state_of(request)
    if state.options.rate_limits:
        route = request.match_info.route.name
        retry_after = state.limits.admit(route)
        if retry_after is not None:
            assert route is not None
            request[RATE_LIMITED_KEY] = True
            raise PlatformError(
                429,
                f"Too Many Requests: rate limit of {state.limits.limit_of(route)} per second",
                headers={"Retry-After": str(retry_after)},
            )
    return await handler(request)


@web.middleware
async def _fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    fault = state_of(request).faults.take(
        request.match_info.route.name, request.match_info.get("request_id")
    )
    if fault is not None:
        CURRENT_FAULT.set(fault)
        if fault.delay_seconds > 0:
            await asyncio.sleep(fault.delay_seconds)
        if fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return error_response(fault.status, "Injected fault", headers=headers)
    return await handler(request)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    name = request.match_info.route.name
    api_token = state_of(request).options.api_token
    header = request.headers.get("authorization")
    # Unnamed routes are aiohttp's 404/405 answers. The control API hands out every
    # deployment's delete token (`/env`) and takes faults: with `api_token` it needs it too,
    # except the readiness probe, which carries no secret; without one it stays open (the
    # emulator then listens on loopback only: options.py). The dashboard's page and files
    # carry no secret and are what a browser navigates to, without headers (dashboard.py).
    if name is None or name in _OPEN_ROUTES or name in dashboard.OPEN_ROUTES:
        return await handler(request)
    if name.startswith("control_"):
        problem = None if api_token is None else management_error(header, api_token)
        if problem is not None:
            raise PlatformError(401, problem)
        return await handler(request)
    request[AUTHORIZED_KEY] = False
    if name in _RAW_TOKEN_ROUTES:
        segment, attribute, token = _RAW_TOKEN_ROUTES[name]
        deployment = deployment_of(request)
        if request.match_info[segment] != str(getattr(deployment, attribute)):
            raise PlatformError(
                404, "Access point not found" if name == "self_stop" else "Context not found"
            )
        if not raw_token_matches(header, getattr(deployment, token)):
            raise PlatformError(401, "Unauthorized")
    else:
        problem = management_error(header, api_token)
        if problem is not None:
            raise PlatformError(401, problem)
    request[AUTHORIZED_KEY] = True
    return await handler(request)


__all__ = ["EmulatorState", "create_app"]
