"""Run mode's child process: start, exit codes, signals and reaping, with real games.

Games are the scripts in tests/games; their output is relayed to pipes the test reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from games.harness import GAMES, REPO, GameRunner, game_argv

from sidecar.errors import GameStartError
from sidecar.game import GameExit
from sidecar.leftovers import current_children, end_descendants
from sidecar.reaper import Reaper
from sidecar.supervisor import GameProcess


@pytest.fixture
async def reaper() -> AsyncIterator[Reaper]:
    async with Reaper(orphan_grace=0.05) as installed:
        yield installed


@pytest.fixture
async def games(reaper: Reaper) -> AsyncIterator[GameRunner]:
    runner = GameRunner(reaper)
    try:
        yield runner
    finally:
        await runner.close()


class TestGameExit:
    def test_exit_status_decoding(self) -> None:
        """Exit 0 is clean, exit N is a crash with code N, signal N a crash with 128+N."""
        clean = GameExit.from_wait_status(0)
        assert (clean.returncode, clean.signal, clean.exit_code, clean.crashed) == (
            0,
            None,
            0,
            False,
        )
        failed = GameExit.from_wait_status(3 << 8)
        assert (failed.returncode, failed.exit_code, failed.crashed) == (3, 3, True)
        killed = GameExit.from_wait_status(signal.SIGKILL)
        assert (killed.returncode, killed.signal, killed.exit_code) == (None, 9, 137)
        assert killed.crashed
        assert killed.signal_name == "SIGKILL"
        assert clean.signal_name is None


class TestExit:
    async def test_clean_exit(self, games: GameRunner) -> None:
        """A game that exits 0 has not crashed (stop reason game_exited)."""
        run = games.game("crash.py", 0)
        exit_ = await run.game.wait()
        assert (exit_.returncode, exit_.signal, exit_.crashed) == (0, None, False)

    async def test_nonzero_exit_is_a_crash_with_its_output(self, games: GameRunner) -> None:
        """Exit 3 is reported as returncode 3, crashed, with the game's last lines."""
        run = games.game("crash.py", 3, "fatal: map not found")
        exit_ = await run.game.wait()
        assert (exit_.returncode, exit_.exit_code, exit_.crashed) == (3, 3, True)
        assert "fatal: map not found" in exit_.tail
        assert await run.err.read_all() == b"fatal: map not found\n"

    async def test_killed_game_reports_128_plus_signal(self, games: GameRunner) -> None:
        """A game killed by SIGKILL exits with code 137 and the signal's name."""
        run = games.game("term_handler.py")
        await run.out.wait_for(b"ready\n")
        os.kill(run.game.pid or 0, signal.SIGKILL)
        exit_ = await run.game.wait()
        assert (exit_.exit_code, exit_.signal_name, exit_.crashed) == (137, "SIGKILL", True)

    async def test_every_waiter_gets_the_same_exit(self, games: GameRunner) -> None:
        """Concurrent and later wait() calls all return the one exit."""
        run = games.game("crash.py", 5)
        first, second = await asyncio.gather(run.game.wait(), run.game.wait())
        assert first is second
        assert await run.game.wait() is first

    async def test_private_reaper_is_removed_after_the_exit(self) -> None:
        """Without an agent-wide reaper a game brings its own and gives SIGCHLD back after."""
        with open(os.devnull, "wb") as devnull:
            game = GameProcess(
                game_argv("crash.py", 0), stdout_fd=devnull.fileno(), stderr_fd=devnull.fileno()
            )
            game.start()
            assert Reaper.active() is not None
            assert (await game.wait()).returncode == 0
        assert Reaper.active() is None


class TestStart:
    async def test_own_session_and_given_environment(self, games: GameRunner) -> None:
        """The game leads its own session and process group and sees exactly the env given."""
        env = {"PATH": os.environ["PATH"], "GAME_MODE": "ranked"}
        run = games.start(game_argv("introspect.py", "GAME_MODE"), env=env)
        await run.game.wait()
        report = json.loads(await run.out.read_all())
        assert report["pid"] == run.game.pid == report["sid"] == report["pgid"]
        assert report["variable"] == "ranked"

    async def test_sigpipe_is_not_left_ignored(self, games: GameRunner) -> None:
        """The game does not inherit the SIGPIPE and SIGXFSZ that Python ignores in the sidecar."""
        run = games.start(["sh", "-c", "grep SigIgn /proc/$$/status"])
        await run.game.wait()
        ignored = int((await run.out.read_all()).split()[1], 16)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            assert not ignored & (1 << (sig - 1)), signal.Signals(sig).name

    async def test_command_is_found_in_the_games_path(
        self, games: GameRunner, tmp_path: Path
    ) -> None:
        """A bare command name is looked up in the PATH the game is given."""
        server = tmp_path / "my-server"
        server.write_text("#!/bin/sh\necho started from PATH\n")
        server.chmod(0o755)
        run = games.start(["my-server"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
        assert (await run.game.wait()).returncode == 0
        assert await run.out.read_all() == b"started from PATH\n"

    @pytest.mark.parametrize(
        ("setup", "code", "message"),
        [
            ("missing-in-path", 127, "not found in PATH"),
            ("missing-path", 127, "does not exist"),
            ("not-executable", 126, "not executable"),
            ("not-executable-in-path", 126, "not executable"),
            ("directory", 126, "is a directory"),
            ("bad-interpreter", 127, "interpreter"),
        ],
    )
    async def test_unstartable_command_exit_codes(
        self, tmp_path: Path, setup: str, code: int, message: str
    ) -> None:
        """A command that is missing exits 127 (so does a script whose `#!` interpreter is
        missing, as in bash and dash), one that cannot be executed 126, explained."""
        script = tmp_path / "server.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
        argv = {
            "missing-in-path": ["no-such-game-server"],
            "missing-path": [str(tmp_path / "nope" / "server")],
            "not-executable": [str(script)],
            "not-executable-in-path": ["server.sh"],
            "directory": [str(tmp_path)],
            "bad-interpreter": [str(script)],
        }[setup]
        if setup == "bad-interpreter":
            script.write_text("#!/no/such/interpreter\n")
            script.chmod(0o755)
        game = GameProcess(argv, env=env)
        with pytest.raises(GameStartError, match=message) as raised:
            game.start()
        assert raised.value.exit_code == code
        assert game.pid is None
        assert Reaper.active() is None  # nothing left installed by the failed start

    async def test_start_twice_and_signal_before_start_are_errors(self, games: GameRunner) -> None:
        """Misuse of the API fails loudly instead of starting a second game."""
        unstarted = GameProcess(game_argv("crash.py", 0))
        with pytest.raises(RuntimeError, match="not been started"):
            unstarted.send_signal(signal.SIGTERM)
        run = games.game("crash.py", 0)
        with pytest.raises(RuntimeError, match="already started"):
            run.game.start()


class TestSignals:
    async def test_sigterm_is_forwarded_and_shutdown_output_relayed(
        self, games: GameRunner
    ) -> None:
        """terminate() sends SIGTERM; the game's shutdown line reaches our stdout before exit."""
        run = games.game("term_handler.py")
        await run.out.wait_for(b"ready\n")
        exit_ = await asyncio.wait_for(run.game.terminate(grace=30), timeout=10)
        assert (exit_.returncode, exit_.crashed) == (0, False)
        assert await run.out.read_all() == (b"ready\nshutdown: SIGTERM received, saving state\n")

    async def test_sigint_can_be_forwarded_instead(self, games: GameRunner) -> None:
        """terminate(sig=SIGINT) forwards SIGINT (the sidecar got Ctrl-C)."""
        run = games.game("term_handler.py")
        await run.out.wait_for(b"ready\n")
        await run.game.terminate(grace=30, sig=signal.SIGINT)
        await run.out.wait_for(b"shutdown: SIGINT received")

    async def test_signal_reaches_the_whole_process_group(self, games: GameRunner) -> None:
        """send_signal() reaches the game's children too, not only the game."""
        run = games.game("tree.py", 2)
        pids = [int(pid) for pid in (await run.out.line("ready")).split()[1:]]
        run.game.send_signal(signal.SIGTERM)
        await run.game.wait()
        output = (await run.out.read_all()).decode()
        for pid in [run.game.pid, *pids]:
            assert f"pid {pid} got SIGTERM" in output

    async def test_game_ignoring_sigterm_is_killed_after_the_grace(self, games: GameRunner) -> None:
        """A game that ignores SIGTERM gets SIGKILL once the grace period is over."""
        run = games.game("ignore_term.py")
        await run.out.wait_for(b"ready\n")
        loop = asyncio.get_running_loop()
        started = loop.time()
        exit_ = await run.game.terminate(grace=0.3)
        assert loop.time() - started >= 0.3
        assert (exit_.signal_name, exit_.exit_code) == ("SIGKILL", 137)

    async def test_terminate_is_idempotent(self, games: GameRunner) -> None:
        """Repeated or concurrent terminate() calls share one escalation and one exit."""
        run = games.game("ignore_term.py")
        await run.out.wait_for(b"ready\n")
        first, second = await asyncio.gather(
            run.game.terminate(grace=0.2), run.game.terminate(grace=60)
        )
        assert first is second
        assert await run.game.terminate(grace=60) is first
        run.game.send_signal(signal.SIGTERM)  # once gone, signals are a no-op

    async def test_pids_lists_the_game_tree_until_it_exits(self, games: GameRunner) -> None:
        """pids() covers the game and its children (for stats and port readiness)."""
        run = games.game("tree.py", 2)
        children = [int(pid) for pid in (await run.out.line("ready")).split()[1:]]
        assert run.game.pid is not None
        assert sorted(run.game.pids()) == sorted([run.game.pid, *children])
        await run.game.terminate(grace=10)
        assert run.game.pids() == []


class TestReaping:
    async def test_orphans_are_reaped_as_subreaper(self, reaper: Reaper, games: GameRunner) -> None:
        """Subreaper path (not PID 1): the game's orphans are reaped, its own status survives."""
        run = games.game("spawn_orphans.py", 5, 7)
        orphans = [int(pid) for pid in (await run.out.line("orphans")).split()[1:]]
        exit_ = await run.game.wait()
        assert exit_.returncode == 7
        async with asyncio.timeout(10):
            # No event says "that orphan is gone": re-check until none is left, zombie or not.
            while any(_exists(pid) for pid in orphans):
                await asyncio.sleep(0.02)
        assert reaper.orphans_reaped >= 5

    async def test_other_childrens_statuses_are_not_stolen(self, reaper: Reaper) -> None:
        """Children started by others (asyncio subprocesses) keep their exit codes."""
        process = await asyncio.create_subprocess_exec(
            *game_argv("crash.py", 5),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await process.wait() == 5

    async def test_sweep_ends_escaped_leftovers_and_spares_other_children(
        self, reaper: Reaper, games: GameRunner
    ) -> None:
        """After the game: what it left behind, even outside its session and deaf to SIGTERM,
        is killed after the grace; a child this process had before the game is left alone."""
        unrelated = await asyncio.create_subprocess_exec(
            *game_argv("idle.py"), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        try:
            spared = current_children()
            run = games.game("escape.py")
            escapee = int((await run.out.line("escaped")).split()[1])
            await run.game.wait()
            assert _running(escapee)
            assert await end_descendants(spared, 0.2) == 1
            assert not _running(escapee)
            assert unrelated.returncode is None
            assert psutil.Process(unrelated.pid).status() != psutil.STATUS_ZOMBIE
        finally:
            assert unrelated.stdin is not None
            unrelated.stdin.close()
            await unrelated.wait()

    @pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare missing")
    def test_orphans_are_reaped_as_pid_1(self) -> None:
        """PID 1 path: in a new PID namespace (unshare) the sidecar's reaper leaves no zombies."""
        probe = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
        )
        if probe.returncode != 0:
            pytest.skip(f"cannot create a PID namespace here: {probe.stderr.decode().strip()}")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        result = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
             str(GAMES / "pid1_init.py"), "5"],
            capture_output=True, env=env, timeout=30, check=True,
        )  # fmt: skip
        report = json.loads(result.stdout.decode().splitlines()[-1])
        assert report["pid"] == 1
        assert report["exit_code"] == 7
        assert report["orphans_reaped"] == 5
        assert report["zombies"] == []


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _exists(pid: int) -> bool:
    """True while `pid` exists at all, zombie included."""
    return bool(psutil.pid_exists(pid))
