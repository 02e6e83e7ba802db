"""The location catalogue.

GET /v1/locations?type=&tags=
"""

from __future__ import annotations

from aiohttp import web

from sidecar.emulator.errors import PlatformError
from sidecar.emulator.locations import locations_view
from sidecar.emulator.state import state_of


async def locations(request: web.Request) -> web.Response:
    with_tags = request.query.get("tags", "").lower() == "true"
    app, version = request.query.get("app"), request.query.get("version")
    if bool(app) != bool(version):
        raise PlatformError(400, "app and version go together: give both or neither")
    leave_out = state_of(request).manager.full_cities() if app else None
    return web.json_response(
        locations_view(request.query.get("type") or None, with_tags, leave_out)
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/locations", locations, name="locations")
