"""The game as the agent sees it, whichever mode found it: the `Game` interface, how a game ended
(`GameExit`), what it uses (`GameStats`), and `NoGame` for serve mode.

    run                     supervisor.ChildGame      our child: we start, signal and end it
    serve --watch-pid/name  watchers.WatchedProcess   someone else's: ended only if the stop fails
    serve                   NoGame                    nothing to watch

The agent talks to this interface only, so it never branches on the mode. This module imports
nothing of ours and no third-party package: both implementations import it, and watch mode
must not import run mode.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class GameExit:
    """How the game ended, as the lifecycle and the crash record need it."""

    returncode: int | None  # exit status when the game exited on its own
    signal: int | None  # signal number when it was killed by a signal
    tail: tuple[str, ...] = ()  # last lines of its output (stdout and stderr, decoded leniently)
    # False for a watched process that is not our child: the kernel gives its exit status to
    # its parent only, so it counts as exit 0 (``game_exited``) but is not known to be 0.
    status_known: bool = True

    @classmethod
    def from_wait_status(cls, status: int, tail: tuple[str, ...] = ()) -> GameExit:
        """Decode a raw ``waitpid`` status."""
        if os.WIFSIGNALED(status):
            return cls(returncode=None, signal=os.WTERMSIG(status), tail=tail)
        return cls(returncode=os.WEXITSTATUS(status), signal=None, tail=tail)

    @property
    def exit_code(self) -> int:
        """The code a shell would report: the exit status, or 128 + the signal number."""
        if self.signal is not None:
            return 128 + self.signal
        return self.returncode or 0

    @property
    def crashed(self) -> bool:
        """A non-zero exit or death by a signal (stop reason ``game_crashed``)."""
        return self.signal is not None or bool(self.returncode)

    @property
    def signal_name(self) -> str | None:
        """E.g. ``"SIGKILL"``; None when the game was not killed by a signal."""
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"

    def describe(self) -> str:
        """How it ended, for the log: ``killed by SIGKILL`` or ``code 3``."""
        if self.signal is not None:
            return f"killed by {self.signal_name}"
        if not self.status_known:
            return "exit code unknown (not the sidecar's child)"
        return f"code {self.returncode}"

    def stop_detail(self) -> str | None:
        """The stop's detail when the default one ("exited with code 0") would be untrue."""
        if self.status_known:
            return None
        return "the game exited; its exit code is unknown (not the sidecar's child)"


@dataclass(frozen=True)
class GameStats:
    """One sample of the game's process tree."""

    cpu_percent: float  # summed over the tree; 100 = one core busy
    rss_bytes: int
    processes: int


class Game(Protocol):
    """The game process the lifecycle follows, in any mode."""

    @property
    def mode(self) -> str:
        """``run mode``, ``watch mode`` or ``serve mode``, for the start-up line."""

    @property
    def name(self) -> str:
        """What the exit line calls it: ``game`` or ``watched process 1234``."""

    @property
    def kind(self) -> str:
        """What the line about ending it calls it: ``game`` or ``watched game``."""

    @property
    def pid(self) -> int | None:
        """The game's pid; None when there is no process (serve mode, or it could not start)."""

    @property
    def exit(self) -> GameExit | None:
        """How the game ended, once it has (or once it failed to start)."""

    @property
    def ours(self) -> bool:
        """Whether the sidecar started the process, so signals it and ends it on the way out."""

    def start(self, api_env: Mapping[str, str]) -> None:
        """Start or find the game; `api_env` tells a game we start where the local API is.
        Raises GameStartError when the command cannot be started (`exit` is set then)."""

    async def wait(self) -> GameExit:
        """Wait until the game has ended (for our child: with every byte of output relayed)."""

    def pids(self) -> list[int]:
        """The game and its live descendants (for the port-readiness scan)."""

    def stats(self) -> GameStats | None:
        """CPU and memory of the game's tree, at most a couple of seconds old; None once it
        ended or when there is none."""

    def send_signal(self, sig: int) -> None:
        """Signal the game, if it is ours and still running; otherwise nothing."""

    async def terminate(self, grace: float, sig: int = signal.SIGTERM) -> GameExit | None:
        """End the game: `sig`, then SIGKILL after `grace`. The agent ends a game that is not
        ours only when the stop failed for good (SPEC §4). Returns how it ended, when known."""

    async def sweep(self, grace: float) -> None:
        """Once the game has ended: end every process it left behind, SIGTERM then SIGKILL
        after `grace` (run mode, where they are ours); nothing in the other modes."""

    def close(self) -> None:
        """Release what the game held (the reaper in run mode); the last step of shutdown."""


class NoGame:
    """Serve mode without a watched process: there is no game to follow."""

    mode = "serve mode"
    name = "game"
    kind = "game"
    pid: int | None = None
    exit: GameExit | None = None
    ours = False

    def start(self, api_env: Mapping[str, str]) -> None:
        pass

    async def wait(self) -> GameExit:
        raise RuntimeError("serve mode has no game to wait for")

    def pids(self) -> list[int]:
        return []

    def stats(self) -> GameStats | None:
        return None

    def send_signal(self, sig: int) -> None:
        pass

    async def terminate(self, grace: float, sig: int = signal.SIGTERM) -> GameExit | None:
        return None

    async def sweep(self, grace: float) -> None:
        pass

    def close(self) -> None:
        pass
