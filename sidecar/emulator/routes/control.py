"""The control API under `/_emulator/`: fault injection, the request log and deployment
internals, for tests and users' CI. Its calls are not logged. With `--api-token` every route but
`GET /_emulator/health` needs `authorization: token <TOKEN>` (the routes hand out delete tokens
and take faults); without one they are open, and the emulator only listens on loopback.

    GET    /_emulator/health                       the readiness probe: 200 once serving, with
                                                   {status, url, isolation, isolation_note,
                                                    rate_limits, rate_limited (calls
                                                    answered 429), show_tokens,
                                                    endpoint_storages, apps, deployments}

    GET    /_emulator/faults                       {"faults": [pending faults, each with
                                                    remaining, active, starts_in, ends_in]}
    POST   /_emulator/faults                       {"target": "self_stop", "status": 503,
                                                    "count": 2, "delay_seconds": 0.0,
                                                    "retry_after": null, "request_id": null,
                                                    "starts_in_seconds": 0,
                                                    "duration_seconds": null} → 201
           the next `count` calls of `target` (null: every call while the fault lasts) wait
           `delay_seconds`, then answer `status` (`{"message": "Injected fault"}`,
           `Retry-After` if set) or, with `status` null, are processed normally; faults queue
           in order. `target` is a platform route name; `request_id` limits the fault to one
           deployment; it becomes active after `starts_in_seconds` and, with
           `duration_seconds`, lapses that long after (faults.py).
    DELETE /_emulator/faults                       {"cleared": n}
    GET    /_emulator/requests?path_contains=&method=
                                                   {"requests": [{method, path, query, headers
                                                    (authorization redacted unless
                                                    --show-tokens), authorized,
                                                    rate_limited, status,
                                                    retry_after (the Retry-After answered, or
                                                    null), fault (the injected fault that
                                                    answered or delayed it, or null), time,
                                                    timestamp (answered, Unix seconds),
                                                    duration_ms}], "dropped": n (oldest
                                                    entries dropped by the log's bound)}
    DELETE /_emulator/requests                     {"cleared": n}
    GET    /_emulator/deployments/{request_id}      what the platform does not show: backed or
                                                   not, isolation, pid, the app version it
                                                   runs as, where each port is reached, why
                                                   it ended, its crash data and last output
                                                   (whatever the log storage), and whether
                                                   (and why) its logs were kept
    GET    /_emulator/deployments/{request_id}/env  the ARBITRIUM_* (and deploy) variables of
                                                   that deployment, as a flat JSON object
    GET    /_emulator/deployments/{request_id}/logs the raw captured stdout+stderr bytes
                                                   (404 once discarded by the stop)
    GET    /_emulator/deployments/{request_id}/sidecar/{path}
                                                   that deployment's local API (its sidecar),
                                                   inside its isolation; streams (SSE too);
                                                   404 when it has none (sidecar_proxy.py)
    GET    /_emulator/deployments/{request_id}/wait?status=Status.READY&timeout=10
                                                   long-poll: 200 with the status body once
                                                   the deployment has reached that status
                                                   (now or earlier), 408 if the timeout
                                                   (max 60 s) passes first or it can no
                                                   longer reach it (terminated, or READY
                                                   awaited and ERROR reached)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sidecar.emulator.apps import AppVersion
from sidecar.emulator.faults import FaultSpec
from sidecar.emulator.models import FaultBody
from sidecar.emulator.route_io import PlatformError, parse_body
from sidecar.emulator.routes import sidecar_proxy
from sidecar.emulator.state import deployment_of, state_of
from sidecar.emulator.store import Deployment, Status
from sidecar.emulator.views import crash_data_view, status_view

PREFIX = "/_emulator/"
_MAX_WAIT_SECONDS = 60.0


def _platform_route_names(app: web.Application) -> set[str]:
    return {
        route.name
        for route in app.router.routes()
        if route.name is not None and not route.name.startswith("control_")
    }


def _per_deployment_route_names(app: web.Application) -> set[str]:
    return {
        route.name
        for route in app.router.routes()
        if route.name is not None
        and not route.name.startswith("control_")
        and route.resource is not None
        and "{request_id}" in route.resource.canonical
    }


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": state_of(request).faults.pending()})


async def add_fault(request: web.Request) -> web.Response:
    body = await parse_body(request, FaultBody, invalid=422)
    targets = _platform_route_names(request.app)
    if body.target not in targets:
        raise PlatformError(
            422, f"Unknown fault target {body.target!r}", {"targets": sorted(targets)}
        )
    if body.status is None and body.delay_seconds == 0:
        raise PlatformError(422, "A fault needs a status, a delay_seconds > 0, or both")
    # Either mistake would otherwise make a fault that silently never applies.
    if body.request_id is not None:
        if body.target not in _per_deployment_route_names(request.app):
            raise PlatformError(422, f"Calls of {body.target!r} are not about one deployment")
        if state_of(request).store.get(body.request_id) is None:
            raise PlatformError(422, f"Unknown deployment {body.request_id!r}")
    spec = FaultSpec(
        target=body.target,
        status=body.status,
        count=body.count,
        delay_seconds=body.delay_seconds,
        retry_after=None if body.retry_after is None else str(body.retry_after),
        request_id=body.request_id,
        starts_in_seconds=body.starts_in_seconds,
        duration_seconds=body.duration_seconds,
    )
    faults = state_of(request).faults
    faults.add(spec)
    return web.json_response({"fault": spec.to_json(), "faults": faults.pending()}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    return web.json_response({"cleared": state_of(request).faults.clear()})


async def list_requests(request: web.Request) -> web.Response:
    entries = state_of(request).requests.entries(
        request.query.get("path_contains"), request.query.get("method")
    )
    log = state_of(request).requests
    return web.json_response({"requests": entries, "dropped": log.dropped})


async def clear_requests(request: web.Request) -> web.Response:
    return web.json_response({"cleared": state_of(request).requests.clear()})


def _app_version_view(app: AppVersion) -> dict[str, Any]:
    return {
        "backed": app.command is not None,
        "restart_policy": app.restart_policy,
        "time_to_deploy": app.time_to_deploy,
        "termination_grace_period_seconds": app.grace_seconds,
        "max_duration": app.max_duration,
        "endpoint_storage": app.endpoint_storage,
        "ports": [
            {
                "name": port.name,
                "port": port.port,
                "protocol": port.protocol,
                "to_check": port.to_check,
                "tls_upgrade": port.tls_upgrade,
            }
            for port in app.ports
        ],
    }


async def health(request: web.Request) -> web.Response:
    state = state_of(request)
    manager = state.manager
    deployments = list(state.store)
    names = sorted({*state.options.apps, *state.options.app_versions})
    return web.json_response(
        {
            "status": "ok",
            "url": state.base_url_for(request),
            "isolation": str(manager.isolation),
            "isolation_note": manager.isolation_note,
            "rate_limits": state.options.rate_limits,
            "rate_limited": state.limits.refused,
            "show_tokens": state.options.show_tokens,
            "endpoint_storages": sorted(manager.storages.names),
            "apps": {name: _app_version_view(state.options.app_version(name)) for name in names},
            "deployments": {
                "total": len(deployments),
                "active": sum(not deployment.terminated for deployment in deployments),
            },
        }
    )


def _internals_view(deployment: Deployment) -> dict[str, Any]:
    kept: bool | None = deployment.logs_kept if deployment.terminated else None
    return {
        "request_id": deployment.request_id,
        "app_name": deployment.app_name,
        "current_status": str(deployment.status),
        "history": [str(status) for status in deployment.history],
        "error_detail": deployment.error_detail,
        "backed": deployment.command is not None,
        "isolation": deployment.isolation,
        "pid": deployment.pid,
        "app_version": _app_version_view(deployment.app),
        "ports": {
            name: {
                "internal": mapping.internal,
                "external": mapping.external,
                "protocol": mapping.protocol,
                "to_check": mapping.to_check,
                "reach": f"{deployment.public_ip}:{mapping.external}",
            }
            for name, mapping in deployment.ports.items()
        },
        "end_reason": deployment.end_reason or None,
        "crash_data": crash_data_view(deployment.exit),
        "last_output": bytes(deployment.output_tail)
        .decode("utf-8", errors="replace")
        .splitlines()[-20:],
        "logs": {
            "kept": kept,
            "note": deployment.logs_note
            or (deployment.stop_logs.note if deployment.stop_logs else "no stop yet"),
        },
    }


async def deployment_internals(request: web.Request) -> web.Response:
    return web.json_response(_internals_view(deployment_of(request)))


async def deployment_env(request: web.Request) -> web.Response:
    return web.json_response(deployment_of(request).env)


async def deployment_logs(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    if deployment.logs is None:
        raise PlatformError(404, "Logs were discarded when the deployment stopped")
    return web.Response(body=deployment.logs.kept(), content_type="application/octet-stream")


async def wait_for_status(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    try:
        status = Status(request.query.get("status", ""))
    except ValueError:
        raise PlatformError(400, "status must be one of " + ", ".join(Status)) from None
    try:
        timeout = float(request.query.get("timeout", "10"))
    except ValueError:
        raise PlatformError(400, "timeout must be a number of seconds") from None
    if not 0 <= timeout <= _MAX_WAIT_SECONDS:
        raise PlatformError(400, f"timeout must be between 0 and {_MAX_WAIT_SECONDS:g} seconds")
    reached = await state_of(request).manager.wait_for_status(deployment, status, timeout)
    if not reached:
        raise PlatformError(408, f"Deployment is {deployment.status} and has not reached {status}")
    return web.json_response(status_view(deployment))


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(PREFIX + "health", health, name="control_health")
    router.add_get(PREFIX + "faults", list_faults, name="control_list_faults")
    router.add_post(PREFIX + "faults", add_fault, name="control_add_fault")
    router.add_delete(PREFIX + "faults", clear_faults, name="control_clear_faults")
    router.add_get(PREFIX + "requests", list_requests, name="control_list_requests")
    router.add_delete(PREFIX + "requests", clear_requests, name="control_clear_requests")
    deployment = PREFIX + "deployments/{request_id}"
    router.add_get(deployment, deployment_internals, name="control_deployment")
    router.add_get(deployment + "/env", deployment_env, name="control_env")
    router.add_get(deployment + "/logs", deployment_logs, name="control_logs")
    router.add_get(deployment + "/wait", wait_for_status, name="control_wait")
    router.add_get(deployment + "/sidecar/{path:.*}", sidecar_proxy.proxy, name="control_sidecar")
    app.on_shutdown.append(sidecar_proxy.close_proxied)
