"""The emulator's aiohttp application: the platform routes of the reference, and the middleware
that records requests, injects faults, turns errors into `{"message"}` bodies and checks auth.

Routes (paths, bodies and status codes of reference/edgegap-dedicated-servers-api.txt):

    POST   /deployments                          v2 deploy → 202 {"request_id"}
    POST   /v1/deploy                            legacy deploy → 200 (legacy response fields)
    GET    /v1/status/{request_id}               status
    DELETE /v1/stop/{request_id}                 200 READY/ERROR, 202 before READY or while
                                                 terminating, 410 once terminated
    DELETE /v1/self/stop/{request_id}/{ap_id}    raw delete token; 200/202, 404 once terminated
    POST   /v1/deployments/bulk-stop             202 {"processable": [...]}
    GET    /v1/deployments?page=&limit=          active deployments, paginated
    GET    /v1/locations
    GET    /v1/deployment/{request_id}/container-logs
    GET    /v1/metrics/deployment/{request_id}?start_time=&end_time=&steps=
    GET|POST /v1/deployments/{request_id}/tags; GET|PATCH|DELETE .../tags/{tag_name}
    POST /v1/fleet; GET|PATCH|DELETE /v1/fleet/{name}; GET /v1/fleets
    POST|GET /v1/fleet/{name}/policies; GET|PATCH|DELETE /v1/fleet/{name}/policies/{policy}
    PUT|DELETE /v1/fleet/{name}/app/{app}/version/{version}
    GET    /v1/context/{request_id}/{number}     raw context token (ARBITRIUM_CONTEXT_URL)

The control API under `/_emulator/` is in `control.py`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from sidecar.emulator import control
from sidecar.emulator.auth import management_error, raw_token_matches
from sidecar.emulator.deployments import DeploymentManager, StopOutcome
from sidecar.emulator.environment import (
    GAME_PORT_NAME,
    build_env,
    external_port,
    pick_free_port,
)
from sidecar.emulator.faults import CURRENT_FAULT, FaultQueue
from sidecar.emulator.fleets import FleetError
from sidecar.emulator.locations import deployment_location, locations_view
from sidecar.emulator.metrics import metrics_view, select_samples, zero_sample
from sidecar.emulator.models import (
    BulkStop,
    DeployV1,
    DeployV2,
    EnvVar,
    FleetCreate,
    FleetPatch,
    PolicyCreate,
    PolicyPatch,
    TagBody,
)
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.state import STATE_KEY, EmulatorState, state_of
from sidecar.emulator.store import Deployment, PortMapping, Tag, utcnow
from sidecar.emulator.views import (
    container_logs_view,
    context_view,
    list_item_view,
    paginate,
    status_view,
    stop_view,
    tag_view,
)
from sidecar.emulator.wire import (
    PlatformError,
    error_response,
    log_storage_choice,
    parse_body,
    query_int,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes that authenticate with a per-deployment raw token instead of the management token.
_RAW_TOKEN_ROUTES = frozenset({"self_stop", "context"})
_MAX_PAGE_SIZE = 1000


def create_app(options: EmulatorOptions) -> web.Application:
    """A fresh emulator (its own state and tasks) ready to be served by any aiohttp runner."""
    app = web.Application(
        middlewares=[_record_middleware, _error_middleware, _fault_middleware, _auth_middleware]
    )
    state = EmulatorState(
        options=options,
        manager=DeploymentManager(options),
        faults=FaultQueue(options.faults),
    )
    app[STATE_KEY] = state
    app.cleanup_ctx.append(_manager_context)
    _add_platform_routes(app)
    control.add_routes(app)
    return app


async def _manager_context(app: web.Application) -> AsyncIterator[None]:
    manager = app[STATE_KEY].manager
    await manager.start()
    yield
    await manager.close()


# ---- middleware ---------------------------------------------------------------------------


@web.middleware
async def _record_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(control.PREFIX):
        return await handler(request)
    started = time.monotonic()
    CURRENT_FAULT.set(None)
    response = await handler(request)
    state_of(request).requests.record(request, response, started, CURRENT_FAULT.get())
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
    # Unnamed routes are aiohttp's 404/405 answers; control routes need no auth by design.
    if name is not None and name not in _RAW_TOKEN_ROUTES and not name.startswith("control_"):
        problem = management_error(
            request.headers.get("authorization"), state_of(request).options.api_token
        )
        if problem is not None:
            raise PlatformError(401, problem)
    return await handler(request)


# ---- helpers ------------------------------------------------------------------------------


def _deployment(request: web.Request) -> Deployment:
    request_id = request.match_info["request_id"]
    deployment = state_of(request).store.get(request_id)
    if deployment is None:
        raise PlatformError(404, f"Deployment {request_id} not found")
    return deployment


def _create_deployment(
    request: web.Request,
    *,
    app_name: str,
    version: str,
    env_vars: list[EnvVar],
    tags: list[str],
    webhooks: dict[str, str],
    default_keep_logs: bool,
    container_command: str = "",
    container_arguments: str = "",
) -> Deployment:
    state = state_of(request)
    options = state.options
    try:
        internal = options.game_port or pick_free_port()
    except OSError:
        raise PlatformError(503, "Couldn't Allocate Server") from None
    now = utcnow()
    deployment = Deployment(
        request_id=state.store.new_request_id(),
        app_name=app_name,
        app_version=version,
        access_point_id=100000 + secrets.randbelow(900000),
        delete_token=secrets.token_hex(16),
        context_number=100000 + secrets.randbelow(900000),
        context_token=secrets.token_hex(16),
        public_ip=options.public_ip,
        ports={
            GAME_PORT_NAME: PortMapping(
                GAME_PORT_NAME, internal, external_port(), options.game_port_protocol
            )
        },
        location=deployment_location(),
        created_at=now,
        user_env={variable.key: variable.value for variable in env_vars},
        command=options.apps.get(app_name),
        default_keep_logs=default_keep_logs,
        webhooks=webhooks,
        tags={name: Tag(name, now, now) for name in dict.fromkeys(tags)},
        container_command=container_command,
        container_arguments=container_arguments,
    )
    base_url = state.base_url or str(request.url.origin())
    deployment.env = build_env(deployment, base_url)
    state.store.add(deployment)
    state.manager.launch(deployment)
    return deployment


# ---- deployments --------------------------------------------------------------------------


async def deploy_v2(request: web.Request) -> web.Response:
    body = await parse_body(request, DeployV2)
    webhooks = {
        event: hook.url
        for event, hook in (
            ("ready", body.webhook_on_ready),
            ("error", body.webhook_on_error),
            ("terminated", body.webhook_on_terminated),
        )
        if hook is not None
    }
    deployment = _create_deployment(
        request,
        app_name=body.application,
        version=body.version,
        env_vars=body.environment_variables,
        tags=body.tags,
        webhooks=webhooks,
        default_keep_logs=False,
    )
    return web.json_response({"request_id": deployment.request_id}, status=202)


async def deploy_v1(request: web.Request) -> web.Response:
    body = await parse_body(request, DeployV1)
    if not body.ip_list and not body.geo_ip_list:
        raise PlatformError(422, "One of ip_list or geo_ip_list is required")
    storage = body.container_log_storage
    deployment = _create_deployment(
        request,
        app_name=body.app_name,
        version=body.version_name or "latest",
        env_vars=body.env_vars,
        tags=body.tags or [],
        webhooks={"ready": body.webhook_url} if body.webhook_url else {},
        default_keep_logs=bool(storage and storage.enabled),
        container_command=body.command or "",
        container_arguments=body.arguments or "",
    )
    location = body.location.model_dump() if body.location else None
    return web.json_response(
        {
            "request_id": deployment.request_id,
            "request_dns": deployment.fqdn,
            "request_app": deployment.app_name,
            "filters": [item.model_dump() for item in body.filters or []],
            "request_version": deployment.app_version,
            "request_user_count": len(body.ip_list or []) + len(body.geo_ip_list or []),
            "tags": list(deployment.tags),
            "container_log_storage": storage.model_dump() if storage else None,
            "location": location,
            "ap_sort_strategy": body.ap_sort_strategy,
        }
    )


async def get_status(request: web.Request) -> web.Response:
    return web.json_response(status_view(_deployment(request)))


async def stop(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    keep, storage = log_storage_choice(request)
    outcome = state_of(request).manager.request_stop(deployment, keep, storage)
    if outcome is StopOutcome.GONE:
        raise PlatformError(410, "Instance Already terminated")
    status = 200 if outcome is StopOutcome.ACCEPTED else 202
    return web.json_response(stop_view(deployment), status=status)


async def self_stop(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    if request.match_info["access_point_id"] != str(deployment.access_point_id):
        raise PlatformError(404, "Access point not found")
    if not raw_token_matches(request.headers.get("authorization"), deployment.delete_token):
        raise PlatformError(401, "Unauthorized")
    keep, storage = log_storage_choice(request)
    outcome = state_of(request).manager.request_stop(deployment, keep, storage)
    if outcome is StopOutcome.GONE:
        # The reference lists no 410 for self-stop: a terminated deployment is simply not found.
        raise PlatformError(404, f"Deployment {deployment.request_id} not found")
    if outcome is StopOutcome.ACCEPTED:
        return web.json_response(stop_view(deployment))
    return web.json_response(
        {
            "message": f"{deployment.request_id} - Delete request will be processed soon",
            "deployment_summary": status_view(deployment),
        },
        status=202,
    )


def _filter_value(deployment: Deployment, field: str) -> list[str]:
    values: dict[str, list[str]] = {
        "request_id": [deployment.request_id],
        "app_name": [deployment.app_name],
        "application": [deployment.app_name],
        "app_version": [deployment.app_version],
        "version": [deployment.app_version],
        "tags": list(deployment.tags),
        "tag": list(deployment.tags),
        "status": [str(deployment.status)],
        "current_status": [str(deployment.status)],
        "city": [str(deployment.location["city"])],
        "country": [str(deployment.location["country"])],
        "continent": [str(deployment.location["continent"])],
    }
    if field not in values:
        raise PlatformError(400, f"Unsupported filter field {field!r}")
    return values[field]


async def bulk_stop(request: web.Request) -> web.Response:
    body = await parse_body(request, BulkStop)
    state = state_of(request)
    processable = []
    for deployment in state.store:
        if deployment.terminated:
            continue
        matches = True
        for item in body.filters:
            present = set(_filter_value(deployment, item.field))
            wanted = set(item.values)
            if item.filter_type == "any":
                matches = matches and bool(present & wanted)
            elif item.filter_type == "all":
                matches = matches and wanted <= present
            else:
                matches = matches and not present & wanted
        if matches:
            state.manager.request_stop(deployment, None)
            processable.append({"request_id": deployment.request_id})
    return web.json_response({"processable": processable}, status=202)


async def list_deployments(request: web.Request) -> web.Response:
    page = query_int(request, "page", 1, 1, 1_000_000)
    limit = query_int(request, "limit", 10, 1, _MAX_PAGE_SIZE)
    active = [item for item in state_of(request).store if not item.terminated]
    items, pagination = paginate(active, page, limit)
    return web.json_response(
        {
            "data": [list_item_view(item) for item in items],
            "total_count": len(active),
            "pagination": pagination,
            "message": [],
        }
    )


async def locations(request: web.Request) -> web.Response:
    with_tags = request.query.get("tags", "").lower() == "true"
    return web.json_response(locations_view(request.query.get("type") or None, with_tags))


async def container_logs(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    link = None
    if deployment.terminated:
        if not deployment.logs_kept or deployment.logs is None:
            raise PlatformError(
                404, "Logs are not available: the deployment is terminated and logs were not kept"
            )
        base = state_of(request).base_url or str(request.url.origin())
        link = f"{base}{control.PREFIX}deployments/{deployment.request_id}/logs"
    return web.json_response(container_logs_view(deployment, link))


_STEP = re.compile(r"^(\d+)([smh])$")


def _query_time(request: web.Request, name: str) -> datetime | None:
    text = request.query.get(name)
    if not text:
        return None
    for layout in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise PlatformError(400, f"{name} should match %Y-%m-%d %H:%M:%S.%f")


async def metrics(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    start = _query_time(request, "start_time") or deployment.created_at
    end = _query_time(request, "end_time") or utcnow()
    if end <= start:
        raise PlatformError(422, "end_time must be greater than start_time")
    step = None
    if steps := request.query.get("steps"):
        match = _STEP.match(steps)
        if match is None or int(match.group(1)) == 0:
            raise PlatformError(400, "steps should look like 30s, 1m, 5m, 10m or 1h")
        unit = {"s": 1, "m": 60, "h": 3600}[match.group(2)]
        step = timedelta(seconds=int(match.group(1)) * unit)
    manager = state_of(request).manager
    sampler = manager.samplers.get(deployment.request_id)
    if sampler is None:
        samples = [zero_sample()]
    else:
        manager.sample_now(deployment)
        samples = select_samples(list(sampler.samples), start, end, step)
    return web.json_response(metrics_view(samples, deployment.created_at))


async def context(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    if request.match_info["number"] != str(deployment.context_number):
        raise PlatformError(404, "Context not found")
    if not raw_token_matches(request.headers.get("authorization"), deployment.context_token):
        raise PlatformError(401, "Unauthorized")
    if deployment.terminated:
        raise PlatformError(404, f"Deployment {deployment.request_id} not found")
    return web.json_response(context_view(deployment))


# ---- tags ---------------------------------------------------------------------------------


def _tag(deployment: Deployment, name: str) -> Tag:
    tag = deployment.tags.get(name)
    if tag is None:
        raise PlatformError(404, f"Tag {name} not found")
    return tag


async def list_tags(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    tags = [tag_view(tag) for tag in deployment.tags.values()]
    return web.json_response({"tags": tags, "count": len(tags), "pagination": {}})


async def get_tag(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    return web.json_response(tag_view(_tag(deployment, request.match_info["tag_name"])))


async def create_tag(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    body = await parse_body(request, TagBody)
    if body.name in deployment.tags:
        raise PlatformError(409, f"Tag {body.name} already exists")
    now = utcnow()
    tag = deployment.tags[body.name] = Tag(body.name, now, now)
    return web.json_response(tag_view(tag))


async def update_tag(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    tag = _tag(deployment, request.match_info["tag_name"])
    body = await parse_body(request, TagBody)
    if body.name != tag.name:
        if body.name in deployment.tags:
            raise PlatformError(409, f"Tag {body.name} already exists")
        # Rebuild the mapping so the renamed tag keeps its place in the order.
        deployment.tags = {
            (body.name if name == tag.name else name): item
            for name, item in deployment.tags.items()
        }
        tag.name = body.name
    tag.last_updated = utcnow()
    return web.json_response(tag_view(tag))


async def delete_tag(request: web.Request) -> web.Response:
    deployment = _deployment(request)
    tag = _tag(deployment, request.match_info["tag_name"])
    del deployment.tags[tag.name]
    return web.Response(status=204)


# ---- fleets -------------------------------------------------------------------------------


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


def _page(request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    page = query_int(request, "page", 1, 1, 1_000_000)
    limit = query_int(request, "limit", 10, 1, _MAX_PAGE_SIZE)
    return paginate(items, page, limit)


async def list_fleets(request: web.Request) -> web.Response:
    items, pagination = _page(request, state_of(request).fleets.all())
    return web.json_response(
        {"fleets": [fleet.view() for fleet in items], "pagination": pagination}
    )


async def create_policy(request: web.Request) -> web.Response:
    fleets = state_of(request).fleets
    fleets.get(request.match_info["fleet"])  # unknown fleet: 404 before body errors
    body = await parse_body(request, PolicyCreate)
    return web.json_response(fleets.add_policy(request.match_info["fleet"], body).view())


async def list_policies(request: web.Request) -> web.Response:
    fleet = state_of(request).fleets.get(request.match_info["fleet"])
    items, pagination = _page(request, list(fleet.policies.values()))
    return web.json_response(
        {"policies": [policy.view() for policy in items], "pagination": pagination}
    )


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


def _add_platform_routes(app: web.Application) -> None:
    router = app.router
    router.add_post("/deployments", deploy_v2, name="deploy")
    router.add_post("/v1/deploy", deploy_v1, name="deploy_v1")
    router.add_get("/v1/status/{request_id}", get_status, name="status")
    router.add_delete("/v1/stop/{request_id}", stop, name="stop")
    router.add_delete("/v1/self/stop/{request_id}/{access_point_id}", self_stop, name="self_stop")
    router.add_post("/v1/deployments/bulk-stop", bulk_stop, name="bulk_stop")
    router.add_get("/v1/deployments", list_deployments, name="list_deployments")
    router.add_get("/v1/locations", locations, name="locations")
    router.add_get(
        "/v1/deployment/{request_id}/container-logs", container_logs, name="container_logs"
    )
    router.add_get("/v1/metrics/deployment/{request_id}", metrics, name="metrics")
    router.add_get("/v1/context/{request_id}/{number}", context, name="context")
    tags = "/v1/deployments/{request_id}/tags"
    router.add_get(tags, list_tags, name="list_tags")
    router.add_post(tags, create_tag, name="create_tag")
    router.add_get(tags + "/{tag_name}", get_tag, name="get_tag")
    router.add_patch(tags + "/{tag_name}", update_tag, name="update_tag")
    router.add_delete(tags + "/{tag_name}", delete_tag, name="delete_tag")
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


__all__ = ["EmulatorState", "create_app"]
