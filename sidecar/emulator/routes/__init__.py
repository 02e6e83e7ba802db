"""The emulator's HTTP routes, one module per resource of the reference, plus the control API.

Handlers are thin: they parse the request (`route_io.py`, `models.py`), call the platform rules in
the manager and the stores, and render the reference's shapes (`views.py`). Route names are
what faults target (`/_emulator/faults` `target`), so they are part of the control API.

    deployments.py  deploy (v2, legacy), status, stop, self-stop, bulk-stop, list
    logs.py         container logs, metrics
    context.py      the context API (ARBITRIUM_CONTEXT_URL)
    tags.py         deployment tags
    fleets.py       fleets, policies, version links
    locations.py    locations
    control.py      /_emulator/: faults, request log, deployment internals
    sidecar_proxy.py  /_emulator/deployments/{id}/sidecar/: a deployment's local API
    dashboard.py    /_emulator/ui (GET / redirects there): the dashboard page, its timeline
"""

from __future__ import annotations

from aiohttp import web

from sidecar.emulator.routes import context, deployments, fleets, locations, logs, tags


def add_platform_routes(app: web.Application) -> None:
    for module in (deployments, logs, context, tags, fleets, locations):
        module.add_routes(app.router)
