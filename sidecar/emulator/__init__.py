"""A local emulator of Edgegap's deployment API (SPEC §9), for demos, tests and users' CI.

It serves the platform routes of reference/edgegap-dedicated-servers-api.txt on loopback
(`app.py`), walks deployments through the platform's statuses and backs the configured
applications with real local processes (`deployments.py`, `processes.py`), and offers a
control API under `/_emulator/` for fault injection and inspection (`control.py`).

Modules, one responsibility each:

    options.py      EmulatorOptions and the `emulate` CLI flags
    app.py          platform routes and middleware (record, errors, faults, auth)
    control.py      the /_emulator/ control API
    deployments.py  status walk, backing processes under the restart policy, stops, webhooks
    processes.py    one run of a backing process: spawn, capture, SIGTERM/SIGKILL
    store.py        deployment records and statuses (data only)
    views.py        the reference's JSON shapes
    environment.py  the ARBITRIUM_* environment and the game port
    metrics.py      psutil samples and the metrics JSON
    faults.py       the injected-fault queue
    recorder.py     the request log
    auth.py         management and raw-token checks
    fleets.py       fleets, policies and version links (stored resources)
    locations.py    the location catalogue
    models.py       request bodies (pydantic)
    wire.py         error shape, body and query parsing
    state.py        per-app state
    server.py       run_emulator
    harness.py      EmulatorServer for tests
"""

from sidecar.emulator.app import create_app
from sidecar.emulator.faults import FaultSpec
from sidecar.emulator.harness import EmulatorError, EmulatorServer
from sidecar.emulator.options import EmulatorOptions, add_arguments, options_from_args
from sidecar.emulator.server import run_emulator
from sidecar.emulator.store import Status

__all__ = [
    "EmulatorError",
    "EmulatorOptions",
    "EmulatorServer",
    "FaultSpec",
    "Status",
    "add_arguments",
    "create_app",
    "options_from_args",
    "run_emulator",
]
