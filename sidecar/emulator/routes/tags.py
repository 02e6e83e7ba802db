"""Deployment tags (names unique per deployment; the rules live on `store.Deployment`).

GET|POST            /v1/deployments/{request_id}/tags
GET|PATCH|DELETE    /v1/deployments/{request_id}/tags/{tag_name}
"""

from __future__ import annotations

from aiohttp import web

from sidecar.emulator.models import TagBody
from sidecar.emulator.route_io import parse_body
from sidecar.emulator.state import deployment_of
from sidecar.emulator.views import tag_view


async def list_tags(request: web.Request) -> web.Response:
    tags = [tag_view(tag) for tag in deployment_of(request).tags.values()]
    return web.json_response({"tags": tags, "count": len(tags), "pagination": {}})


async def get_tag(request: web.Request) -> web.Response:
    tag = deployment_of(request).tag(request.match_info["tag_name"])
    return web.json_response(tag_view(tag))


async def create_tag(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    body = await parse_body(request, TagBody)
    return web.json_response(tag_view(deployment.add_tag(body.name)))


async def update_tag(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    deployment.tag(request.match_info["tag_name"])  # unknown tag: 404 before body errors
    body = await parse_body(request, TagBody)
    return web.json_response(
        tag_view(deployment.rename_tag(request.match_info["tag_name"], body.name))
    )


async def delete_tag(request: web.Request) -> web.Response:
    deployment_of(request).remove_tag(request.match_info["tag_name"])
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    tags = "/v1/deployments/{request_id}/tags"
    router.add_get(tags, list_tags, name="list_tags")
    router.add_post(tags, create_tag, name="create_tag")
    router.add_get(tags + "/{tag_name}", get_tag, name="get_tag")
    router.add_patch(tags + "/{tag_name}", update_tag, name="update_tag")
    router.add_delete(tags + "/{tag_name}", delete_tag, name="delete_tag")
