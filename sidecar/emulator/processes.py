"""Backing processes: one run of a deployment's shell command, its output and its stop.

The command runs through the shell in its own session (so its process group holds the game and
anything it spawns), with stdin closed and stdout/stderr captured as raw bytes. The container
logs merge the two streams line by line, as a container runtime's log driver does: a line of one
stream is never cut by the other's output, however the writes were split (a line longer than
16 KiB is passed on in pieces; a last line without a newline is kept when the stream ends).
Stopping sends SIGTERM to the whole group, then SIGKILL once the grace period is over, as a
container runtime does. `terminate()` is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

# After the process exits, a grandchild may still hold the pipes open; stop reading after this.
_DRAIN_TIMEOUT = 1.0
_READ_CHUNK = 65536
# Docker's log driver splits lines at 16 KiB too; holding more would let a chatty stream that
# never ends a line grow without bound.
_MAX_PARTIAL_LINE = 16 * 1024


class BackedProcess:
    """A running (or finished) backing process and the readers of its output."""

    def __init__(self, process: asyncio.subprocess.Process, on_output: Callable[[bytes], None]):
        self._process = process
        self._on_output = on_output
        self.output = bytearray()  # this run's raw output only, for crash_logs
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
    ) -> BackedProcess:
        """Start `command` through `/bin/sh -c`, behind `prefix` (e.g. nsenter into a network
        namespace, which execs the shell in place); raises OSError when it cannot start."""
        process = await asyncio.create_subprocess_exec(
            *(prefix or []),
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        return cls(process, on_output)

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
                self.output += chunk
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
        """Wait for the exit, then for the output to drain; returns asyncio's return code."""
        code = await self._process.wait()
        _, pending = await asyncio.wait(self._readers, timeout=_DRAIN_TIMEOUT)
        for reader in pending:
            reader.cancel()
        return code

    def signal_group(self, signum: int) -> None:
        # The group may already be gone (exited between our check and the signal): that is fine.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    async def terminate(self, grace_seconds: float) -> int:
        """SIGTERM the group, SIGKILL it after `grace_seconds`; returns the return code."""
        if self.running or not all(reader.done() for reader in self._readers):
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._group_gone()), grace_seconds)
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
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
        self.signal_group(signal.SIGKILL)
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
