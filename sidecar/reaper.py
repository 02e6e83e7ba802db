"""Child reaping: the game's exit status, and orphaned zombies when we are PID 1.

Owns every `waitpid` the sidecar makes, and the SIGCHLD handler.

Why this shape
--------------
* In a container the sidecar is often PID 1, so every orphan of the game (a crash reporter, a
  shell's background job) is re-parented to it and stays a zombie until it is reaped. When we are
  not PID 1 we ask the kernel for the same treatment with ``prctl(PR_SET_CHILD_SUBREAPER)``, so
  the code path is identical in a container, on a developer machine and in the tests.
* The classic init loop, ``waitpid(-1)``, would also consume the exit status of any child that
  somebody else in this process is waiting for: the game itself if it were started with
  ``asyncio.create_subprocess_exec`` (asyncio's child watcher would then report 255), or the
  emulator's backing processes when the emulator and a run-mode agent share a process (tests,
  demos). So we never call ``waitpid(-1)``. Instead:

  - a pid handed to :meth:`Reaper.watch` (the game) is reaped by pid as soon as SIGCHLD arrives and
    its raw wait status is delivered through an asyncio future;
  - any other child that is a zombie (found through ``/proc/self/task/*/children``) is somebody
    else's until it has stayed a zombie for ``orphan_grace`` seconds. Every real waiter reaps its
    child within milliseconds of the exit, so a zombie that old is an orphan nobody will ever
    wait for, and we reap it. Zombies therefore never pile up, and nobody's status is stolen.

* SIGCHLD is handed to the event loop by sidecar.signal_relay (``loop.add_signal_handler`` would
  lose a SIGTERM behind a flood of SIGCHLDs), so every ``waitpid`` runs on the event-loop
  thread. The game is spawned on that same thread and registered with :meth:`watch` before the loop
  runs again, so its exit cannot be processed before it is registered. A reaper *thread* would
  race the spawn and need a buffer of unclaimed statuses; it also could not be stopped cleanly
  while blocked in ``waitpid``.

* A game that churns orphans (hundreds a second) sends as many SIGCHLDs. The relay coalesces
  them to one pass per loop turn; that pass reaps the game by pid (cheap), and the /proc scan for
  orphans runs at most every ``ORPHAN_SCAN_INTERVAL``: an orphan waits ``orphan_grace`` anyway.
  (``waitpid(-1)`` would be cheaper still, but would steal the statuses explained above.)

SIGCHLD is process-wide, so at most one Reaper is installed at a time (:meth:`Reaper.active`).
It needs a running loop on the main thread, as any asyncio signal handler does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import logging
import os
import signal
from types import TracebackType
from typing import ClassVar

from sidecar.signal_relay import RELAY

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37

# A zombie that is nobody's registered child gets this long for its real parent-side waiter
# (asyncio's child watcher, subprocess.Popen.wait) before we treat it as an orphan and reap it.
DEFAULT_ORPHAN_GRACE = 1.0
# At most one /proc scan for orphans this often, however many SIGCHLDs arrive.
ORPHAN_SCAN_INTERVAL = 0.1


class Reaper:
    """Reaps the game by pid and orphans after a grace; see the module docstring for why."""

    _active: ClassVar[Reaper | None] = None

    def __init__(self, *, orphan_grace: float = DEFAULT_ORPHAN_GRACE) -> None:
        self._orphan_grace = orphan_grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watched: dict[int, asyncio.Future[int]] = {}
        # (pid, start time) of unregistered zombies -> loop time when first seen as a zombie.
        # The start time tells a recycled pid from the zombie we first saw.
        self._zombie_since: dict[tuple[int, int], float] = {}
        self._recheck: asyncio.TimerHandle | None = None
        self._scan_interval = min(ORPHAN_SCAN_INTERVAL, orphan_grace)
        self._last_scan = float("-inf")
        self._previous_subreaper: int | None = None
        self.orphans_reaped = 0

    @classmethod
    def active(cls) -> Reaper | None:
        """The installed reaper of the running loop, if any."""
        reaper = cls._active
        if reaper is not None and (reaper._loop is None or reaper._loop.is_closed()):
            # Its loop was closed without close(): the signal handler is gone with it.
            reaper._uninstall()
            return None
        return reaper

    @property
    def installed(self) -> bool:
        """True between install() and close()."""
        return self._loop is not None and not self._loop.is_closed()

    def install(self) -> None:
        """Take over SIGCHLD on the running loop and become the subreaper of our descendants."""
        loop = asyncio.get_running_loop()
        if Reaper.active() is not None:
            raise RuntimeError("a Reaper is already installed in this process (SIGCHLD is global)")
        if os.getpid() != 1:
            self._previous_subreaper = _set_child_subreaper()
        try:
            RELAY.route(loop, signal.SIGCHLD, self._on_sigchld)
        except (RuntimeError, ValueError) as exc:
            self._restore_subreaper()
            raise RuntimeError(f"cannot handle SIGCHLD here (main thread only): {exc}") from exc
        self._loop = loop
        Reaper._active = self
        # Children may have exited before we listened: their SIGCHLD is already gone.
        self._reap_now()

    def watch(self, pid: int) -> asyncio.Future[int]:
        """The raw wait status of our child `pid`, when it exits.

        Call it in the same event-loop callback that spawned `pid`, so that the exit cannot be
        handled before the pid is registered.
        """
        if self._loop is None:
            raise RuntimeError("Reaper.watch() before install()")
        future = self._watched.get(pid)
        if future is None:
            future = self._loop.create_future()
            self._watched[pid] = future
            # The child may already be gone (it can exit before we register it).
            self._reap_watched()
        return future

    def close(self) -> None:
        """Give SIGCHLD back, reap what can be reaped now, drop subreaper status."""
        if self._loop is None:
            return
        self._reap_now()
        self._uninstall()

    async def __aenter__(self) -> Reaper:
        self.install()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _uninstall(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            RELAY.release([signal.SIGCHLD])
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        for future in self._watched.values():
            # Nobody will ever deliver these statuses: fail loudly rather than hang a waiter.
            if not future.done() and not future.get_loop().is_closed():
                future.cancel()
        self._watched.clear()
        self._restore_subreaper()
        if Reaper._active is self:
            Reaper._active = None

    def _restore_subreaper(self) -> None:
        if self._previous_subreaper is not None:
            _prctl(_PR_SET_CHILD_SUBREAPER, self._previous_subreaper)
            self._previous_subreaper = None

    def _on_sigchld(self, sig: int = signal.SIGCHLD) -> None:
        self._reap_watched()
        self._scan_orphans_soon()

    def _reap_now(self) -> None:
        self._reap_watched()
        self._reap_orphans()

    def _scan_orphans_soon(self) -> None:
        """One orphan scan, at once unless one ran less than a scan interval ago."""
        assert self._loop is not None
        when = max(self._loop.time(), self._last_scan + self._scan_interval)
        if self._recheck is not None:
            if self._recheck.when() <= when:
                return  # one is due soon enough
            self._recheck.cancel()
        self._recheck = self._loop.call_at(when, self._reap_orphans)

    def _reap_watched(self) -> None:
        for pid in list(self._watched):
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                # Somebody else consumed its status (a stray waitpid(-1) elsewhere in the
                # process). Answer as asyncio does for an unknown child, exit 255, rather than
                # leave the waiter hanging.
                log.warning("child %d was reaped elsewhere; its exit status is lost", pid)
                reaped, status = pid, 255 << 8
            if reaped == pid:
                future = self._watched.pop(pid)
                if not future.done():
                    future.set_result(status)

    def _reap_orphans(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._last_scan = now
        seen: dict[tuple[int, int], float] = {}
        for pid, start_time in _zombie_children():
            if pid in self._watched:
                continue
            key = (pid, start_time)
            since = self._zombie_since.get(key, now)
            if now - since >= self._orphan_grace:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        self.orphans_reaped += 1
                        log.debug("reaped orphan %d", pid)
                continue
            seen[key] = since
        # Forget zombies that somebody else reaped meanwhile.
        self._zombie_since = seen
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        if seen:
            # No SIGCHLD will announce that a zombie got old: come back when the oldest does.
            when = max(min(seen.values()) + self._orphan_grace, now + self._scan_interval)
            self._recheck = self._loop.call_at(when, self._reap_orphans)


def _zombie_children() -> list[tuple[int, int]]:
    """(pid, start time) of our children that are zombies."""
    pids: set[int] = set()
    # Orphans are re-parented to some thread of ours, so every thread's list counts.
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        with contextlib.suppress(OSError), open(path, "rb") as children:
            pids.update(int(pid) for pid in children.read().split())
    zombies = []
    for pid in pids:
        stat = read_stat(pid)
        if stat is not None and stat[1] == b"Z":
            zombies.append((pid, stat[2]))
    return zombies


def read_stat(pid: int) -> tuple[int, bytes, int] | None:
    """(parent pid, state letter, start time in clock ticks) of `pid`, from /proc/PID/stat;
    None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            stat = stat_file.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[1]), fields[0], int(fields[19])


def _prctl(option: int, value: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), 0, 0, 0))


def _set_child_subreaper() -> int | None:
    """Become a subreaper; returns the previous setting, or None when the kernel refused."""
    previous = ctypes.c_int(0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0) != 0:
        log.warning("cannot read subreaper status: %s", os.strerror(ctypes.get_errno()))
        return None
    if _prctl(_PR_SET_CHILD_SUBREAPER, 1) != 0:
        # Orphans then go to the real init, which reaps them; the game itself is unaffected.
        log.warning(
            "cannot become a child subreaper (%s): orphans of the game will not be reaped here",
            os.strerror(ctypes.get_errno()),
        )
        return None
    return previous.value
