"""A local emulator of Edgegap's deployment API (SPEC §9), for demos, tests and users' CI.

It serves the platform routes of reference/edgegap-dedicated-servers-api.txt on loopback
(`app.py`, `routes/`), walks deployments through the platform's statuses and backs the
configured applications with real local processes (`deployments.py`, `processes.py`), and
offers a control API under `/_emulator/` for fault injection and inspection
(`routes/control.py`).

Modules, one responsibility each:

    options.py      EmulatorOptions and the `emulate` CLI flags
    app.py          the middleware chain (record, errors, faults, auth) and the route table
    routes/         one module per resource of the reference, and the /_emulator/ control API
    deployments.py  creation, status walk, readiness, backing processes under the restart
                    policy, stops, webhooks (the platform's rules about a deployment's life)
    backed.py       a backed deployment's process: start, readiness check, supervision
    apps.py         app versions: command, restart policy, time_to_deploy, ports, storage
    network.py      a backed deployment's network: isolation mode, ports, readiness check
    netns.py        network namespaces: create, sockets inside, the nsenter prefix
    forward.py      TCP/UDP forwarding from the host's external ports into a namespace
    storage.py      endpoint storages and a stop's container_log_storage choice
    ratelimit.py    the reference's rate limits
    webhooks.py     the ready / error / terminated webhook posts
    processes.py    one run of a backing process: spawn, capture, SIGTERM/SIGKILL
    tail.py         the bounded tail of a game's output (logs, crash_logs) and what it dropped
    guardian.py     the helper that owns a backed process tree, so nothing outlives us
    store.py        deployment records, their tags, ids and tokens (data and its invariants)
    filters.py      which deployments a bulk-stop filter or a list query selects
    views.py        the reference's JSON shapes
    environment.py  the ARBITRIUM_* environment and the game port
    metrics.py      psutil samples and the metrics JSON
    faults.py       the injected-fault queue
    recorder.py     the request log
    console.py      the console: a line per deployment event (text or JSON), --follow
    auth.py         management and raw-token checks
    fleets.py       fleets, policies and version links (stored resources)
    locations.py    the location catalogue
    models.py       request bodies (pydantic)
    errors.py       PlatformError, an answer in the platform's `{"message"}` shape
    route_io.py     error rendering, body and query parsing
    state.py        per-app state and the one deployment lookup
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
