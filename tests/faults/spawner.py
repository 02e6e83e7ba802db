"""Sidecar processes for the matrices, forked by `forkserver.py` (the sidecar imported once) or,
with FAULT_MATRIX_SPAWN=exec, started as `python -m sidecar`; and pipes read as bytes arrive.

Every matrix (platform answers, signals, result receivers) starts its sidecars through these, so
that none imports another.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import base_env

HERE = Path(__file__).resolve().parent


class OutputPipe:
    """A pipe for a child's stdout or stderr, read on the loop as bytes arrive and readable on
    demand (`drain`): what it holds after a drain is all the child had written by then."""

    def __init__(self, on_data: Callable[[], None] | None = None) -> None:
        self._read_fd, self.write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self.data = bytearray()
        self.closed = asyncio.Event()
        self._grew = asyncio.Event()
        self._on_data = on_data
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._read_fd, self.drain)

    def child_started(self) -> None:
        os.close(self.write_fd)
        self.write_fd = -1

    def drain(self) -> None:
        while self._read_fd >= 0:
            try:
                chunk = os.read(self._read_fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                self.close()
                return
            self.data += chunk
            self._grew.set()
            if self._on_data is not None:
                self._on_data()

    async def until(self, predicate: Callable[[bytes], bool]) -> bool:
        """Wait until `predicate(data)` holds; False if the pipe closed first."""
        while not predicate(bytes(self.data)):
            if self.closed.is_set():
                return False
            self._grew.clear()
            await self._grew.wait()
        return True

    def close(self) -> None:
        if self._read_fd >= 0:
            self._loop.remove_reader(self._read_fd)
            os.close(self._read_fd)
            self._read_fd = -1
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        self.closed.set()
        self._grew.set()  # wakes a waiter for output that will never come


class ForkedProcess:
    """A sidecar forked by the fork server: the subset of asyncio.subprocess.Process used."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = asyncio.Event()

    def ended(self, returncode: int) -> None:
        self.returncode = returncode
        self._ended.set()

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Spawner:
    """Starts sidecar processes: forked by `forkserver.py` (the default), or exec'd as
    `python -m sidecar` with FAULT_MATRIX_SPAWN=exec."""

    def __init__(self, *, probe: bool = False) -> None:
        self.fork = os.environ.get("FAULT_MATRIX_SPAWN", "fork") != "exec"
        # With `probe`, each forked sidecar marks on stderr, in order, every DELETE it sends and
        # the moment its SIGTERM handler returned (the fault matrix's `Probe`).
        self.probe = probe
        self._server: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._ids = itertools.count()
        self._spawning: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._forked: dict[int, ForkedProcess] = {}
        self._loop = asyncio.get_running_loop()

    async def __aenter__(self) -> Spawner:
        if not self.fork:
            return self
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._server = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "forkserver.py"),
                str(theirs.fileno()),
                pass_fds=[theirs.fileno()],
                env=base_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        ours.setblocking(False)
        self._control = ours
        self._loop.add_reader(ours.fileno(), self._on_message)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._control is not None:
            self._loop.remove_reader(self._control.fileno())
            self._control.close()  # the server ends when its socket does
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait(), 5)
            except TimeoutError:
                self._server.kill()
                await self._server.wait()

    async def spawn(
        self, argv: list[str], env: dict[str, str], stdout: int, stderr: int
    ) -> asyncio.subprocess.Process | ForkedProcess:
        if not self.fork:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sidecar",
                *argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        assert self._control is not None
        request = next(self._ids)
        forked = self._loop.create_future()
        self._spawning[request] = forked
        spec: dict[str, object] = {"id": request, "argv": argv, "env": env}
        if self.probe:
            spec["probe"] = True
        message = json.dumps(spec).encode()
        with open(os.devnull, "rb") as stdin:
            socket.send_fds(self._control, [message], [stdin.fileno(), stdout, stderr])
        async with asyncio.timeout(10):
            return await forked

    def _on_message(self) -> None:
        assert self._control is not None
        while True:
            try:
                data = self._control.recv(1 << 16)
            except BlockingIOError:
                return
            if not data:
                self._loop.remove_reader(self._control.fileno())
                for waiting in self._spawning.values():
                    waiting.set_exception(RuntimeError("the fork server ended"))
                return
            message = json.loads(data)
            if "id" in message:
                # Registered here, not when spawn() resumes: the exit may be the next message.
                process = self._forked[message["pid"]] = ForkedProcess(message["pid"])
                self._spawning.pop(message["id"]).set_result(process)
            else:
                self._forked.pop(message["pid"]).ended(message["returncode"])
