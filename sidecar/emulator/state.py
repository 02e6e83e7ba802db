"""`EmulatorState`: everything one emulator app holds, reachable from any handler.

One instance per `create_app`; nothing is global, so several emulators can share a process.
`deployment_of(request)` is the one lookup of the `{request_id}` in a path, for the platform
and the control routes alike (unknown → 404 in the platform's shape).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from sidecar.emulator.deployments import DeploymentManager
from sidecar.emulator.errors import PlatformError
from sidecar.emulator.faults import FaultQueue
from sidecar.emulator.fleets import FleetStore
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.ratelimit import RateLimiter
from sidecar.emulator.recorder import RequestLog
from sidecar.emulator.results import ResultSink
from sidecar.emulator.store import Deployment, DeploymentStore


@dataclass
class EmulatorState:
    options: EmulatorOptions
    manager: DeploymentManager
    faults: FaultQueue
    store: DeploymentStore = field(default_factory=DeploymentStore)
    fleets: FleetStore = field(default_factory=FleetStore)
    requests: RequestLog = field(default_factory=RequestLog)
    limits: RateLimiter = field(default_factory=RateLimiter)
    results: ResultSink = field(default_factory=ResultSink)  # --result-sink
    # The upstream connections of /_emulator/deployments/{id}/sidecar/ calls in flight.
    proxied: set[asyncio.StreamWriter] = field(default_factory=set)
    # Set by the server once the port is bound; the base of ARBITRIUM_DELETE_URL. Until then
    # (e.g. under aiohttp's TestServer) the deploy request's own origin is used.
    base_url: str | None = None

    def deployment(self, request_id: str) -> Deployment:
        deployment = self.store.get(request_id)
        if deployment is None:
            raise PlatformError(404, f"Deployment {request_id} not found")
        return deployment

    def base_url_for(self, request: web.Request) -> str:
        return self.base_url or str(request.url.origin())


STATE_KEY = web.AppKey("emulator_state", EmulatorState)


def state_of(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def deployment_of(request: web.Request) -> Deployment:
    """The deployment named by the path's `{request_id}`; 404 when there is none."""
    return state_of(request).deployment(request.match_info["request_id"])
