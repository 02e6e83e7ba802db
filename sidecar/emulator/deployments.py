"""Deployment behaviour: creation, the status walk, backing processes, restart policy, stops,
webhooks: the platform's rules about a deployment's life.

Over 400 lines on purpose: one deployment's whole life, status walk to stop, reads in one place.

`DeploymentManager` owns every background task of the emulator's deployments: one runner task
per deployment (created in `launch`, cancelled and awaited in `close`), a metrics sampler per
backed deployment, and the webhook posts (through `webhooks.Webhooks`). A runner walks
INITIALIZING → SEEKING → SEEKED → SCANNING → DEPLOYING, one `status_step_seconds` per step;
then:

* simulated (no process): READY one step later, then waits for a stop;
* backed: sets up the deployment's network (network.py), then its process (backed.py) runs
  the platform's port readiness check: READY once it listens on every port `to_check`; ERROR
  (with `error_detail`, and `webhook_on_error`) when it cannot start (exit 127/126), exits
  before it is ready and may not be restarted, or is not ready within the app version's
  `time_to_deploy`. A process in ERROR keeps running (its logs stay readable) until stopped.
  Then it is supervised under the app version's restart policy until a stop;

and finally TERMINATING → TERMINATED.

Stops follow the platform's rules: accepted at once when READY or ERROR, deferred until one of
them is reached otherwise; the first stop's `container_log_storage` choice decides, at
TERMINATED, whether the logs survive (storage.py).

Every event it decides (created, each status with its why, each stop call, each restart) goes
to the console (console.py) when `run_emulator` gave it one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sidecar.emulator.backed import BackedRun
from sidecar.emulator.console import Console
from sidecar.emulator.environment import GAME_PORT_NAME, build_env, external_port, pick_free_port
from sidecar.emulator.errors import PlatformError
from sidecar.emulator.locations import deployment_location, full_cities, placement
from sidecar.emulator.metrics import ProcessSampler, Sample, select_samples, zero_sample
from sidecar.emulator.network import (
    ApiSite,
    DeploymentNetwork,
    Isolation,
    PortAllocator,
    resolve_isolation,
)
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.processes import BackedProcess
from sidecar.emulator.storage import EndpointStorages, LogChoice
from sidecar.emulator.store import (
    STARTUP_WALK,
    Deployment,
    DeploymentStore,
    PortMapping,
    Status,
    Tag,
    utcnow,
)
from sidecar.emulator.views import status_view
from sidecar.emulator.webhooks import Webhooks

log = logging.getLogger(__name__)

# Upper bound of each shutdown step; the stop grace is capped at it too, so exit is prompt.
_CLOSE_TIMEOUT = 5.0


class StopOutcome(enum.Enum):
    ACCEPTED = "accepted"  # READY/ERROR: termination started now
    DEFERRED = "deferred"  # not READY yet: carried out when READY or ERROR is reached
    IN_PROGRESS = "in_progress"  # already stopping (or already deferred)
    GONE = "gone"  # already TERMINATED


@dataclass(frozen=True)
class DeploymentRequest:
    """What a deploy call asks for, whichever API version it came through."""

    app_name: str
    app_version: str
    env_vars: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    # event ("ready" | "error" | "terminated") -> webhook URL
    webhooks: dict[str, str] = field(default_factory=dict)
    # Legacy deploy `container_log_storage`: (enabled, endpoint_storage); None when absent.
    legacy_log_storage: tuple[bool, str | None] | None = None
    container_command: str = ""
    container_arguments: str = ""


class DeploymentManager:
    """Creates and runs deployments; the only writer of a deployment's status."""

    def __init__(self, options: EmulatorOptions, store: DeploymentStore) -> None:
        self._options = options
        self._store = store
        named = [
            version.endpoint_storage
            for version in options.app_versions.values()
            if version.endpoint_storage
        ]
        self.storages = EndpointStorages([*options.endpoint_storages, *named])
        self.isolation = Isolation.PORTS
        self.isolation_note = "not started"
        self._ports = PortAllocator(Isolation.PORTS, options.public_ip)
        self._networks: dict[str, DeploymentNetwork] = {}
        # Set by the server once it serves the app: serves the API on a listening socket (a
        # namespace's), so ARBITRIUM_DELETE_URL works from inside one.
        self.api_site: ApiSite | None = None
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._stop_events: dict[str, asyncio.Event] = {}
        self._runs: dict[str, BackedRun] = {}
        self._samplers: dict[str, ProcessSampler] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._webhooks = Webhooks()
        # Set by run_emulator: one line per deployment event (console.py); None in-process.
        self.console: Console | None = None

    async def start(self) -> None:
        if self._options.apps:
            # Only backed deployments have a network to isolate; probing costs a namespace.
            self.isolation, self.isolation_note = await asyncio.to_thread(
                resolve_isolation, self._options.isolation
            )
        else:
            self.isolation_note = "no backed applications (--app): nothing to isolate"
        self._ports = PortAllocator(self.isolation, self._options.public_ip)
        await self._webhooks.start()

    async def close(self) -> None:
        """Shutdown: stop every deployment the normal way (SIGTERM, SIGKILL after the grace),
        then cancel what is left — runners still in their start-up walk, webhooks."""
        for deployment in self._store:
            if not deployment.terminated and not deployment.end_reason:
                deployment.end_reason = "stopped by the emulator's shutdown"
        for stop in self._stop_events.values():
            stop.set()
        runners = list(self._runners.values())
        if runners:
            grace = max((deployment.app.grace_seconds for deployment in self._store), default=0.0)
            # A runner's cancellation handler SIGKILLs its process, so nothing outlives us.
            _, pending = await asyncio.wait(runners, timeout=min(grace, _CLOSE_TIMEOUT) + 1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)
        for network in list(self._networks.values()):
            await network.close()
        self._networks.clear()
        side_tasks = list(self._side_tasks)
        for task in side_tasks:
            task.cancel()
        if side_tasks:
            await asyncio.wait(side_tasks, timeout=_CLOSE_TIMEOUT)
        await self._webhooks.close()

    # ---- creation -------------------------------------------------------------------------

    def create(self, request: DeploymentRequest, base_url: str) -> Deployment:
        """Mint, place and start a deployment; `base_url` is where its container calls back."""
        options = self._options
        app = options.app_version(request.app_name)
        network: DeploymentNetwork | None = None
        try:
            if app.command is None:
                ports = self._simulated_ports(app.ports[0].protocol)
            else:
                network = self._ports.allocate(app.ports)
                ports = network.ports
        except OSError:
            raise PlatformError(503, "Couldn't Allocate Server") from None
        index = placement(self._active_cities(), options.location_capacity)
        if index is None:
            if network is not None:
                network.discard()
                self._ports.release(network)
            raise PlatformError(503, "Couldn't Allocate Server")
        credentials = self._store.mint()
        now = utcnow()
        deployment = Deployment(
            request_id=credentials.request_id,
            app_name=request.app_name,
            app_version=request.app_version,
            access_point_id=credentials.access_point_id,
            delete_token=credentials.delete_token,
            context_number=credentials.context_number,
            context_token=credentials.context_token,
            public_ip=options.public_ip,
            ports=ports,
            location=deployment_location(index),
            created_at=now,
            history_times=[now],
            user_env=dict(request.env_vars),
            app=app,
            webhooks=dict(request.webhooks),
            tags={name: Tag(name, now, now) for name in dict.fromkeys(request.tags)},
            container_command=request.container_command,
            container_arguments=request.container_arguments,
            isolation=None if network is None else str(network.isolation),
        )
        if request.legacy_log_storage is not None:
            enabled, name = request.legacy_log_storage
            deployment.default_logs = self.storages.default(enabled, name, app)
        deployment.env = build_env(deployment, base_url, None if network is None else network.env)
        self._store.add(deployment)
        if network is not None:
            self._networks[deployment.request_id] = network
        kind = "simulated" if network is None else f"backed ({network.isolation} isolation)"
        self._say(
            deployment,
            "created",
            f"{deployment.app_name} {deployment.app_version}, {kind}",
            app=deployment.app_name,
            version=deployment.app_version,
            backed=network is not None,
        )
        self.launch(deployment, base_url)
        return deployment

    def _simulated_ports(self, protocol: str) -> dict[str, PortMapping]:
        # Nothing runs, so nothing listens: the ports are only described.
        internal = self._options.game_port or pick_free_port()
        return {GAME_PORT_NAME: PortMapping(GAME_PORT_NAME, internal, external_port(), protocol)}

    def _active_cities(self) -> list[str]:
        return [str(item.location["city"]) for item in self._store if not item.terminated]

    def full_cities(self) -> set[str]:
        """Locations without room for one more deployment (`location_capacity`)."""
        return full_cities(self._active_cities(), self._options.location_capacity)

    def network_of(self, deployment: Deployment) -> DeploymentNetwork | None:
        return self._networks.get(deployment.request_id)

    # ---- status changes -------------------------------------------------------------------

    def _set_status(self, deployment: Deployment, status: Status) -> None:
        if deployment.status is status:
            return
        log.debug("%s: %s -> %s", deployment.request_id, deployment.status, status)
        deployment.last_status = deployment.status
        deployment.status = status
        deployment.history.append(status)
        deployment.history_times.append(utcnow())
        why = self._why(deployment, status)
        self._say(
            deployment, "status", f"{status}: {why}" if why else str(status), status=str(status)
        )
        # Wake every waiter, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
        event = {Status.READY: "ready", Status.ERROR: "error", Status.TERMINATED: "terminated"}
        if status in event:
            self._fire_webhook(deployment, event[status])

    def _say(self, deployment: Deployment, event: str, message: str, **fields: Any) -> None:
        if self.console is not None:
            self.console.event(deployment, event, message, **fields)

    def _why(self, deployment: Deployment, status: Status) -> str:
        """What the console says with a status: why READY or ERROR, why it ended."""
        if status is Status.READY:
            if deployment.command is None:
                return "simulated (no process to check)"
            checked = [
                f"{name} {port.protocol} {port.internal} at {deployment.public_ip}:{port.external}"
                for name, port in deployment.ports.items()
                if port.to_check
            ]
            return "listening on " + ", ".join(checked) if checked else "no port to check"
        if status is Status.ERROR:
            return deployment.error_detail
        if status is Status.TERMINATING:
            return deployment.end_reason
        if status is Status.TERMINATED:
            kept = "logs kept" if deployment.logs_kept else "logs discarded"
            return f"{deployment.end_reason or 'stopped'}; {kept} ({deployment.logs_note})"
        return ""

    def _fail(self, deployment: Deployment, detail: str) -> None:
        log.info("%s: %s", deployment.request_id, detail)
        deployment.error_detail = detail
        self._set_status(deployment, Status.ERROR)

    async def wait_for_status(self, deployment: Deployment, status: Status, within: float) -> bool:
        """True once `deployment` has reached `status` (now or earlier); False if `within`
        seconds pass first, or it can no longer reach it: it terminated, or it is in ERROR
        and `status` comes before (READY and the start-up walk are never reached after)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        before_error = (*STARTUP_WALK, Status.READY)
        while status not in deployment.history:
            remaining = deadline - loop.time()
            if deployment.terminated:
                return False
            if status in before_error and Status.ERROR in deployment.history:
                return False
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    # ---- stops ----------------------------------------------------------------------------

    def request_stop(
        self, deployment: Deployment, choice: LogChoice | None = None, by: str = "a stop"
    ) -> StopOutcome:
        if deployment.terminated:
            return StopOutcome.GONE
        first = not deployment.stop_requested
        if first:
            # The first stop decides what happens to the logs; a later one cannot undo it.
            deployment.stop_requested = True
            deployment.stop_logs = choice or LogChoice()
            deployment.end_reason = f"stopped by {by}"
        outcome = self._stop_outcome(deployment)
        note = (
            deployment.stop_logs.note
            if first and deployment.stop_logs
            else "the first stop's log choice stands"
        )
        self._say(
            deployment,
            "stop",
            f"{by}: {outcome.value}; {note}",
            by=by,
            outcome=outcome.value,
            container_log_storage=None if choice is None else choice.keep,
            storage=None if choice is None else choice.storage,
        )
        if outcome is StopOutcome.ACCEPTED:
            self._begin_terminating(deployment)
        elif outcome is StopOutcome.DEFERRED:
            deployment.stop_pending = True
        return outcome

    def _stop_outcome(self, deployment: Deployment) -> StopOutcome:
        if deployment.status is Status.TERMINATING or deployment.stop_pending:
            return StopOutcome.IN_PROGRESS
        if deployment.status in (Status.READY, Status.ERROR):
            return StopOutcome.ACCEPTED
        return StopOutcome.DEFERRED

    def _begin_terminating(self, deployment: Deployment) -> None:
        deployment.stop_pending = False
        self._set_status(deployment, Status.TERMINATING)
        self._stop_events[deployment.request_id].set()

    def _reached(self, deployment: Deployment, status: Status) -> None:
        """READY or ERROR: a stop that waited for one of them is carried out now."""
        self._set_status(deployment, status)
        if deployment.stop_pending:
            self._begin_terminating(deployment)

    # ---- the runner -----------------------------------------------------------------------

    def launch(self, deployment: Deployment, base_url: str = "") -> None:
        request_id = deployment.request_id
        self._stop_events[request_id] = asyncio.Event()
        if deployment.command is not None:
            self._samplers[request_id] = ProcessSampler()
        self._runners[request_id] = asyncio.create_task(
            self._run(deployment, base_url), name=f"emulator-deployment-{request_id}"
        )

    async def _step(self) -> None:
        await asyncio.sleep(self._options.status_step_seconds)

    async def _run(self, deployment: Deployment, base_url: str) -> None:
        request_id = deployment.request_id
        stop = self._stop_events[request_id]
        try:
            for status in STARTUP_WALK[1:]:
                await self._step()
                self._set_status(deployment, status)
            if deployment.command is None:
                await self._step()
                self._reached(deployment, Status.READY)
                await stop.wait()
            else:
                await self._run_backed(deployment, base_url, stop)
            await self._finish(deployment)
        except asyncio.CancelledError:
            run = self._runs.pop(request_id, None)
            if run is not None:
                run.kill_now()
            raise
        finally:
            network = self._networks.pop(request_id, None)
            if network is not None:
                self._ports.release(network)
                await network.close()

    async def _run_backed(self, deployment: Deployment, base_url: str, stop: asyncio.Event) -> None:
        network = self._networks[deployment.request_id]
        try:
            await network.start(base_url, self.api_site)
        except OSError as exc:
            self._fail(deployment, f"Network setup failed: {exc.strerror or exc}")
            self._reached(deployment, Status.ERROR)
            await stop.wait()
            return
        run = BackedRun(
            deployment,
            network,
            self._options.restart_delay_seconds,
            self._started,
            self._follow,
        )
        self._runs[deployment.request_id] = run
        if not await run.start():
            self._reached(deployment, Status.ERROR)
            await stop.wait()
            return
        problem = await run.readiness(stop)
        if problem is not None:
            self._fail(deployment, problem)
        self._reached(deployment, Status.ERROR if problem else Status.READY)
        if run.process is not None:
            await run.supervise(stop)
        else:
            await stop.wait()

    async def _finish(self, deployment: Deployment) -> None:
        """TERMINATING → TERMINATED: stop the process, then keep or discard the logs."""
        self._set_status(deployment, Status.TERMINATING)
        run = self._runs.pop(deployment.request_id, None)
        if run is not None and run.process is not None:
            await run.terminate()
        else:
            await self._step()
        choice = deployment.stop_logs or LogChoice()
        if choice.keep is None:
            choice = deployment.default_logs
        deployment.logs_kept = bool(choice.keep)
        deployment.logs_note = choice.note
        if not deployment.logs_kept:
            deployment.logs = None
            deployment.exit.crash_logs = None
        deployment.removal_time = utcnow()
        self._set_status(deployment, Status.TERMINATED)

    # ---- side tasks -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _follow(self, deployment: Deployment, chunk: bytes) -> None:
        if self.console is not None:
            self.console.output(deployment, chunk)

    def _started(self, deployment: Deployment, process: BackedProcess) -> None:
        exit_record = deployment.exit
        if exit_record.restart_count:
            self._say(
                deployment,
                "restart",
                f"restart {exit_record.restart_count} after exit code {exit_record.exit_code} "
                f"({exit_record.message}, restart policy {deployment.app.restart_policy})",
                restart_count=exit_record.restart_count,
                exit_code=exit_record.exit_code,
            )
        sampler = self._samplers.get(deployment.request_id)
        if sampler is not None:
            self._spawn(self._sample_loop(sampler, process), f"emulator-metrics-{process.pid}")

    async def _sample_loop(self, sampler: ProcessSampler, process: BackedProcess) -> None:
        while process.running:
            sampler.sample(process.pid)
            await asyncio.sleep(self._options.metrics_interval_seconds)

    def metrics(
        self, deployment: Deployment, start: datetime, end: datetime, step: timedelta | None
    ) -> list[Sample]:
        """The samples in [start, end] (one per `step`), a fresh one first when the process
        runs, so a read always reflects it as it is; one zero sample when simulated."""
        sampler = self._samplers.get(deployment.request_id)
        if sampler is None:
            return [zero_sample()]
        run = self._runs.get(deployment.request_id)
        if run is not None and run.process is not None and run.process.running:
            sampler.sample(run.process.pid)
        return select_samples(list(sampler.samples), start, end, step)

    def _fire_webhook(self, deployment: Deployment, event: str) -> None:
        url = deployment.webhooks.get(event)
        if url is not None:
            self._webhooks.send(url, status_view(deployment), event)
