"""The location catalogue.

GET /v1/locations?type=&tags=
"""

from __future__ import annotations

from aiohttp import web

from sidecar.emulator.locations import locations_view


async def locations(request: web.Request) -> web.Response:
    with_tags = request.query.get("tags", "").lower() == "true"
    return web.json_response(locations_view(request.query.get("type") or None, with_tags))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/locations", locations, name="locations")
