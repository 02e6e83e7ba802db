"""`EmulatorState`: everything one emulator app holds, reachable from any handler.

One instance per `create_app`; nothing is global, so several emulators can share a process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from sidecar.emulator.deployments import DeploymentManager
from sidecar.emulator.faults import FaultQueue
from sidecar.emulator.fleets import FleetStore
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.recorder import RequestLog
from sidecar.emulator.store import DeploymentStore


@dataclass
class EmulatorState:
    options: EmulatorOptions
    manager: DeploymentManager
    faults: FaultQueue
    store: DeploymentStore = field(default_factory=DeploymentStore)
    fleets: FleetStore = field(default_factory=FleetStore)
    requests: RequestLog = field(default_factory=RequestLog)
    # Set by the server once the port is bound; the base of ARBITRIUM_DELETE_URL. Until then
    # (e.g. under aiohttp's TestServer) the deploy request's own origin is used.
    base_url: str | None = None


STATE_KEY = web.AppKey("emulator_state", EmulatorState)


def state_of(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]
