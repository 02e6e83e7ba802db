"""psutil adapters: the game's port readiness, its CPU and memory, a watched process, NIC traffic.

:class:`WatchedProcess` is watch mode's :class:`~sidecar.game.Game` (serve ``--watch-*``);
:func:`watch_port_readiness` and :func:`feed_network_samples` are the background tasks that
turn these snapshots into lifecycle events.

Owns every question the sidecar asks the operating system about processes and interfaces, so the
lifecycle can stay pure and the agent only schedules these calls. Each function is a snapshot
(cheap, synchronous, never raises for a process that vanished), except :func:`wait_for_exit`.

Why this shape
--------------
* Port readiness mirrors Edgegap's own signal: the game is ready once it listens (TCP) or binds
  (UDP) on a non-loopback address. A UDP socket that is bound but not connected counts, whatever
  its port, because a false "ready" only costs the ready timeout, while a missed one would stop a
  live server.
* :class:`ProcessTreeSampler` keeps its ``psutil.Process`` objects between samples, because CPU
  percentages are measured between two calls on the same object.
* :func:`wait_for_exit` uses a pidfd (``pidfd_open``) when it can: the kernel wakes us at the
  exit, so an idle sidecar polls nothing. Polling is the fallback for old kernels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping

import psutil

from sidecar.addresses import is_loopback
from sidecar.game import Game, GameExit, GameStats
from sidecar.lifecycle import Lifecycle, ReadySource, State

# The lines the agent logged before they moved here keep the agent's logger name.
lifecycle_log = logging.getLogger("sidecar")

# Status and metrics may be asked for thousands of times a second; a sample of the game's tree
# costs a few system calls per process, so a sample is reused for this long.
STATS_MAX_AGE = 2.0


def find_game_port(pids: Iterable[int], ports: Collection[int] | None) -> tuple[str, int] | None:
    """The first game port one of `pids` listens on: ``("tcp" | "udp", port)``, or None.

    Counts a TCP socket in LISTEN or an unconnected bound UDP socket on a non-loopback address
    (``0.0.0.0`` and ``::`` included). When `ports` is non-empty, only those ports count.
    """
    wanted = set(ports or ())
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        for conn in connections:
            if not conn.laddr:
                continue
            if conn.type == socket.SOCK_STREAM:
                if conn.status != psutil.CONN_LISTEN:
                    continue
                protocol = "tcp"
            elif conn.type == socket.SOCK_DGRAM:
                if conn.raddr:
                    continue  # a connected UDP socket is a client (DNS, telemetry), not a server
                protocol = "udp"
            else:
                continue
            host, port = conn.laddr.ip, conn.laddr.port
            if wanted and port not in wanted:
                continue
            if is_loopback(host):
                continue
            return protocol, port
    return None


# Port readiness is polled every 0.5 s at first (a game usually listens within seconds), then
# less often as the wait grows, up to every 5 s: a game that never listens (it reports ready
# over the API, or not at all) must not cost a scan of its sockets twice a second forever.
PORT_POLL_INTERVAL = 0.5
PORT_POLL_MAX_INTERVAL = 5.0
PORT_POLL_SLOWDOWN_AFTER = 10.0


def port_poll_interval(waited: float) -> float:
    """The pause between two port scans after `waited` seconds without a game port: 0.5 s for
    the first 10 s, then a twentieth of the time waited so far, at most 5 s."""
    if waited < PORT_POLL_SLOWDOWN_AFTER:
        return PORT_POLL_INTERVAL
    return min(PORT_POLL_MAX_INTERVAL, max(PORT_POLL_INTERVAL, waited / 20))


async def watch_port_readiness(
    lifecycle: Lifecycle,
    game: Game,
    ports: Collection[int] | None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Scan the game's sockets (in a thread), paced by `port_poll_interval`, until it listens on
    a game port: then it is ready (SPEC §5). Stops as soon as it is ready, or no longer
    starting, some other way."""
    started = clock()
    while lifecycle.state is State.STARTING and lifecycle.ready_at is None:
        found = await asyncio.to_thread(find_game_port, game.pids(), ports)
        if found is not None and lifecycle.state is State.STARTING:
            protocol, port = found
            lifecycle_log.info("game is listening on %s port %d: ready", protocol, port)
            lifecycle.ready(ReadySource.PORT)
            return
        await asyncio.sleep(port_poll_interval(clock() - started))


async def feed_network_samples(lifecycle: Lifecycle, idle_timeout: float) -> None:
    """Give the lifecycle the interfaces' packet counter (the network idle timer) ten times per
    timeout, between every 0.1 s and every 1 s, until a stop is decided or the platform stops
    us."""
    interval = min(1.0, max(0.1, idle_timeout / 10))
    while not lifecycle.stop_decided and lifecycle.state is not State.TERMINATING:
        lifecycle.network_sample(nic_packets_total())
        await asyncio.sleep(interval)


class ProcessTreeSampler:
    """Samples CPU and memory of a process and its descendants."""

    def __init__(self, root_pid: int) -> None:
        self._root_pid = root_pid
        self._root: psutil.Process | None = None
        # pid -> Process, kept across samples: cpu_percent() measures since the previous call on
        # the same object. psutil compares creation times, so a recycled pid gets a new object.
        self._known: dict[int, psutil.Process] = {}

    def sample(self) -> GameStats | None:
        """The tree's current totals, or None once the root process is gone.

        A process seen for the first time contributes 0 % CPU (it has no previous sample).
        """
        try:
            if self._root is None:
                self._root = psutil.Process(self._root_pid)
            if not self._root.is_running() or self._root.status() == psutil.STATUS_ZOMBIE:
                return None
            tree = [self._root, *self._root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        known: dict[int, psutil.Process] = {}
        cpu = 0.0
        rss = 0
        for process in tree:
            cached = self._known.get(process.pid)
            if cached is not None and cached == process:
                process = cached
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(interval=None)
                    rss += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            known[process.pid] = process
        self._known = known
        return GameStats(cpu_percent=cpu, rss_bytes=rss, processes=len(known))


class RecentStats:
    """A process tree's stats, sampled at most every STATS_MAX_AGE seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sampler: ProcessTreeSampler | None = None
        self._stats: GameStats | None = None
        self._at = -1e9

    def sample(self, root_pid: int) -> GameStats | None:
        now = self._clock()
        if now - self._at >= STATS_MAX_AGE:
            if self._sampler is None:
                self._sampler = ProcessTreeSampler(root_pid)
            self._stats = self._sampler.sample()
            self._at = now
        return self._stats


class WatchedProcess:
    """Watch mode's Game: a process someone else started. Its exit is the game's exit; it is
    signalled only to end it when the stop fails for good (SPEC §4: beside a watched game the
    sidecar is not the container's main process, and exiting alone would leave it billing)."""

    mode = "watch mode"
    kind = "watched game"
    ours = False

    def __init__(self, pid: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._pid = pid
        self.name = f"watched process {pid}"
        self._process: psutil.Process | None = None
        self._exit: GameExit | None = None
        self._stats = RecentStats(clock)

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def exit(self) -> GameExit | None:
        return self._exit

    def start(self, api_env: Mapping[str, str]) -> None:
        # Already running; it found the local API on its own. Its Process is taken now, while it
        # runs: terminating it later must never hit a reused pid.
        with contextlib.suppress(psutil.Error):
            self._process = psutil.Process(self._pid)

    async def wait(self) -> GameExit:
        self._exit = await wait_for_exit(self._pid)
        return self._exit

    def pids(self) -> list[int]:
        try:
            root = psutil.Process(self._pid)
            return [root.pid, *(child.pid for child in root.children(recursive=True))]
        except psutil.Error:
            return []

    def stats(self) -> GameStats | None:
        return None if self._exit is not None else self._stats.sample(self._pid)

    def send_signal(self, sig: int) -> None:
        pass

    async def terminate(self, grace: float, sig: int = signal.SIGTERM) -> GameExit | None:
        if self._process is not None and self._exit is None:
            await terminate_process(self._process, grace, sig)
        return self._exit

    async def sweep(self, grace: float) -> None:
        pass  # what a watched game started is not ours to end

    def close(self) -> None:
        pass


async def wait_for_exit(
    pid: int, *, poll_interval: float = 0.5, use_pidfd: bool = True
) -> GameExit:
    """Wait until process `pid` exits (watch mode); returns how it ended, as far as knowable.

    The exit status is only knowable for our own child; any other process reports
    ``returncode=0`` with ``status_known=False`` (a ``game_exited`` stop saying so). A pid that
    does not exist has already exited.
    Do not use it for a child while a :class:`~sidecar.reaper.Reaper` is installed: the reaper
    owns the exit statuses then.
    """
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return _UNKNOWN_EXIT
    pidfd = _open_pidfd(pid) if use_pidfd else None
    try:
        if pidfd is not None:
            await _readable(pidfd)
        else:
            # No kernel notification without a pidfd: polling is the whole point of this branch.
            while _alive(process):  # noqa: ASYNC110
                await asyncio.sleep(poll_interval)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return _collect_exit(pid)


async def terminate_process(
    process: psutil.Process, grace: float, sig: int = signal.SIGTERM
) -> None:
    """Send `sig` to `process`, SIGKILL it after `grace` seconds; nothing when it is gone.

    `process` must be the object taken while it ran: psutil checks its creation time before
    signalling, so a pid the kernel has since reused for another process is never signalled.
    """
    try:
        if not process.is_running():
            return
        process.send_signal(sig)
    except psutil.Error:
        return
    try:
        await asyncio.to_thread(process.wait, grace)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            process.kill()
    except psutil.Error:
        pass


_UNKNOWN_EXIT = GameExit(returncode=0, signal=None, status_known=False)


def _collect_exit(pid: int) -> GameExit:
    """The exit status of our child `pid` (already exited: this never blocks), else an exit 0
    marked unknown."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _UNKNOWN_EXIT  # not our child: no status to read
    if reaped != pid:
        return _UNKNOWN_EXIT
    return GameExit.from_wait_status(status)


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None  # gone between the two calls: the poll loop returns at once
    except (AttributeError, OSError):
        return None  # kernel older than 5.3 or no pidfd support: poll instead


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _alive(process: psutil.Process) -> bool:
    try:
        # is_running() also guards against the pid being recycled by a new process.
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def find_pid_by_name(name: str) -> int | None:
    """The oldest live process, other than ourselves, whose name or argv[0] basename is `name`."""
    me = os.getpid()
    matches: list[tuple[float, int]] = []
    for process in psutil.process_iter(["pid", "name", "cmdline", "create_time", "status"]):
        info = process.info
        if info["pid"] == me or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = info["cmdline"] or []
        argv0 = os.path.basename(cmdline[0]) if cmdline else None
        if name in (info["name"], argv0):
            matches.append((info["create_time"] or 0.0, info["pid"]))
    return min(matches)[1] if matches else None


def nic_packets_total() -> int:
    """Packets sent plus received so far on every non-loopback interface."""
    counters = psutil.net_io_counters(pernic=True)
    loopback = {"lo"}
    with contextlib.suppress(OSError):
        loopback |= {
            nic
            for nic, stats in psutil.net_if_stats().items()
            if "loopback" in getattr(stats, "flags", "").split(",")
        }
    return sum(
        int(counter.packets_sent) + int(counter.packets_recv)
        for nic, counter in counters.items()
        if nic not in loopback
    )
