"""psutil watchers against real processes: port readiness, stats, watch mode, NIC counters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from games.harness import GAMES, REPO, GameRunner, game_argv

from sidecar.watchers import (
    ProcessTreeSampler,
    find_game_port,
    find_pid_by_name,
    nic_packets_total,
    wait_for_exit,
)


class Spawned:
    """A plain child (no reaper: watch mode's view) whose stdin the test holds open."""

    def __init__(self, argv: list[str], *, argv0: str | None = None) -> None:
        stdin_read, self.stdin = os.pipe2(os.O_CLOEXEC)
        stdout_read, stdout_write = os.pipe2(os.O_CLOEXEC)
        self.pid = os.posix_spawn(
            argv[0],
            [argv0 or argv[0], *argv[1:]],
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin_read, 0),
                (os.POSIX_SPAWN_DUP2, stdout_write, 1),
            ],
        )
        os.close(stdin_read)
        os.close(stdout_write)
        self.stdout = os.fdopen(stdout_read, "rb")
        self.reaped = False

    def line(self) -> str:
        """Its next stdout line (pytest-timeout bounds the blocking read)."""
        return self.stdout.readline().decode().strip()

    def close_stdin(self) -> None:
        if self.stdin >= 0:
            os.close(self.stdin)
            self.stdin = -1

    def cleanup(self) -> None:
        self.close_stdin()
        self.stdout.close()
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


@pytest.fixture
def spawn() -> Iterator[type[Spawned]]:
    spawned: list[Spawned] = []

    class Tracked(Spawned):
        def __init__(self, argv: list[str], *, argv0: str | None = None) -> None:
            super().__init__(argv, argv0=argv0)
            spawned.append(self)

    yield Tracked
    for child in spawned:
        child.cleanup()


async def bound_port(games: GameRunner, script: str, host: str) -> tuple[list[int], int]:
    """Start a game binding `host`:0; returns its pids and the port it got."""
    run = games.game(script, host, 0)
    port = int((await run.out.line("bound")).split()[-1])
    return run.game.pids(), port


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::", 0))
    except OSError:
        return False
    return True


class TestFindGamePort:
    async def test_udp_bind_on_all_interfaces_is_a_game_port(self, games: GameRunner) -> None:
        """A game bound to UDP 0.0.0.0 is ready by its port."""
        pids, port = await bound_port(games, "udp_bind.py", "0.0.0.0")
        assert find_game_port(pids, None) == ("udp", port)

    async def test_loopback_bind_is_not_a_game_port(self, games: GameRunner) -> None:
        """A bind on 127.0.0.1 cannot take players, so it does not make the game ready."""
        pids, _ = await bound_port(games, "udp_bind.py", "127.0.0.1")
        assert find_game_port(pids, None) is None
        pids, _ = await bound_port(games, "tcp_listen.py", "127.0.0.1")
        assert find_game_port(pids, None) is None

    async def test_tcp_listen_is_a_game_port(self, games: GameRunner) -> None:
        """A TCP listener on 0.0.0.0 is a game port too."""
        pids, port = await bound_port(games, "tcp_listen.py", "0.0.0.0")
        assert find_game_port(pids, None) == ("tcp", port)

    @pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 here")
    async def test_ipv6_any_address_counts(self, games: GameRunner) -> None:
        """A UDP bind on :: counts like one on 0.0.0.0."""
        pids, port = await bound_port(games, "udp_bind.py", "::")
        assert find_game_port(pids, None) == ("udp", port)

    async def test_only_the_mapped_ports_count_when_known(self, games: GameRunner) -> None:
        """With ARBITRIUM_PORTS_MAPPING known, a bind on another port does not count."""
        pids, port = await bound_port(games, "udp_bind.py", "0.0.0.0")
        assert find_game_port(pids, {port + 1 if port < 65535 else port - 1}) is None
        assert find_game_port(pids, {port}) == ("udp", port)
        assert find_game_port(pids, set()) == ("udp", port)

    async def test_port_held_by_a_child_of_the_game_counts(self, games: GameRunner) -> None:
        """A launcher script whose child binds the port is ready through the child."""
        run = games.start(["sh", "-c", f'"{sys.executable}" "{GAMES}/udp_bind.py" 0.0.0.0 0; :'])
        port = int((await run.out.line("bound")).split()[-1])
        assert len(run.game.pids()) == 2
        assert find_game_port(run.game.pids(), None) == ("udp", port)

    def test_gone_processes_are_skipped(self) -> None:
        """Pids that no longer exist are ignored, not an error."""
        assert find_game_port([2**22 + 12345], None) is None


class TestProcessTreeSampler:
    async def test_reports_memory_and_processes_of_the_tree(self, games: GameRunner) -> None:
        """Stats cover the game and its children, with real resident memory."""
        run = games.game("tree.py", 2)
        await run.out.line("ready")
        stats = ProcessTreeSampler(run.game.pid or 0).sample()
        assert stats is not None
        assert stats.processes == 3
        assert stats.rss_bytes > 1_000_000
        assert stats.cpu_percent >= 0.0

    async def test_cpu_of_a_busy_game_shows_up(self, games: GameRunner) -> None:
        """A game burning CPU shows a positive cpu_percent from the second sample on."""
        run = games.game("busy.py")
        await run.out.wait_for(b"ready\n")
        sampler = ProcessTreeSampler(run.game.pid or 0)
        sampler.sample()
        async with asyncio.timeout(10):
            while True:
                # CPU time accrues in clock ticks: sample again until one has passed.
                await asyncio.sleep(0.05)
                stats = sampler.sample()
                assert stats is not None
                if stats.cpu_percent > 0:
                    break

    async def test_none_once_the_game_is_gone(self, games: GameRunner) -> None:
        """After the game exits there is nothing to sample."""
        run = games.game("crash.py", 0)
        sampler = ProcessTreeSampler(run.game.pid or 0)
        await run.game.wait()
        assert sampler.sample() is None


class TestWaitForExit:
    async def test_process_that_is_not_our_child(self, spawn: type[Spawned]) -> None:
        """Watching a process started by someone else reports a plain exit (status unknowable)."""
        launcher = spawn(game_argv("detach.py"))
        grandchild = int(launcher.line())
        os.waitpid(launcher.pid, 0)
        launcher.reaped = True
        waiter = asyncio.ensure_future(wait_for_exit(grandchild))
        await asyncio.sleep(0)
        assert not waiter.done()
        launcher.close_stdin()  # the grandchild reads our pipe: end-of-file ends it
        exit_ = await asyncio.wait_for(waiter, timeout=10)
        assert (exit_.returncode, exit_.crashed) == (0, False)

    @pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "polling"])
    async def test_our_child_reports_its_exit_code(
        self, spawn: type[Spawned], use_pidfd: bool
    ) -> None:
        """A watched child's exit code is known (pidfd and polling alike)."""
        child = spawn(game_argv("idle.py", 5))
        assert child.line() == "ready"
        waiter = asyncio.ensure_future(
            wait_for_exit(child.pid, poll_interval=0.02, use_pidfd=use_pidfd)
        )
        child.close_stdin()
        exit_ = await asyncio.wait_for(waiter, timeout=10)
        child.reaped = True
        assert (exit_.returncode, exit_.crashed) == (5, True)

    async def test_killed_child_reports_the_signal(self, spawn: type[Spawned]) -> None:
        """A watched child killed by SIGKILL reports exit code 137."""
        child = spawn(game_argv("idle.py"))
        assert child.line() == "ready"
        waiter = asyncio.ensure_future(wait_for_exit(child.pid))
        os.kill(child.pid, signal.SIGKILL)
        exit_ = await asyncio.wait_for(waiter, timeout=10)
        child.reaped = True
        assert (exit_.exit_code, exit_.signal_name) == (137, "SIGKILL")

    async def test_missing_pid_has_already_exited(self) -> None:
        """A pid that does not exist counts as already exited."""
        exit_ = await asyncio.wait_for(wait_for_exit(2**22 + 12345), timeout=5)
        assert exit_.returncode == 0


class TestFindPidByName:
    def test_finds_a_process_by_its_argv0(self, spawn: type[Spawned]) -> None:
        """--watch-name finds the game by the name it was started as."""
        name = f"game-server-{uuid.uuid4().hex[:8]}"
        child = spawn(game_argv("idle.py"), argv0=f"/opt/game/{name}")
        assert child.line() == "ready"
        assert find_pid_by_name(name) == child.pid

    def test_unknown_name_and_ourselves_are_not_found(self) -> None:
        """An unknown name gives None, and the sidecar never finds itself."""
        assert find_pid_by_name(f"no-such-game-{uuid.uuid4().hex}") is None
        own_name = os.path.basename(sys.argv[0])
        assert find_pid_by_name(own_name) != os.getpid()


NETNS_PROBE = """
import socket, sys, time
import psutil
from sidecar.watchers import nic_packets_total

def send(address):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(50):
            sock.sendto(b"ping", (address, 9))

def wait_until(condition):
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)  # counters update as the kernel moves the packets

def lo_packets():
    counters = psutil.net_io_counters(pernic=True)["lo"]
    return counters.packets_sent + counters.packets_recv

before, lo_before = nic_packets_total(), lo_packets()
send("127.0.0.1")
wait_until(lambda: lo_packets() - lo_before >= 100)
loopback = nic_packets_total() - before

before = nic_packets_total()
send(sys.argv[1])
wait_until(lambda: nic_packets_total() - before >= 50)
print(loopback, nic_packets_total() - before)
"""


class TestNicPackets:
    def test_returns_a_packet_count(self) -> None:
        """The counter is a non-negative integer on any machine."""
        total = nic_packets_total()
        assert isinstance(total, int)
        assert total >= 0

    @pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
    )
    def test_counter_moves_with_interface_traffic_not_loopback(self) -> None:
        """Traffic on a real interface moves the counter; loopback traffic does not.

        Runs in two throwaway network namespaces joined by a veth pair, so no packet leaves
        them and the host's own traffic cannot disturb the counts.
        """
        suffix = uuid.uuid4().hex[:6]
        ours, peer = f"sc-{suffix}-a", f"sc-{suffix}-b"
        setup = [
            ["ip", "netns", "add", ours],
            ["ip", "netns", "add", peer],
            ["ip", "link", "add", "veth0", "netns", ours, "type", "veth",
             "peer", "name", "veth1", "netns", peer],
            # No IPv6 autoconfiguration chatter: only our packets may move the counters.
            ["ip", "netns", "exec", ours, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            ["ip", "netns", "exec", peer, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            ["ip", "-n", ours, "addr", "add", "10.213.0.1/30", "dev", "veth0"],
            ["ip", "-n", peer, "addr", "add", "10.213.0.2/30", "dev", "veth1"],
            ["ip", "-n", ours, "link", "set", "lo", "up"],
            ["ip", "-n", ours, "link", "set", "veth0", "up"],
            ["ip", "-n", peer, "link", "set", "veth1", "up"],
        ]  # fmt: skip
        try:
            for command in setup:
                created = subprocess.run(command, capture_output=True, check=False)
                if created.returncode != 0:
                    pytest.skip(f"cannot build network namespaces: {created.stderr.decode()}")
            probe = subprocess.run(
                ["ip", "netns", "exec", ours, sys.executable, "-c", NETNS_PROBE, "10.213.0.2"],
                capture_output=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                timeout=30,
                check=True,
            )
        finally:
            for namespace in (ours, peer):
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        loopback, veth = (int(value) for value in probe.stdout.split())
        assert loopback == 0
        assert veth >= 50
