"""What a deployment left behind: its container logs and its metrics.

GET /v1/deployment/{request_id}/container-logs   while running; after termination only
                                                 when the stop kept them (else 404)
GET /v1/metrics/deployment/{request_id}?start_time=&end_time=&steps=
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aiohttp import web

from sidecar.emulator.metrics import metrics_view
from sidecar.emulator.route_io import PlatformError
from sidecar.emulator.state import deployment_of, state_of
from sidecar.emulator.store import utcnow
from sidecar.emulator.views import container_logs_view

CONTROL_LOGS = "/_emulator/deployments/{request_id}/logs"
_STEP = re.compile(r"^(\d+)([smh])$")


async def container_logs(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    link = None
    if deployment.terminated:
        if not deployment.logs_kept or deployment.logs is None:
            raise PlatformError(
                404, "Logs are not available: the deployment is terminated and logs were not kept"
            )
        base = state_of(request).base_url_for(request)
        link = base + CONTROL_LOGS.format(request_id=deployment.request_id)
    return web.json_response(container_logs_view(deployment, link))


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


def _query_step(request: web.Request) -> timedelta | None:
    steps = request.query.get("steps")
    if not steps:
        return None
    match = _STEP.match(steps)
    if match is None or int(match.group(1)) == 0:
        raise PlatformError(400, "steps should look like 30s, 1m, 5m, 10m or 1h")
    unit = {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    return timedelta(seconds=int(match.group(1)) * unit)


async def metrics(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    start = _query_time(request, "start_time") or deployment.created_at
    end = _query_time(request, "end_time") or utcnow()
    if end <= start:
        raise PlatformError(422, "end_time must be greater than start_time")
    samples = state_of(request).manager.metrics(deployment, start, end, _query_step(request))
    return web.json_response(metrics_view(samples, deployment.created_at))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(
        "/v1/deployment/{request_id}/container-logs", container_logs, name="container_logs"
    )
    router.add_get("/v1/metrics/deployment/{request_id}", metrics, name="metrics")
