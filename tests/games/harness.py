"""Test-side helpers for running the games: a pipe the test reads, and a game launcher.

Imported by tests as ``games.harness`` (pytest puts ``tests/`` on ``sys.path``). Everything here
waits for events under a timeout, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from sidecar.reaper import Reaper
from sidecar.supervisor import DEFAULT_DRAIN_TIMEOUT, GameProcess

GAMES = Path(__file__).resolve().parent
REPO = GAMES.parent.parent


def game_argv(script: str, *args: object) -> list[str]:
    """The command line that runs tests/games/`script` with this interpreter."""
    return [sys.executable, str(GAMES / script), *(str(arg) for arg in args)]


class PipeSink:
    """A pipe whose write end a game's output is relayed to; the test reads the other end.

    Reads on the event loop. `paused=True` leaves the pipe unread (a blocked stdout) until
    :meth:`resume`.
    """

    def __init__(self, *, paused: bool = False) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)
        self.data = bytearray()
        self.eof = False
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._reading = False
        if not paused:
            self.resume()

    def resume(self) -> None:
        if not self._reading and not self.eof:
            self._reading = True
            self._loop.add_reader(self.read_fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self.read_fd, 1 << 20)
        except BlockingIOError:
            return
        if chunk:
            self.data += chunk
        else:
            self.eof = True
            self._stop_reading()
        self._changed.set()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.read_fd)

    async def wait_for(self, needle: bytes, timeout: float = 10.0) -> None:
        """Wait until `needle` has arrived."""
        async with asyncio.timeout(timeout):
            while needle not in self.data:
                if self.eof:
                    raise AssertionError(f"{needle!r} never arrived: {bytes(self.data[-500:])!r}")
                self._changed.clear()
                await self._changed.wait()

    async def line(self, prefix: str, timeout: float = 10.0) -> str:
        """The first complete line starting with `prefix` (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for raw in bytes(self.data).split(b"\n")[:-1]:
                    if raw.startswith(prefix.encode()):
                        return raw.decode()
                if self.eof:
                    raise AssertionError(f"no line {prefix!r} in {bytes(self.data[-500:])!r}")
                self._changed.clear()
                await self._changed.wait()

    async def read_all(self, timeout: float = 30.0) -> bytes:
        """Close our write end and read to end-of-file (call after the game's output is done)."""
        self._close_write()
        self.resume()
        async with asyncio.timeout(timeout):
            while not self.eof:
                self._changed.clear()
                await self._changed.wait()
        return bytes(self.data)

    def _close_write(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close_read(self) -> None:
        """Stop reading: from now on writes to the pipe fail with EPIPE instead of blocking."""
        self._stop_reading()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1

    def close(self) -> None:
        """Close both ends; only once nothing relays to the write end any more."""
        self.close_read()
        self._close_write()


@dataclass
class RunningGame:
    """A started game and the pipes its stdout and stderr are relayed to."""

    game: GameProcess
    out: PipeSink
    err: PipeSink


class GameRunner:
    """Starts games under one reaper; :meth:`close` kills what is left and closes the pipes."""

    def __init__(self, reaper: Reaper | None) -> None:
        self.reaper = reaper
        self._games: list[GameProcess] = []
        self._sinks: list[PipeSink] = []

    def sink(self, *, paused: bool = False) -> PipeSink:
        sink = PipeSink(paused=paused)
        self._sinks.append(sink)
        return sink

    def start(
        self,
        argv: list[str],
        *,
        out: PipeSink | None = None,
        err: PipeSink | None = None,
        env: dict[str, str] | None = None,
        tail_lines: int = 50,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    ) -> RunningGame:
        """Start `argv` with its stdout and stderr relayed to two sinks (new ones by default)."""
        out = out or self.sink()
        err = err or self.sink()
        game = GameProcess(
            argv,
            env=env,
            stdout_fd=out.write_fd,
            stderr_fd=err.write_fd,
            tail_lines=tail_lines,
            reaper=self.reaper,
            drain_timeout=drain_timeout,
        )
        self._games.append(game)
        game.start()
        return RunningGame(game, out, err)

    def game(
        self,
        script: str,
        *args: object,
        out: PipeSink | None = None,
        tail_lines: int = 50,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    ) -> RunningGame:
        """Start tests/games/`script` with `args`."""
        return self.start(
            game_argv(script, *args), out=out, tail_lines=tail_lines, drain_timeout=drain_timeout
        )

    async def close(self) -> None:
        # Unread pipes first, so that no relay stays blocked on a full one; the write ends only
        # after the games' relays are done with them (a closed fd number could be reused).
        for sink in self._sinks:
            sink.close_read()
        for game in self._games:
            if game.pid is not None:
                await game.terminate(0.0, sig=signal.SIGKILL)
        for sink in self._sinks:
            sink.close()
