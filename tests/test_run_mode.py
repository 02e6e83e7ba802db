"""`edgegap-sidecar run -- GAME` and `serve --watch-*` as real processes, with real games
(tests/games/) and the project's emulator as the platform."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from sidecar.emulator import EmulatorServer
from tests.conftest import GAMES, Launch

GAME = [sys.executable, "-u"]


async def platform(emulator: EmulatorServer) -> dict[str, str]:
    request_id = await emulator.deploy()
    await emulator.wait_for_status(request_id, "Status.READY")
    return await emulator.env(request_id)


def stop_record(stdout: bytes) -> dict[str, Any]:
    records = [
        json.loads(line)
        for line in stdout.splitlines()
        if line.startswith(b'{"event": "sidecar.stop"')
    ]
    assert len(records) == 1, stdout[-2000:]
    return records[0]


def records(stdout: bytes, event: str) -> list[dict[str, Any]]:
    prefix = b'{"event": "%s"' % event.encode()
    return [json.loads(line) for line in stdout.splitlines() if line.startswith(prefix)]


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has ended, whoever reaps it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def killed_at_exit(pids: list[int]) -> Iterator[None]:
    """Whatever the test found, no escapee outlives it."""
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class TestRelayAndExit:
    async def test_output_is_relayed_in_order_then_the_stop_record(self, launch: Launch) -> None:
        """2k lines and a partial tail arrive in order, and the stop record comes after them."""
        sc = await launch("run", "--", *GAME, str(GAMES / "chatty.py"), "--lines", "2000")
        code, stdout, _ = await sc.finish()
        assert code == 0
        lines = stdout.split(b"\n")
        expected = [b"out line %06d payload" % i for i in range(2000)]
        assert lines[:2000] == expected
        assert lines[2000] == b"partial tail without newline"
        record = json.loads(lines[2001])
        assert record["event"] == "sidecar.stop"
        assert record["reason"] == "game_exited"
        assert record["exit_code"] == 0

    async def test_200k_lines_none_lost(self, launch: Launch) -> None:
        """200k lines on stdout and stderr are all relayed."""
        sc = await launch(
            "run", "--", *GAME, str(GAMES / "chatty.py"), "--lines", "200000", "--stream", "both"
        )
        code, stdout, stderr = await sc.finish(timeout=60)
        assert code == 0
        assert stdout.count(b"out line ") == 200_000
        assert stderr.count("err line ") == 200_000
        assert b"out line 199999 payload\n" in stdout

    async def test_crash_is_game_crashed_with_error_storage_and_exit_code(
        self, launch: Launch, emulator: EmulatorServer
    ) -> None:
        """Exit 3 → game_crashed, SIDECAR_ERROR_LOG_STORAGE sent, last lines recorded, exit 3."""
        env = await platform(emulator)
        sc = await launch(
            "run",
            "--",
            *GAME,
            str(GAMES / "crash.py"),
            "3",
            "segfault in physics",
            env=env,
            SIDECAR_LOG_STORAGE="false",
            SIDECAR_ERROR_LOG_STORAGE="crash-store",
        )
        code, stdout, _ = await sc.finish()
        assert code == 3
        record = stop_record(stdout)
        assert record["reason"] == "game_crashed"
        assert record["exit_code"] == 3
        assert any("segfault in physics" in line for line in record["last_lines"])
        (call,) = await emulator.requests(path_contains="/v1/self/stop/", method="DELETE")
        assert call["query"] == {"container_log_storage": "crash-store"}

    async def test_killed_game_exits_128_plus_signal(self, launch: Launch) -> None:
        """A game killed by SIGKILL → game_crashed with signal SIGKILL, sidecar exits 137."""
        kill_self = "import os, signal; print('dying', flush=True); os.kill(os.getpid(), 9)"
        sc = await launch("run", "--", sys.executable, "-c", kill_self)
        code, stdout, _ = await sc.finish()
        assert code == 137
        record = stop_record(stdout)
        assert (record["reason"], record["signal"], record["exit_code"]) == (
            "game_crashed",
            "SIGKILL",
            137,
        )

    @pytest.mark.parametrize(
        ("command", "code"),
        [("/nonexistent/game", 127), (__file__, 126), ("missing-interpreter", 127)],
    )
    async def test_unstartable_game(
        self, launch: Launch, tmp_path: Path, command: str, code: int
    ) -> None:
        """A missing game, or one whose `#!` interpreter is missing, exits 127 (as bash and dash
        say); a non-executable one 126; both are game_crashed stops."""
        if command == "missing-interpreter":
            script = tmp_path / "server.sh"
            script.write_text("#!/nonexistent/interpreter\necho never\n")
            script.chmod(0o755)
            command = str(script)
        sc = await launch("run", "--", command)
        got, stdout, stderr = await sc.finish()
        assert got == code
        assert stop_record(stdout)["reason"] == "game_crashed"
        assert command in stderr


class TestSignals:
    async def test_sigterm_is_forwarded_and_no_self_stop_is_made(
        self, launch: Launch, emulator: EmulatorServer
    ) -> None:
        """SIGTERM to the sidecar reaches the game, its shutdown output is relayed, no DELETE."""
        env = await platform(emulator)
        sc = await launch("run", "--", *GAME, str(GAMES / "term_handler.py"), "0", env=env)
        await sc.wait_output(b"ready\n")
        sc.proc.send_signal(signal.SIGTERM)
        code, stdout, _ = await sc.finish()
        assert code == 0
        assert b"shutdown: SIGTERM received, saving state" in stdout
        assert (
            b'{"event": "sidecar.terminate", "signal": "SIGTERM", "stop_reason": null, '
            b'"stop_detail": null}\n' in stdout
        )
        assert b"sidecar.stop" not in stdout
        assert await emulator.requests(path_contains="/v1/self/stop/") == []

    async def test_game_ignoring_sigterm_is_killed_after_the_grace(self, launch: Launch) -> None:
        """SIDECAR_TERM_GRACE later the game gets SIGKILL; the sidecar exits 137."""
        sc = await launch(
            "run", "--", *GAME, str(GAMES / "ignore_term.py"), SIDECAR_TERM_GRACE="300ms"
        )
        await sc.wait_output(b"ready\n")
        sent = time.monotonic()
        sc.proc.send_signal(signal.SIGTERM)
        code, _, _ = await sc.finish()
        assert code == 137
        assert time.monotonic() - sent >= 0.3

    async def test_sigterm_while_draining_records_the_decided_stop(self, launch: Launch) -> None:
        """A SIGTERM that cuts a decided stop's drain short says in its record which stop it
        was (the stored logs keep the reason), and no self-stop follows."""
        sc = await launch("run", "--", *GAME, str(GAMES / "term_handler.py"))
        await sc.wait_output(b"ready\n")
        async with aiohttp.ClientSession() as http:
            body = {"reason": "nightly restart", "grace_seconds": 60}
            async with http.post(sc.url + "/v1/shutdown", json=body) as response:
                assert (response.status, (await response.json())["state"]) == (202, "draining")
        sc.proc.send_signal(signal.SIGTERM)
        code, stdout, _ = await sc.finish()
        assert code == 0
        (record,) = records(stdout, "sidecar.terminate")
        assert record["signal"] == "SIGTERM"
        assert record["stop_reason"] == "shutdown_requested"
        assert "nightly restart" in record["stop_detail"]
        assert records(stdout, "sidecar.stop") == []

    async def test_sigusr1_is_forwarded(self, launch: Launch, tmp_path: Path) -> None:
        """SIGUSR1 reaches the game unchanged."""
        script = tmp_path / "usr1.py"
        script.write_text(
            "import signal, sys\n"
            "def on(s, f):\n    print('got', signal.Signals(s).name, flush=True); sys.exit(0)\n"
            "signal.signal(signal.SIGUSR1, on)\nprint('ready', flush=True)\n"
            "while True: signal.pause()\n"
        )
        sc = await launch("run", "--", sys.executable, str(script))
        await sc.wait_output(b"ready\n")
        sc.proc.send_signal(signal.SIGUSR1)
        code, stdout, _ = await sc.finish()
        assert code == 0
        assert b"got SIGUSR1" in stdout


class TestLeftBehind:
    """The sidecar is the child subreaper of the game's tree: nothing the game started outlives
    it, even a process that left the game's session and ignores SIGTERM."""

    async def test_escaped_process_is_ended_when_the_platform_stops_us(
        self, launch: Launch
    ) -> None:
        """On SIGTERM the game goes, and so does its escaped, SIGTERM-ignoring child, killed
        SIDECAR_TERM_GRACE later, before the sidecar exits."""
        sc = await launch(
            "run", "--", *GAME, str(GAMES / "escape.py"), "stay", SIDECAR_TERM_GRACE="300ms"
        )
        await sc.wait_output(b"\n", timeout=10)
        escapee = int(bytes(sc.stdout).split()[1])
        with killed_at_exit([escapee]):
            assert running(escapee)
            sc.proc.send_signal(signal.SIGTERM)
            code, _, stderr = await sc.finish()
            assert code == 0
            assert not running(escapee), stderr[-2000:]
            assert "outlived SIGTERM" in stderr

    async def test_escaped_process_is_ended_after_the_game_exits(self, launch: Launch) -> None:
        """A game that exits leaving an escaped, SIGTERM-ignoring child: the child is ended
        (SIGKILL after the grace) and the sidecar exits with the game's code only after."""
        sc = await launch("run", "--", *GAME, str(GAMES / "escape.py"), SIDECAR_TERM_GRACE="300ms")
        await sc.wait_output(b"\n", timeout=10)
        escapee = int(bytes(sc.stdout).split()[1])
        with killed_at_exit([escapee]):
            code, stdout, stderr = await sc.finish()
            assert code == 0
            assert stop_record(stdout)["reason"] == "game_exited"
            assert not running(escapee), stderr[-2000:]


class TestIntegration:
    async def test_game_uses_the_local_api_through_sidecar_port(
        self, launch: Launch, emulator: EmulatorServer, tmp_path: Path
    ) -> None:
        """The game finds the API via SIDECAR_PORT, ends its match, and the stop reaches the
        platform with match_ended and the result; the platform's SIGTERM then ends the run."""
        env = await platform(emulator)
        script = tmp_path / "game.py"
        script.write_text(
            "import json, os, signal, sys, urllib.request\n"
            "url = os.environ['SIDECAR_URL']\n"
            "def post(path, body=None):\n"
            "    data = json.dumps(body or {}).encode()\n"
            "    req = urllib.request.Request(url + path, data=data, method='POST')\n"
            "    return urllib.request.urlopen(req, timeout=5).status\n"
            "signal.signal(signal.SIGTERM, lambda s, f: (print('bye', flush=True), sys.exit(0)))\n"
            "print('api port', os.environ['SIDECAR_PORT'], post('/v1/ready'), flush=True)\n"
            "post('/v1/players/connect', {'player_id': 'alice'})\n"
            "post('/v1/match/end', {'result': {'winner': 'alice'}, 'grace_seconds': 0})\n"
            "while True: signal.pause()\n"
        )
        sc = await launch("run", "--", sys.executable, str(script), env=env)
        await sc.wait_status(state="stopped")
        # This deployment is simulated (no process behind it), so the test plays the
        # platform's part: SIGTERM after the accepted stop.
        sc.proc.send_signal(signal.SIGTERM)
        code, stdout, _ = await sc.finish()
        assert code == 0
        assert b"bye\n" in stdout
        record = stop_record(stdout)
        assert record["reason"] == "match_ended"
        assert record["match_result"] == {"winner": "alice"}
        assert record["players_peak"] == 1
        assert f"api port {sc.port} 200".encode() in stdout

    async def test_game_sees_platform_and_sidecar_variables(
        self, launch: Launch, emulator: EmulatorServer
    ) -> None:
        """The child's environment holds ARBITRIUM_* and SIDECAR_PORT, and its own session."""
        env = await platform(emulator)
        sc = await launch(
            "run", "--", *GAME, str(GAMES / "introspect.py"), "ARBITRIUM_REQUEST_ID", env=env
        )
        code, stdout, _ = await sc.finish()
        assert code == 0
        info = json.loads(stdout.splitlines()[0])
        assert info["variable"] == env["ARBITRIUM_REQUEST_ID"]
        assert info["pid"] == info["pgid"]  # its own process group


class TestPortReadiness:
    async def test_udp_bind_makes_a_game_ready_and_player_timers_stay_off(
        self, launch: Launch
    ) -> None:
        """A game with no integration that binds UDP on 0.0.0.0 is ready by port and is not
        stopped by the ready or player timers."""
        sc = await launch(
            "run",
            "--",
            *GAME,
            str(GAMES / "udp_bind.py"),
            "0.0.0.0",
            "0",
            SIDECAR_READY_TIMEOUT="1500ms",
            SIDECAR_FIRST_PLAYER_TIMEOUT="200ms",
        )
        status = await sc.wait_status(state="ready")
        assert status["ready_source"] == "port"
        assert set(status["timers"]) <= {"health", "max_duration"}
        async with asyncio.timeout(10):  # outlive both timers by a margin
            while (await sc.status())["uptime_s"] < 2.0:
                await asyncio.sleep(0.1)
        final = await sc.status()
        assert (final["state"], final["stop_reason"]) == ("ready", None)
        assert final["game"]["rss_bytes"] > 0

    async def test_loopback_bind_is_not_ready(self, launch: Launch) -> None:
        """Listening on 127.0.0.1 only is not a game port: the ready timeout still fires."""
        sc = await launch(
            "run",
            "--",
            *GAME,
            str(GAMES / "udp_bind.py"),
            "127.0.0.1",
            "0",
            SIDECAR_READY_TIMEOUT="700ms",
        )
        status = await sc.wait_status(state="stopped")
        assert status["stop_reason"] == "ready_timeout"
        sc.proc.send_signal(signal.SIGTERM)
        code, stdout, _ = await sc.finish()
        assert stop_record(stdout)["reason"] == "ready_timeout"
        assert code == 128 + signal.SIGTERM  # the game died of the forwarded SIGTERM


class TestWatchMode:
    @staticmethod
    @contextlib.contextmanager
    def _idle_game(executable: str) -> Iterator[subprocess.Popen[bytes]]:
        """A game started by someone else (not the sidecar's child); it exits 0 when the test
        closes its stdin, and is always reaped."""
        game = subprocess.Popen(
            [executable, str(GAMES / "idle.py"), "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert game.stdout is not None
            assert game.stdout.readline() == b"ready\n"
            yield game
        finally:
            game.kill()
            game.wait()
            for pipe in (game.stdin, game.stdout):
                if pipe is not None:
                    pipe.close()

    async def test_watch_pid(self, launch: Launch) -> None:
        """serve --watch-pid stops with game_exited when that process exits."""
        with self._idle_game(sys.executable) as game:
            sc = await launch("serve", "--watch-pid", str(game.pid))
            await sc.wait_status(state="starting")
            assert game.stdin is not None
            game.stdin.close()
            game.wait(10)
            code, stdout, _ = await sc.finish()
        assert code == 0
        assert stop_record(stdout)["reason"] == "game_exited"

    async def test_a_watched_exit_code_is_unknown_not_0(self, launch: Launch) -> None:
        """A process that is not our child exits 9: its code cannot be read (only its parent
        gets it), and the stop says so instead of claiming code 0."""
        game = subprocess.Popen(
            [sys.executable, str(GAMES / "idle.py"), "9"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(game.wait)
            cleanup.callback(game.kill)
            assert game.stdin is not None
            assert game.stdout is not None
            cleanup.callback(game.stdout.close)
            assert game.stdout.readline() == b"ready\n"
            sc = await launch("serve", "--watch-pid", str(game.pid))
            await sc.wait_status(state="starting")
            game.stdin.close()
            assert game.wait(10) == 9
            _, stdout, stderr = await sc.finish()
        record = stop_record(stdout)
        assert record["reason"] == "game_exited"
        assert "exit code is unknown" in record["detail"]
        assert "exited: exit code unknown" in stderr
        assert "with code 0" not in stderr

    async def test_a_failed_stop_with_exit_terminates_the_watched_game(
        self, launch: Launch, emulator: EmulatorServer
    ) -> None:
        """SIDECAR_ON_STOP_FAILURE=exit (the default) terminates the game, the watched one too:
        beside it the sidecar is not the container's main process, and exiting alone left the
        game running and the deployment billing (found by the fault matrix)."""
        env = await platform(emulator)
        await emulator.add_fault(target="self_stop", status=403, count=1)
        with self._idle_game(sys.executable) as game:
            sc = await launch("serve", "--watch-pid", str(game.pid), env=env)
            await sc.wait_status(state="starting")
            async with (
                aiohttp.ClientSession() as http,
                http.post(sc.url + "/v1/shutdown", json={"grace_seconds": 0}) as response,
            ):
                assert response.status == 202
            code, _, stderr = await sc.finish()
            assert code == 1
            assert "terminating the watched game" in stderr
            assert game.wait(10) == -signal.SIGTERM

    async def test_watch_name(self, launch: Launch, tmp_path: Path) -> None:
        """serve --watch-name finds the game by its process name."""
        executable = tmp_path / "mygame-server"
        executable.symlink_to(shutil.which("python3") or sys.executable)
        with self._idle_game(str(executable)) as game:
            sc = await launch("serve", "--watch-name", "mygame-server")
            status = await sc.wait_status(state="starting")
            assert status["game"]["pid"] == game.pid
            assert game.stdin is not None
            game.stdin.close()
            code, stdout, _ = await sc.finish()
        assert code == 0
        assert stop_record(stdout)["reason"] == "game_exited"

    async def test_watch_name_not_found_is_a_usage_error(self, launch: Launch) -> None:
        """An unknown --watch-name exits 2 with a message."""
        sc = await launch("serve", "--watch-name", "no-such-game-xyz")
        code, _, stderr = await sc.finish()
        assert code == 2
        assert "no-such-game-xyz" in stderr
