"""The context API a container reads through `ARBITRIUM_CONTEXT_URL` (raw context token, checked
by the auth middleware).

    GET /v1/context/{request_id}/{number}
"""

from __future__ import annotations

from aiohttp import web

from sidecar.emulator.route_io import PlatformError
from sidecar.emulator.state import deployment_of
from sidecar.emulator.views import context_view


async def context(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    if deployment.terminated:
        raise PlatformError(404, f"Deployment {deployment.request_id} not found")
    return web.json_response(context_view(deployment))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/context/{request_id}/{number}", context, name="context")
