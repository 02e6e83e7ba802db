"""Fleets, their policies and their application-version links, as stored resources (the rules
live in `fleets.FleetStore`).

    POST /v1/fleet; GET /v1/fleets; GET|PATCH|DELETE /v1/fleet/{fleet}
    POST|GET /v1/fleet/{fleet}/policies (?page=&limit=&fields=)
    GET|PATCH|DELETE /v1/fleet/{fleet}/policies/{policy}
    PUT|DELETE /v1/fleet/{fleet}/app/{app}/version/{version}
"""

from __future__ import annotations

from aiohttp import web

from sidecar.emulator.models import FleetCreate, FleetPatch, PolicyCreate, PolicyPatch
from sidecar.emulator.route_io import PlatformError, page_of, parse_body
from sidecar.emulator.state import state_of


async def create_fleet(request: web.Request) -> web.Response:
    body = await parse_body(request, FleetCreate)
    return web.json_response(state_of(request).fleets.create(body).view())


async def get_fleet(request: web.Request) -> web.Response:
    return web.json_response(state_of(request).fleets.get(request.match_info["fleet"]).view())


async def update_fleet(request: web.Request) -> web.Response:
    body = await parse_body(request, FleetPatch)
    fleet = state_of(request).fleets.update(request.match_info["fleet"], body)
    return web.json_response(fleet.view())


async def delete_fleet(request: web.Request) -> web.Response:
    name = request.match_info["fleet"]
    state_of(request).fleets.delete(name)
    return web.json_response({"message": f"Fleet {name} deleted"})


async def list_fleets(request: web.Request) -> web.Response:
    items, pagination = page_of(request, state_of(request).fleets.all())
    return web.json_response(
        {"fleets": [fleet.view() for fleet in items], "pagination": pagination}
    )


async def create_policy(request: web.Request) -> web.Response:
    fleets = state_of(request).fleets
    fleets.get(request.match_info["fleet"])  # unknown fleet: 404 before body errors
    body = await parse_body(request, PolicyCreate)
    return web.json_response(fleets.add_policy(request.match_info["fleet"], body).view())


_POLICY_FIELDS = (
    "name",
    "enabled",
    "type",
    "minimum",
    "maximum",
    "threshold",
    "data",
    "create_time",
    "last_updated",
)


def _fields_mask(request: web.Request) -> tuple[str, ...] | None:
    """`?fields=name,enabled`: the policy fields to answer (None: all); 400 on an unknown."""
    text = request.query.get("fields")
    if not text:
        return None
    fields = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in fields if name not in _POLICY_FIELDS]
    if unknown or not fields:
        raise PlatformError(400, f"fields: unknown policy fields {unknown or text!r}")
    return fields


async def list_policies(request: web.Request) -> web.Response:
    fleet = state_of(request).fleets.get(request.match_info["fleet"])
    mask = _fields_mask(request)
    items, pagination = page_of(request, list(fleet.policies.values()))
    views = [policy.view() for policy in items]
    if mask is not None:
        views = [{name: view[name] for name in mask} for view in views]
    return web.json_response({"policies": views, "pagination": pagination})


async def get_policy(request: web.Request) -> web.Response:
    policy = state_of(request).fleets.get_policy(
        request.match_info["fleet"], request.match_info["policy"]
    )
    return web.json_response(policy.view())


async def update_policy(request: web.Request) -> web.Response:
    fleets = state_of(request).fleets
    fleets.get_policy(request.match_info["fleet"], request.match_info["policy"])
    body = await parse_body(request, PolicyPatch)
    policy = fleets.update_policy(request.match_info["fleet"], request.match_info["policy"], body)
    return web.json_response(policy.view())


async def delete_policy(request: web.Request) -> web.Response:
    fleet, policy = request.match_info["fleet"], request.match_info["policy"]
    state_of(request).fleets.delete_policy(fleet, policy)
    return web.json_response({"message": f"Policy {policy} deleted"})


async def link_version(request: web.Request) -> web.Response:
    info = request.match_info
    link = state_of(request).fleets.link(info["fleet"], info["app"], info["version"])
    return web.json_response(link)


async def unlink_version(request: web.Request) -> web.Response:
    info = request.match_info
    state_of(request).fleets.unlink(info["fleet"], info["app"], info["version"])
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/fleet", create_fleet, name="create_fleet")
    router.add_get("/v1/fleets", list_fleets, name="list_fleets")
    router.add_get("/v1/fleet/{fleet}", get_fleet, name="get_fleet")
    router.add_patch("/v1/fleet/{fleet}", update_fleet, name="update_fleet")
    router.add_delete("/v1/fleet/{fleet}", delete_fleet, name="delete_fleet")
    policies = "/v1/fleet/{fleet}/policies"
    router.add_post(policies, create_policy, name="create_policy")
    router.add_get(policies, list_policies, name="list_policies")
    router.add_get(policies + "/{policy}", get_policy, name="get_policy")
    router.add_patch(policies + "/{policy}", update_policy, name="update_policy")
    router.add_delete(policies + "/{policy}", delete_policy, name="delete_policy")
    link = "/v1/fleet/{fleet}/app/{app}/version/{version}"
    router.add_put(link, link_version, name="link_version")
    router.add_delete(link, unlink_version, name="unlink_version")
