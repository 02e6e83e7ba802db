"""Deployment behaviour: the status walk, backing processes, restart policy, stops, webhooks.

`DeploymentManager` owns every background task of the emulator's deployments: one runner task
per deployment (created in `launch`, cancelled and awaited in `close`), a metrics sampler per
backed deployment and the fire-and-forget webhook posts. A runner walks
INITIALIZING → SEEKING → SEEKED → SCANNING → DEPLOYING → READY, one `status_step_seconds` per
step, then either waits for a stop (simulated deployment) or supervises the backing process
under the restart policy, and finally TERMINATING → TERMINATED.

Stops follow the platform's rules: accepted at once when READY or ERROR, deferred until READY
otherwise, and whether the logs survive is decided at TERMINATED from the stop's
`container_log_storage` choice or the deployment's default.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from sidecar.emulator.environment import GAME_PORT_NAME, build_env, external_port, pick_free_port
from sidecar.emulator.errors import PlatformError
from sidecar.emulator.locations import deployment_location
from sidecar.emulator.metrics import ProcessSampler, Sample, select_samples, zero_sample
from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.processes import BackedProcess, exit_description
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

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 10.0
# Upper bound of each shutdown step; the stop grace is capped at it too, so exit is prompt.
_CLOSE_TIMEOUT = 5.0


class StopOutcome(enum.Enum):
    ACCEPTED = "accepted"  # READY/ERROR: termination started now
    DEFERRED = "deferred"  # not READY yet: carried out when READY is reached
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
    default_keep_logs: bool = False
    container_command: str = ""
    container_arguments: str = ""


class DeploymentManager:
    """Creates and runs deployments; the only writer of a deployment's status."""

    def __init__(self, options: EmulatorOptions, store: DeploymentStore) -> None:
        self._options = options
        self._store = store
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._stop_events: dict[str, asyncio.Event] = {}
        self._processes: dict[str, BackedProcess] = {}
        self._samplers: dict[str, ProcessSampler] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
        )

    async def close(self) -> None:
        """Shutdown: stop every deployment the normal way (SIGTERM, SIGKILL after the grace),
        then cancel what is left — runners still in their start-up walk, webhooks."""
        for stop in self._stop_events.values():
            stop.set()
        runners = list(self._runners.values())
        if runners:
            grace = min(self._options.stop_grace_seconds, _CLOSE_TIMEOUT)
            # A runner's cancellation handler SIGKILLs its process, so nothing outlives us.
            _, pending = await asyncio.wait(runners, timeout=grace + 1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)
        side_tasks = list(self._side_tasks)
        for task in side_tasks:
            task.cancel()
        if side_tasks:
            await asyncio.wait(side_tasks, timeout=_CLOSE_TIMEOUT)
        if self._session is not None:
            await self._session.close()

    # ---- creation -------------------------------------------------------------------------

    def create(self, request: DeploymentRequest, base_url: str) -> Deployment:
        """Mint, place and start a deployment; `base_url` is where its container calls back."""
        options = self._options
        try:
            internal = options.game_port or pick_free_port()
        except OSError:
            raise PlatformError(503, "Couldn't Allocate Server") from None
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
            ports={
                GAME_PORT_NAME: PortMapping(
                    GAME_PORT_NAME, internal, external_port(), options.game_port_protocol
                )
            },
            location=deployment_location(),
            created_at=now,
            user_env=dict(request.env_vars),
            command=options.apps.get(request.app_name),
            default_keep_logs=request.default_keep_logs,
            webhooks=dict(request.webhooks),
            tags={name: Tag(name, now, now) for name in dict.fromkeys(request.tags)},
            container_command=request.container_command,
            container_arguments=request.container_arguments,
        )
        deployment.env = build_env(deployment, base_url)
        self._store.add(deployment)
        self.launch(deployment)
        return deployment

    # ---- status changes -------------------------------------------------------------------

    def _set_status(self, deployment: Deployment, status: Status) -> None:
        if deployment.status is status:
            return
        log.debug("%s: %s -> %s", deployment.request_id, deployment.status, status)
        deployment.last_status = deployment.status
        deployment.status = status
        deployment.history.append(status)
        # Wake every waiter, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
        event = {Status.READY: "ready", Status.ERROR: "error", Status.TERMINATED: "terminated"}
        if status in event:
            self._fire_webhook(deployment, event[status])

    async def wait_for_status(self, deployment: Deployment, status: Status, within: float) -> bool:
        """True once `deployment` has reached `status` (now or earlier); False if `within`
        seconds pass first or it terminated without reaching it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while status not in deployment.history:
            remaining = deadline - loop.time()
            if deployment.terminated:
                return False
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    # ---- stops ----------------------------------------------------------------------------

    def request_stop(
        self, deployment: Deployment, keep_logs: bool | None, storage_name: str | None = None
    ) -> StopOutcome:
        if deployment.terminated:
            return StopOutcome.GONE
        if keep_logs is not None:
            deployment.keep_logs_choice = keep_logs
            deployment.log_storage_name = storage_name
        if deployment.status is Status.TERMINATING or deployment.stop_pending:
            return StopOutcome.IN_PROGRESS
        if deployment.status in (Status.READY, Status.ERROR):
            self._begin_terminating(deployment)
            return StopOutcome.ACCEPTED
        deployment.stop_pending = True
        return StopOutcome.DEFERRED

    def _begin_terminating(self, deployment: Deployment) -> None:
        deployment.stop_pending = False
        self._set_status(deployment, Status.TERMINATING)
        self._stop_events[deployment.request_id].set()

    # ---- the runner -----------------------------------------------------------------------

    def launch(self, deployment: Deployment) -> None:
        request_id = deployment.request_id
        self._stop_events[request_id] = asyncio.Event()
        if deployment.command is not None:
            self._samplers[request_id] = ProcessSampler()
        self._runners[request_id] = asyncio.create_task(
            self._run(deployment), name=f"emulator-deployment-{request_id}"
        )

    async def _step(self) -> None:
        await asyncio.sleep(self._options.status_step_seconds)

    async def _run(self, deployment: Deployment) -> None:
        request_id = deployment.request_id
        stop = self._stop_events[request_id]
        try:
            for status in STARTUP_WALK[1:]:
                await self._step()
                self._set_status(deployment, status)
            if deployment.command is not None and not await self._start_process(deployment):
                self._set_status(deployment, Status.ERROR)
                if deployment.stop_pending:
                    self._begin_terminating(deployment)
                await stop.wait()
            else:
                await self._step()
                self._set_status(deployment, Status.READY)
                if deployment.stop_pending:
                    self._begin_terminating(deployment)
                if deployment.command is None:
                    await stop.wait()
                else:
                    await self._supervise(deployment, stop)
            await self._finish(deployment)
        except asyncio.CancelledError:
            process = self._processes.pop(request_id, None)
            if process is not None:
                process.kill_now()
            raise

    async def _start_process(self, deployment: Deployment) -> bool:
        assert deployment.command is not None
        logs = deployment.logs

        def on_output(chunk: bytes) -> None:
            if logs is not None:
                logs.extend(chunk)

        try:
            # The process sees the emulator's own environment plus what the platform injects.
            env = {**os.environ, **deployment.env}
            process = await BackedProcess.start(deployment.command, env, on_output)
        except OSError as exc:
            deployment.error_detail = f"Container failed to start: {exc}"
            return False
        deployment.pid = process.pid
        self._processes[deployment.request_id] = process
        self._start_sampling(deployment)
        return True

    async def _supervise(self, deployment: Deployment, stop: asyncio.Event) -> None:
        """Wait for a stop or an exit; restart per policy. Returns when the run must end."""
        while True:
            process = self._processes[deployment.request_id]
            exited = asyncio.create_task(process.wait())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not exited.done():
                exited.cancel()
                return  # stop requested: _finish terminates the process
            code = exited.result()
            # Leftovers of the group (daemonised helpers) die with the "container".
            process.signal_group(signal.SIGKILL)
            if stop.is_set():
                return
            self._record_exit(deployment, process, code)
            if not self._should_restart(code):
                return
            try:
                await asyncio.wait_for(stop.wait(), self._options.restart_delay_seconds)
                return
            except TimeoutError:
                pass
            deployment.exit.restart_count += 1
            if not await self._start_process(deployment):
                return

    def _record_exit(self, deployment: Deployment, process: BackedProcess, code: int) -> None:
        exit_code, message = exit_description(code)
        deployment.exit.exit_code = exit_code
        deployment.exit.message = message
        if exit_code != 0:
            deployment.exit.crash_logs = bytes(process.output)
        log.info("%s: %s", deployment.request_id, message)

    def _should_restart(self, code: int) -> bool:
        policy = self._options.restart_policy
        return policy == "always" or (policy == "on_failure" and code != 0)

    async def _finish(self, deployment: Deployment) -> None:
        """TERMINATING → TERMINATED: stop the process, then keep or discard the logs."""
        self._set_status(deployment, Status.TERMINATING)
        process = self._processes.pop(deployment.request_id, None)
        if process is not None:
            # A stopped process is not a crash: crash_data keeps describing the last crash.
            await process.terminate(self._options.stop_grace_seconds)
        else:
            await self._step()
        keep = deployment.keep_logs_choice
        if keep is None:
            keep = deployment.default_keep_logs
        deployment.logs_kept = keep
        if not keep:
            deployment.logs = None
            deployment.exit.crash_logs = None
        deployment.removal_time = utcnow()
        self._set_status(deployment, Status.TERMINATED)

    # ---- side tasks -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _start_sampling(self, deployment: Deployment) -> None:
        sampler = self._samplers.get(deployment.request_id)
        process = self._processes.get(deployment.request_id)
        if sampler is None or process is None:
            return
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
        process = self._processes.get(deployment.request_id)
        if process is not None and process.running:
            sampler.sample(process.pid)
        return select_samples(list(sampler.samples), start, end, step)

    def _fire_webhook(self, deployment: Deployment, event: str) -> None:
        url = deployment.webhooks.get(event)
        if url is None or self._session is None:
            return
        body = status_view(deployment)
        self._spawn(self._post_webhook(url, body), f"emulator-webhook-{event}")

    async def _post_webhook(self, url: str, body: dict[str, Any]) -> None:
        assert self._session is not None
        # The platform ignores webhook failures; so do we (but leave a trace for debugging).
        try:
            async with self._session.post(url, json=body) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("webhook %s failed: %r", url, exc)
