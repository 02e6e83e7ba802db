"""Backing processes: one run of a deployment's shell command, its output and its stop.

The command runs through the shell under a guardian (guardian.py) that owns its whole process
tree, with stdin closed and stdout/stderr captured as raw bytes. The container logs merge the
two streams line by line, as a container runtime's log driver does: a line of one stream is
never cut by the other's output, however the writes were split (a line longer than 16 KiB is
passed on in pieces; a last line without a newline is kept when the stream ends). Of a run's
raw output only the tail is kept for `crash_logs` (tail.py), so a chatty game cannot grow the
emulator's memory.

Stopping asks the guardian (over its lifeline socket) for SIGTERM to the command's process
group, then SIGKILL to the whole tree once the grace period is over, as a container runtime
does; `terminate()` is
idempotent. Nothing outlives the emulator, even a SIGKILLed one: the lifeline's end of file
makes the guardian kill the tree. With `pid_namespace` (netns isolation, root) the guardian is
also PID 1 of a PID namespace of its own (`unshare --pid`), so the kernel itself kills whatever
is left in it the moment the guardian goes, however that happens.

A frozen build (PyInstaller: no interpreter to run guardian.py with) runs the shell directly
in a session of its own and signals its process group, without that guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from sidecar.emulator.tail import Tail

# After the process exits, a grandchild may still hold the pipes open; stop reading after this.
_DRAIN_TIMEOUT = 1.0
_READ_CHUNK = 65536
# Docker's log driver splits lines at 16 KiB too; holding more would let a chatty stream that
# never ends a line grow without bound.
_MAX_PARTIAL_LINE = 16 * 1024
_GUARDIAN = str(Path(__file__).with_name("guardian.py"))
# After its `kill`, how long the guardian gets to empty its tree before it is SIGKILLed itself.
_GUARDIAN_MARGIN = 2.0
PID_NAMESPACE_PREFIX = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--")


def guardian_available() -> bool:
    """A frozen build has no interpreter to run guardian.py with."""
    return not getattr(sys, "frozen", False)


class BackedProcess:
    """A running (or finished) backing process and the readers of its output."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        on_output: Callable[[bytes], None],
        lifeline: socket.socket | None = None,
    ):
        self._process = process
        self._on_output = on_output
        self._lifeline = lifeline
        self._reported: int | None = None
        self.output = Tail()  # this run's raw output only (its tail), for crash_logs
        self._readers = [
            asyncio.create_task(self._read(stream))
            for stream in (process.stdout, process.stderr)
            if stream is not None
        ]

    @classmethod
    async def start(
        cls,
        command: str,
        env: dict[str, str],
        on_output: Callable[[bytes], None],
        *,
        prefix: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
        pid_namespace: bool = False,
    ) -> BackedProcess:
        """Start `command` through `/bin/sh -c` under its guardian, behind `prefix` (e.g.
        nsenter into a network namespace, which execs what follows in place) and, with
        `pid_namespace`, in a PID namespace of its own; raises OSError when it cannot start."""
        shell = ["/bin/sh", "-c", command]
        if not guardian_available():
            process = await cls._spawn([*(prefix or []), *shell], env, pass_fds)
            return cls(process, on_output)
        ours, theirs = socket.socketpair()
        try:
            wrapper = list(PID_NAMESPACE_PREFIX) if pid_namespace else []
            guardian = [sys.executable, "-I", _GUARDIAN, str(theirs.fileno()), "--"]
            process = await cls._spawn(
                [*(prefix or []), *wrapper, *guardian, *shell],
                env,
                (*pass_fds, theirs.fileno()),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(process, on_output, ours)

    @staticmethod
    async def _spawn(
        argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...]
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
            pass_fds=pass_fds,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.returncode is None

    async def _read(self, stream: asyncio.StreamReader) -> None:
        pending = b""  # the start of a line not yet ended, held back from the logs
        try:
            while chunk := await stream.read(_READ_CHUNK):
                self.output.append(chunk)
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if not cut:
                    if len(pending) < _MAX_PARTIAL_LINE:
                        continue
                    cut = len(pending)
                self._on_output(pending[:cut])
                pending = pending[cut:]
        finally:
            # End of stream, or the drain timeout cancelled us: what was said is kept.
            if pending:
                self._on_output(pending)

    async def wait(self) -> int:
        """Wait for the exit, then for the output to drain; returns asyncio's return code (the
        shell's, as its guardian reports it)."""
        code = await self._process.wait()
        _, pending = await asyncio.wait(self._readers, timeout=_DRAIN_TIMEOUT)
        for reader in pending:
            reader.cancel()
        reported = self._guardian_report()
        return code if reported is None else reported

    def _guardian_report(self) -> int | None:
        """The `exit <code>` line the guardian wrote before it exited, once it has."""
        if self._reported is None and self._lifeline is not None and not self.running:
            data = b""
            with contextlib.suppress(OSError):
                while chunk := self._lifeline.recv(4096):
                    data += chunk
            for line in data.splitlines():
                word, _, value = line.decode("ascii", "replace").partition(" ")
                if word == "exit" and value.lstrip("-").isdigit():
                    self._reported = int(value)
            self._lifeline.close()
            self._lifeline = None
        return self._reported

    def _tell(self, message: str) -> bool:
        """Send the guardian a command; False when it is gone (or there is none)."""
        if self._lifeline is None or not self.running:
            return False
        try:
            self._lifeline.send(message.encode() + b"\n")
        except OSError:
            return False
        return True

    def _signal_group(self, signum: int) -> None:
        # The group may already be gone (exited between our check and the signal): that is fine.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    def kill_leftovers(self) -> None:
        """After the shell's exit: what it left behind dies with the "container". A guardian
        has done that already (it exits only once its tree is empty)."""
        if self._lifeline is None and self._reported is None:
            self._signal_group(signal.SIGKILL)

    async def terminate(self, grace_seconds: float) -> int:
        """SIGTERM the group, SIGKILL the tree after `grace_seconds`; returns the return code."""
        if self.running or not all(reader.done() for reader in self._readers):
            # The guardian keeps the time itself; without one, the process group is signalled.
            if not self._tell(f"term {grace_seconds:f}"):
                self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._group_gone()), grace_seconds)
            except TimeoutError:
                if self._tell("kill"):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._group_gone()), _GUARDIAN_MARGIN)
                # A guardian that did not finish in time goes too (in a PID namespace, the
                # kernel then takes the rest of its tree with it).
                self._signal_group(signal.SIGKILL)
        return await self.wait()

    async def _group_gone(self) -> None:
        """The shell exited AND every process holding its output pipes closed them.

        `sh -c 'game'` may exit on SIGTERM before the game does: like a container runtime,
        a stop is only over when the game itself is gone, not just the shell in front of it.
        """
        await self._process.wait()
        if self._readers:
            await asyncio.wait(self._readers)

    def kill_now(self) -> None:
        """Last resort on cancellation: the emulator must never leave orphans behind."""
        if self._lifeline is not None:
            self._tell("kill")
            # Its end of file says the same, should the command not have got through.
            self._lifeline.close()
            self._lifeline = None
        else:
            self._signal_group(signal.SIGKILL)
        for reader in self._readers:
            reader.cancel()


def exit_description(code: int) -> tuple[int, str]:
    """asyncio's return code -> (container-style exit code, message) for crash_data."""
    if code < 0:
        signum = -code
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return 128 + signum, f"Container killed by {name}"
    if code == 0:
        return 0, "Container exited with code 0"
    return code, f"Container crashed with exit code {code}"
