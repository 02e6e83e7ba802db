"""The process side of one backed deployment: starting it in its network, the platform's port
readiness check, supervision under the app version's restart policy, and its stop.

`BackedRun` records what the platform reports about the process (`crash_data`: exit code,
message, restart count; `crash_logs`) on the deployment; the status changes it leads to are
the manager's (deployments.py), from what `readiness()` and `supervise()` return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from sidecar.emulator.network import DeploymentNetwork, Isolation
from sidecar.emulator.processes import BackedProcess, exit_description
from sidecar.emulator.store import Deployment

log = logging.getLogger(__name__)

# How often the port readiness check looks at the process's sockets.
_READINESS_POLL_SECONDS = 0.05
_CANNOT_START = {127: "command not found", 126: "command not executable"}


class BackedRun:
    def __init__(
        self,
        deployment: Deployment,
        network: DeploymentNetwork,
        restart_delay: float,
        on_start: Callable[[Deployment, BackedProcess], None],
        on_output: Callable[[Deployment, bytes], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self._network = network
        self._restart_delay = restart_delay
        self._on_start = on_start
        self._on_output = on_output
        # The current run of the process; None once it ended for good (or never started).
        self.process: BackedProcess | None = None

    async def start(self) -> bool:
        """Start the command in the deployment's network; False (and `error_detail`) when it
        cannot be started at all."""
        deployment = self.deployment
        assert deployment.command is not None
        logs = deployment.logs
        follow = self._on_output

        def on_output(chunk: bytes) -> None:
            deployment.remember_output(chunk)
            if logs is not None:
                logs.append(chunk)
            if follow is not None:
                follow(deployment, chunk)

        prefix, pass_fds = self._network.command_prefix()
        try:
            # The process sees the emulator's own environment plus what the platform injects.
            env = {**os.environ, **deployment.env}
            process = await BackedProcess.start(
                deployment.command,
                env,
                on_output,
                prefix=prefix,
                pass_fds=pass_fds,
                # Where namespaces are available (root), a PID namespace too: the kernel then
                # guarantees that nothing of the tree outlives its guardian.
                pid_namespace=self._network.isolation is Isolation.NETNS,
            )
        except (OSError, ValueError) as exc:
            # ValueError: an environment the OS cannot hold. The API refuses such variables;
            # should one get through anyway, the deployment ends in ERROR, never stuck.
            deployment.error_detail = f"Container failed to start: {exc}"
            return False
        deployment.pid = process.pid
        self.process = process
        self._on_start(deployment, process)
        return True

    async def readiness(self, stop: asyncio.Event) -> str | None:
        """The platform's port readiness check: None once every checked port is open, else
        the `error_detail` of the ERROR it ends in."""
        loop = asyncio.get_running_loop()
        budget = self.deployment.app.time_to_deploy
        deadline = loop.time() + budget
        while True:
            process = self.process
            if process is None:
                return self.deployment.error_detail or "Container is not running"
            missing = self._network.listening(process.pid)
            if not missing:
                return None
            if not process.running:
                problem = await self._exited_before_ready(process, deadline, stop)
                if problem is not None:
                    return problem
                continue
            if loop.time() >= deadline:
                ports = self.deployment.ports
                names = ", ".join(
                    f"{name} ({ports[name].protocol} {ports[name].internal})" for name in missing
                )
                return (
                    f"Port readiness check failed: nothing listening on {names} "
                    f"within time_to_deploy ({budget:g} s)"
                )
            await asyncio.sleep(min(_READINESS_POLL_SECONDS, max(0.0, deadline - loop.time())))

    async def _exited_before_ready(
        self, process: BackedProcess, deadline: float, stop: asyncio.Event
    ) -> str | None:
        """The process ended during the readiness check: restart it (None) when the policy and
        the time left allow, else say why the deployment is in ERROR."""
        code = await process.wait()
        process.kill_leftovers()
        self.process = None
        self._record_exit(process, code)
        exit_code, _ = exit_description(code)
        if exit_code in _CANNOT_START:
            last = _last_line(process.output.data)
            return (
                f"Container failed to start: exit code {exit_code} "
                f"({_CANNOT_START[exit_code]})" + (f": {last}" if last else "")
            )
        loop = asyncio.get_running_loop()
        if not self._should_restart(code) or loop.time() + self._restart_delay >= deadline:
            return f"Container exited with code {exit_code} before its ports were ready"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self._restart_delay)
        self.deployment.exit.restart_count += 1
        if not await self.start():
            return self.deployment.error_detail
        return None

    async def supervise(self, stop: asyncio.Event) -> None:
        """Wait for a stop or an exit; restart per policy. Returns when the run must end."""
        while self.process is not None:
            process = self.process
            exited = asyncio.create_task(process.wait())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({exited, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not exited.done():
                exited.cancel()
                return  # stop requested: terminate() ends the process
            code = exited.result()
            # Leftovers of the group (daemonised helpers) die with the "container".
            process.kill_leftovers()
            if stop.is_set():
                return
            self._record_exit(process, code)
            if not self._should_restart(code):
                self.process = None
                policy = self.deployment.app.restart_policy
                self.deployment.end_reason = (
                    f"{self.deployment.exit.message} (restart policy {policy})"
                )
                return
            try:
                await asyncio.wait_for(stop.wait(), self._restart_delay)
                return
            except TimeoutError:
                pass
            self.deployment.exit.restart_count += 1
            if not await self.start():
                self.process = None
                return

    async def terminate(self) -> None:
        """SIGTERM, SIGKILL after the app version's grace period. A stopped process is not a
        crash: crash_data keeps describing the last crash."""
        if self.process is not None:
            await self.process.terminate(self.deployment.app.grace_seconds)

    def kill_now(self) -> None:
        """Last resort on cancellation: the emulator must never leave orphans behind."""
        if self.process is not None:
            self.process.kill_now()

    def _record_exit(self, process: BackedProcess, code: int) -> None:
        record = self.deployment.exit
        record.exit_code, record.message = exit_description(code)
        if record.exit_code != 0:
            record.crash_logs = process.output.kept()
        log.info("%s: %s", self.deployment.request_id, record.message)

    def _should_restart(self, code: int) -> bool:
        policy = self.deployment.app.restart_policy
        return policy == "always" or (policy == "on_failure" and code != 0)


def _last_line(output: bytes | bytearray) -> str:
    lines = bytes(output).decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1].strip()[:200] if lines else ""
