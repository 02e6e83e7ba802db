"""Deployment routes: deploy (v2 and legacy), status, stop, self-stop, bulk-stop and list.

POST   /deployments                          v2 deploy → 202 {"request_id"}
POST   /v1/deploy                            legacy deploy → 200 (legacy response fields)
GET    /v1/status/{request_id}               status
DELETE /v1/stop/{request_id}                 200 READY/ERROR, 202 before READY or while
                                             terminating, 410 once terminated
DELETE /v1/self/stop/{request_id}/{ap_id}    raw delete token (checked by the auth
                                             middleware); 200/202, 404 once terminated
POST   /v1/deployments/bulk-stop             202 {"processable": [...]}
GET    /v1/deployments?page=&limit=          active deployments, paginated
"""

from __future__ import annotations

from aiohttp import web

from sidecar.emulator.deployments import DeploymentRequest, StopOutcome
from sidecar.emulator.filters import field_values, matches_all, parse_query, query_matches
from sidecar.emulator.models import BulkStop, DeployV1, DeployV2
from sidecar.emulator.route_io import PlatformError, page_of, parse_body
from sidecar.emulator.state import deployment_of, state_of
from sidecar.emulator.storage import LogChoice
from sidecar.emulator.store import Deployment
from sidecar.emulator.views import list_item_view, status_view, stop_view


async def deploy_v2(request: web.Request) -> web.Response:
    deployment = create_v2(request, await parse_body(request, DeployV2))
    return web.json_response({"request_id": deployment.request_id}, status=202)


def create_v2(
    request: web.Request, body: DeployV2, extra_env: dict[str, str] | None = None
) -> Deployment:
    """The v2 deploy of `body` (also the matches route's, with its `MM_*` as `extra_env`)."""
    webhooks = {
        event: hook.url
        for event, hook in (
            ("ready", body.webhook_on_ready),
            ("error", body.webhook_on_error),
            ("terminated", body.webhook_on_terminated),
        )
        if hook is not None
    }
    state = state_of(request)
    return state.manager.create(
        DeploymentRequest(
            app_name=body.application,
            app_version=body.version,
            env_vars={
                **{variable.key: variable.value for variable in body.environment_variables},
                **(extra_env or {}),
            },
            tags=tuple(body.tags),
            webhooks=webhooks,
        ),
        state.base_url_for(request),
    )


async def deploy_v1(request: web.Request) -> web.Response:
    body = await parse_body(request, DeployV1, invalid=422)
    if body.ip_list and body.geo_ip_list:
        raise PlatformError(422, "ip_list and geo_ip_list are mutually exclusive: give one")
    if not body.ip_list and not body.geo_ip_list:
        raise PlatformError(422, "One of ip_list or geo_ip_list is required")
    storage = body.container_log_storage
    state = state_of(request)
    deployment = state.manager.create(
        DeploymentRequest(
            app_name=body.app_name,
            app_version=body.version_name or "latest",
            env_vars={variable.key: variable.value for variable in body.env_vars},
            tags=tuple(body.tags or ()),
            webhooks={"ready": body.webhook_url} if body.webhook_url else {},
            legacy_log_storage=None
            if storage is None
            else (storage.enabled, storage.endpoint_storage),
            container_command=body.command or "",
            container_arguments=body.arguments or "",
        ),
        state.base_url_for(request),
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
    return web.json_response(status_view(deployment_of(request)))


def _log_choice(request: web.Request, deployment: Deployment) -> LogChoice:
    value = request.query.get("container_log_storage")
    return state_of(request).manager.storages.choice(value, deployment.app)


async def stop(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    choice = _log_choice(request, deployment)
    outcome = state_of(request).manager.request_stop(deployment, choice, "DELETE /v1/stop")
    if outcome is StopOutcome.GONE:
        raise PlatformError(410, "Instance Already terminated")
    status = 200 if outcome is StopOutcome.ACCEPTED else 202
    return web.json_response(stop_view(deployment), status=status)


async def self_stop(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    choice = _log_choice(request, deployment)
    outcome = state_of(request).manager.request_stop(deployment, choice, "its self-stop")
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


async def bulk_stop(request: web.Request) -> web.Response:
    body = await parse_body(request, BulkStop)
    state = state_of(request)
    active = [deployment for deployment in state.store if not deployment.terminated]
    for item in body.filters:
        if active:
            field_values(active[0], item.field)  # an unknown field is refused before any stop
    processable = []
    for deployment in active:
        if matches_all(deployment, body.filters):
            state.manager.request_stop(deployment, by="a bulk-stop")
            processable.append({"request_id": deployment.request_id})
    return web.json_response({"processable": processable}, status=202)


async def list_deployments(request: web.Request) -> web.Response:
    active = [item for item in state_of(request).store if not item.terminated]
    query = request.query.get("query")
    if query:
        filters = parse_query(query)
        if active:
            query_matches(active[0], filters)  # an unknown field is refused, matches or not
        active = [item for item in active if query_matches(item, filters)]
    items, pagination = page_of(request, active)
    return web.json_response(
        {
            "data": [list_item_view(item) for item in items],
            "total_count": len(active),
            "pagination": pagination,
            "message": [""],
        }
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/deployments", deploy_v2, name="deploy")
    router.add_post("/v1/deploy", deploy_v1, name="deploy_v1")
    router.add_get("/v1/status/{request_id}", get_status, name="status")
    router.add_delete("/v1/stop/{request_id}", stop, name="stop")
    router.add_delete("/v1/self/stop/{request_id}/{access_point_id}", self_stop, name="self_stop")
    router.add_post("/v1/deployments/bulk-stop", bulk_stop, name="bulk_stop")
    router.add_get("/v1/deployments", list_deployments, name="list_deployments")
