"""psutil adapters: the game's port readiness, its CPU and memory, a watched process, NIC traffic.

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
import os
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import psutil

from sidecar.addresses import is_loopback
from sidecar.supervisor import GameExit


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


@dataclass(frozen=True)
class GameStats:
    """One sample of the game's process tree."""

    cpu_percent: float  # summed over the tree; 100 = one core busy
    rss_bytes: int
    processes: int


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


async def wait_for_exit(
    pid: int, *, poll_interval: float = 0.5, use_pidfd: bool = True
) -> GameExit:
    """Wait until process `pid` exits (watch mode); returns how it ended, as far as knowable.

    The exit status is only knowable for our own child; any other process reports
    ``returncode=0`` (a ``game_exited`` stop). A pid that does not exist has already exited.
    Do not use it for a child while a :class:`~sidecar.reaper.Reaper` is installed: the reaper
    owns the exit statuses then.
    """
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return GameExit(returncode=0, signal=None)
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


async def terminate_process(process: psutil.Process, grace: float) -> None:
    """SIGTERM `process`, SIGKILL it after `grace` seconds; nothing when it is gone.

    `process` must be the object taken while it ran: psutil checks its creation time before
    signalling, so a pid the kernel has since reused for another process is never signalled.
    """
    try:
        if not process.is_running():
            return
        process.terminate()
    except psutil.Error:
        return
    try:
        await asyncio.to_thread(process.wait, grace)
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.Error):
            process.kill()
    except psutil.Error:
        pass


def _collect_exit(pid: int) -> GameExit:
    """The exit status of our child `pid` (already exited: this never blocks), else exit 0."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return GameExit(returncode=0, signal=None)  # not our child: no status to read
    if reaped != pid:
        return GameExit(returncode=0, signal=None)
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
