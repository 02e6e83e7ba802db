"""Run mode: the game as our child process, its output relay, its signals and its exit.

Owns spawning the game, the two output relays (:mod:`sidecar.relay`), signalling the game's
process group, and turning its wait status into a :class:`~sidecar.game.GameExit`. Reaping is
delegated to :mod:`sidecar.reaper`, which owns every ``waitpid`` in the process.
:class:`ChildGame` is run mode's :class:`~sidecar.game.Game`, the agent's view of all this.
Ending what the game leaves behind (descendants that outlive it) is :mod:`sidecar.leftovers`.

Why this shape
--------------
* The game is spawned with ``subprocess.Popen`` rather than ``asyncio.create_subprocess_exec``,
  whose child watcher would race the reaper for the exit status. We never call the Popen's
  ``wait``/``poll``: the reaper reaps the game and we hand the status back to the Popen object.
  Popen reports exec failures as ``OSError`` at once (they become exit codes 127 / 126, as in a
  shell), closes every inherited fd but the pipes, and gives the game back the SIGPIPE and
  SIGXFSZ dispositions Python ignores. (``os.posix_spawn`` would leave glibc's two internal
  signals, 32 and 33, ignored in the game.)
* The game gets its own session (``setsid``), so it and everything it starts share a process
  group we can signal as a whole, and a Ctrl-C on our terminal is not delivered to it twice.
  It inherits our stdin (console commands, as under any init) and the environment given.
* The command is looked up in the game's own ``PATH`` (as a shell given that environment would),
  which also lets us tell "not found" (127) from "found but not executable" (126).
* :meth:`GameProcess.wait` returns only after the game has exited *and* both relays have written
  every byte: the agent writes its stop record to stdout right after, and it must come last.
  The one exception is a relay stuck writing to our stdout or stderr: once one of its writes has
  waited STALLED_AFTER (0.25 s) it is given up on (it keeps running), because a stalled log
  reader must never delay the stop by more than 1 s (SPEC §11).
* When the game's stdout goes to our fd 1, the relay writes it through the process's
  :class:`sidecar.output.OrderedOutput`, so that the agent's records keep to lines of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

import psutil

from sidecar.errors import GameStartError
from sidecar.game import GameExit, GameStats
from sidecar.leftovers import Identity, current_children, end_descendants
from sidecar.output import STALLED_AFTER, OrderedOutput, stdout_output
from sidecar.reaper import Reaper
from sidecar.relay import OutputRelay, merge_tails, open_output_pipe
from sidecar.watchers import RecentStats

log = logging.getLogger(__name__)
# The lines the agent logged before the game moved here keep the agent's logger name.
lifecycle_log = logging.getLogger("sidecar")

# After the game exits, an orphan it left behind may hold its output pipes open forever; wait at
# most this long for end-of-file, then copy what is buffered and stop reading.
DEFAULT_DRAIN_TIMEOUT = 1.0
# While relays finish after the game's exit: how often to look whether one is stuck in a write.
RELAY_CHECK_INTERVAL = 0.05


class GameProcess:
    """The supervised game: start it, relay its output, signal it, learn how it ended.

    Use it from the event-loop thread. `reaper` is the process's :class:`Reaper` (the agent owns
    one for its whole life in run mode, so orphans are reaped until the sidecar exits); without
    one, the installed reaper is used, or a private one that lives until the game has exited.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
        tail_lines: int = 50,
        reaper: Reaper | None = None,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        stdout_writer: OrderedOutput | None = None,
    ) -> None:
        """`stdout_writer` orders the game's stdout with records; by default the process's own
        when `stdout_fd` is 1, none otherwise."""
        if not argv:
            raise ValueError("the game command is empty")
        self.argv = tuple(argv)
        self._env = dict(os.environ if env is None else env)
        self._stdout_fd = stdout_fd
        self._stderr_fd = stderr_fd
        self._tail_lines = tail_lines
        self._reaper = reaper
        self._owns_reaper = False
        self._drain_timeout = drain_timeout
        if stdout_writer is None and stdout_fd == 1:
            stdout_writer = stdout_output()
        self._stdout_writer = stdout_writer
        self._pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._status: asyncio.Future[int] | None = None
        self._relays: list[OutputRelay] = []
        self._relays_done: list[asyncio.Future[None]] = []
        self._exit_task: asyncio.Task[GameExit] | None = None
        self._terminate_task: asyncio.Task[GameExit] | None = None

    @property
    def pid(self) -> int | None:
        """The game's pid once started (also its process group and session id)."""
        return self._pid

    def start(self) -> int:
        """Spawn the game and start relaying; returns its pid.

        Raises GameStartError with exit code 127 when the command is not found and 126 when it
        cannot be executed. Must be called with the event loop running.
        """
        if self._pid is not None:
            raise RuntimeError("the game was already started")
        asyncio.get_running_loop()  # fail before spawning anything if there is no loop
        path = _resolve_command(self.argv[0], self._env.get("PATH", os.defpath))
        reaper = self._reaper or Reaper.active()
        if reaper is None:
            reaper = Reaper()
            reaper.install()
            self._owns_reaper = True
        elif not reaper.installed:
            raise RuntimeError("the Reaper given to GameProcess is not installed")
        self._reaper = reaper

        out_read, out_write = open_output_pipe()
        err_read, err_write = open_output_pipe()
        try:
            self._popen = subprocess.Popen(
                self.argv,
                executable=path,
                env=self._env,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
            )
        except BaseException as exc:
            for fd in (out_read, err_read):
                os.close(fd)
            if self._owns_reaper:
                reaper.close()
            if isinstance(exc, OSError):
                raise _start_error(self.argv[0], path, exc) from exc
            raise
        finally:
            # The game holds the write ends now; ours would keep end-of-file from ever coming.
            os.close(out_write)
            os.close(err_write)
        pid = self._popen.pid
        self._pid = pid
        # Registered before the loop runs again, so the exit cannot be reaped unnoticed.
        self._status = reaper.watch(pid)
        sequence = itertools.count()
        self._relays = [
            OutputRelay(
                f"{pid} {name}",
                fd,
                dest,
                sequence=sequence,
                tail_lines=self._tail_lines,
                output=output,
            )
            for name, fd, dest, output in (
                ("stdout", out_read, self._stdout_fd, self._stdout_writer),
                ("stderr", err_read, self._stderr_fd, None),
            )
        ]
        self._relays_done = [relay.start() for relay in self._relays]
        return pid

    async def wait(self) -> GameExit:
        """Wait for the exit and for every byte of output to be relayed."""
        if self._exit_task is None:
            self._exit_task = asyncio.ensure_future(self._wait_exit())
        # Shielded: a cancelled waiter must not cancel the shared wait for the others.
        return await asyncio.shield(self._exit_task)

    def send_signal(self, sig: int) -> None:
        """Signal the game's process group; nothing happens once the game has been reaped."""
        status = self._require_started()
        if status.done():
            # Its pid (= group id) may already belong to someone else.
            return
        assert self._pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._pid, sig)

    async def terminate(self, grace: float, sig: int = signal.SIGTERM) -> GameExit:
        """Send `sig` to the group, SIGKILL it after `grace` seconds; returns the exit.

        Idempotent: concurrent and later calls share the first call's escalation.
        """
        self._require_started()
        if self._terminate_task is None:
            self._terminate_task = asyncio.ensure_future(self._terminate(grace, sig))
        return await asyncio.shield(self._terminate_task)

    def pids(self) -> list[int]:
        """The game and its live descendants, including orphans it left in its session.

        Orphans are re-parented to us (PID 1 or subreaper), so they are found among our
        descendants by the session the game opened.
        """
        if self._pid is None or self._status is None or self._status.done():
            return []
        try:
            game = psutil.Process(self._pid)
            tree = [self._pid, *(child.pid for child in game.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []
        known = set(tree)
        with contextlib.suppress(psutil.NoSuchProcess):
            for process in psutil.Process().children(recursive=True):
                if process.pid not in known and _session_of(process.pid) == self._pid:
                    tree.append(process.pid)
        return tree

    def _require_started(self) -> asyncio.Future[int]:
        if self._status is None:
            raise RuntimeError("the game has not been started")
        return self._status

    async def _wait_exit(self) -> GameExit:
        status = await asyncio.shield(self._require_started())
        if self._popen is not None:
            # Reaped by the reaper, not by Popen: tell it, or it would warn it is still running.
            self._popen.returncode = os.waitstatus_to_exitcode(status)
        await self._wait_relays()
        if self._owns_reaper and self._reaper is not None:
            self._reaper.close()
        return GameExit.from_wait_status(status, merge_tails(self._relays, self._tail_lines))

    async def _wait_relays(self) -> None:
        """Wait for the relays to reach end-of-file and write what they read, but not for one
        stuck writing to a stdout or stderr nobody reads (SPEC §11: at most 1 s of delay)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = set(self._relays_done)
        drain_requested = False
        while pending:
            _, pending = await asyncio.wait(pending, timeout=RELAY_CHECK_INTERVAL)
            if not pending:
                return
            if any(relay.blocked_for() > STALLED_AFTER for relay in self._relays):
                log.warning(
                    "game output not written: our stdout/stderr is not being read; going on "
                    "without it"
                )
                return
            waited = loop.time() - started
            if not drain_requested and waited >= self._drain_timeout:
                # The game is dead but something it left behind still holds the pipe open:
                # copy what is buffered and stop reading.
                drain_requested = True
                for relay in self._relays:
                    relay.request_drain()
            elif waited >= 2 * self._drain_timeout:
                log.warning(
                    "game output still not relayed after %.3gs; going on without it", waited
                )
                return

    async def _terminate(self, grace: float, sig: int) -> GameExit:
        status = self._require_started()
        self.send_signal(sig)
        try:
            await asyncio.wait_for(asyncio.shield(status), timeout=grace)
        except TimeoutError:
            self.send_signal(signal.SIGKILL)
        return await self.wait()


class ChildGame:
    """Run mode's Game: the command as our child, with one reaper for the agent's whole life
    (orphans of the game that die while the self-stop is still retrying, minutes, must be
    reaped too, not only the game).

    The reaper makes us the child subreaper of the game's tree, so whatever the game leaves
    behind (even a process that left its group and session with ``setsid``) stays our
    descendant, and :meth:`sweep` ends it. In run mode the game is the only thing the sidecar
    process starts, so every descendant is the game's; children this process already had when
    the game started (an embedding program's) are spared, with their own descendants.
    """

    mode = "run mode"
    name = "game"
    kind = "game"

    def __init__(
        self,
        argv: Sequence[str],
        environ: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = tuple(argv)
        self._environ = dict(environ)
        self._process: GameProcess | None = None
        self._exit: GameExit | None = None
        self._reaper: Reaper | None = None
        self._stats = RecentStats(clock)
        self._spared: frozenset[Identity] = frozenset()
        self._sweep_task: asyncio.Task[int] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exit(self) -> GameExit | None:
        return self._exit

    @property
    def ours(self) -> bool:
        return self._process is not None

    def start(self, api_env: Mapping[str, str]) -> None:
        if Reaper.active() is None:
            self._reaper = Reaper()
            self._reaper.install()
        self._spared = current_children()
        process = GameProcess(self.argv, env={**self._environ, **api_env}, reaper=Reaper.active())
        try:
            pid = process.start()
        except GameStartError as exc:
            self._exit = GameExit(returncode=exc.exit_code, signal=None, tail=(str(exc),))
            raise
        self._process = process
        lifecycle_log.info("game started (pid %d): %s", pid, " ".join(self.argv))

    async def wait(self) -> GameExit:
        if self._process is None:
            raise RuntimeError("the game has not been started")
        self._exit = await self._process.wait()
        return self._exit

    def pids(self) -> list[int]:
        return self._process.pids() if self._process is not None else []

    def stats(self) -> GameStats | None:
        if self._process is None or self._process.pid is None or self._exit is not None:
            return None
        return self._stats.sample(self._process.pid)

    def send_signal(self, sig: int) -> None:
        if self._process is not None:
            self._process.send_signal(sig)

    async def terminate(self, grace: float, sig: int = signal.SIGTERM) -> GameExit | None:
        if self._process is None:
            return self._exit
        self._exit = await self._process.terminate(grace, sig)
        return self._exit

    async def sweep(self, grace: float) -> None:
        """End every descendant the game left behind; concurrent calls share one sweep, a later
        call looks again."""
        if self._process is None:
            return
        if self._sweep_task is None or self._sweep_task.done():
            self._sweep_task = asyncio.ensure_future(end_descendants(self._spared, grace))
        await asyncio.shield(self._sweep_task)

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None


def _resolve_command(command: str, search_path: str) -> str:
    """The file to execute for `command`, looked up in `search_path` when it has no slash."""
    if "/" in command:
        return command  # exec reports a missing or non-executable file precisely
    not_executable = None
    for directory in search_path.split(os.pathsep):
        candidate = os.path.join(directory or ".", command)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            not_executable = not_executable or candidate
    if not_executable is not None:
        raise GameStartError(f"cannot start the game: {not_executable} is not executable", 126)
    raise GameStartError(
        f"cannot start the game: {command!r} not found in PATH ({search_path})", 127
    )


def _start_error(command: str, path: str, exc: OSError) -> GameStartError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.isfile(path):
            # The file exists, so what is missing is the interpreter of its "#!" line: still
            # "not found", 127, as bash and dash report it.
            return GameStartError(
                f"cannot start the game: {path} names an interpreter (#! line) that does not exist",
                127,
            )
        return GameStartError(f"cannot start the game: {command!r} does not exist", 127)
    if os.path.isdir(path):
        return GameStartError(f"cannot start the game: {path} is a directory", 126)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return GameStartError(
            f"cannot start the game: {path} is not executable (permission denied)", 126
        )
    return GameStartError(f"cannot start the game: {path}: {exc.strerror}", 126)


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None
