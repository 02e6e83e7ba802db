"""Acceptance tests: the sidecar as a user runs it, a real process driven over real HTTP.

They run against `python -m sidecar` in the normal suite and against the standalone build when
SIDECAR_BINARY is set (CI: scripts/build-binary, then these tests again), so both deliverables
meet the same contract.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from sidecar import __version__
from sidecar.emulator import EmulatorServer
from tests.conftest import GAMES, free_port
from tests.e2e.conftest import FakePlatform, StartSidecar
from tests.e2e.process import ROOT, clean_environ, json_records, sidecar_command


def run_cli(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """One short command of the sidecar, to completion."""
    return subprocess.run(
        [*sidecar_command(), *args],
        env=clean_environ(**variables),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class TestCommandLine:
    def test_version(self) -> None:
        """--version prints the package version and exits 0."""
        result = run_cli("--version")
        assert result.returncode == 0
        assert result.stdout.strip() == f"edgegap-sidecar {__version__}"

    def test_check_config_ok(self) -> None:
        """check-config with a clean environment exits 0 and shows the dry-run mode."""
        result = run_cli("check-config", SIDECAR_EMPTY_TIMEOUT="90s")
        assert result.returncode == 0, result.stderr
        assert "SIDECAR_EMPTY_TIMEOUT" in result.stdout
        assert "dry-run" in result.stdout

    def test_check_config_names_the_bad_variable(self) -> None:
        """An invalid value exits 2 naming the variable, without a traceback."""
        result = run_cli("check-config", SIDECAR_EMPTY_TIMEOUT="soon")
        assert result.returncode == 2
        assert "SIDECAR_EMPTY_TIMEOUT" in result.stderr
        assert "Traceback" not in result.stderr

    def test_check_config_redacts_the_token(self) -> None:
        """The delete token never appears in check-config's output."""
        token = "secret-token-0123456789"
        result = run_cli(
            "check-config",
            ARBITRIUM_DELETE_URL="https://api.example.invalid/v1/self/stop/abc/xyz",
            ARBITRIUM_DELETE_TOKEN=token,
        )
        assert result.returncode == 0, result.stderr
        assert token not in result.stdout + result.stderr

    def test_usage_error_exits_2(self) -> None:
        """`run` without a game command is a usage error (exit 2)."""
        result = run_cli("run")
        assert result.returncode == 2
        assert "Traceback" not in result.stderr


class TestServe:
    async def test_port_in_use_exits_3(self, start_sidecar: StartSidecar) -> None:
        """A local API port that is already taken → exit 3 with a message naming the port."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            sidecar = await start_sidecar(["serve"], clean_environ(SIDECAR_PORT=str(port)), port)
            assert await sidecar.wait_exit() == 3
        assert str(port) in "\n".join(sidecar.stderr)
        assert not any("Traceback" in line for line in sidecar.stderr)

    async def test_a_whole_match_over_http(self, start_sidecar: StartSidecar) -> None:
        """Dry-run serve: healthz, status, ready → connect → match end → stopped; SIGTERM → 0."""
        port = free_port()
        env = clean_environ(SIDECAR_PORT=str(port), SIDECAR_MATCH_END_GRACE="50ms")
        sidecar = await start_sidecar(["serve"], env, port)
        await sidecar.wait_healthy()
        assert await sidecar.call("GET", "/healthz") == (200, {"status": "ok"})
        status, body = await sidecar.call("GET", "/v1/status")
        assert (status, body["state"], body["dry_run"]) == (200, "starting", True)

        assert (await sidecar.call("POST", "/v1/ready"))[1]["state"] == "ready"
        connected = await sidecar.call("POST", "/v1/players/connect", {"player_id": "alice"})
        assert connected == (200, {"count": 1})
        assert (await sidecar.call("POST", "/v1/match/start", {}))[1]["state"] == "active"
        status, body = await sidecar.call("POST", "/v1/match/end", {"result": {"winner": "alice"}})
        assert (status, body["stop_reason"]) == (202, "match_ended")

        final = await sidecar.wait_state("stopped")
        assert final["stop_reason"] == "match_ended"
        (record,) = json_records(sidecar.stdout, "sidecar.stop")
        assert record["reason"] == "match_ended"
        assert record["match_result"] == {"winner": "alice"}
        assert record["players_peak"] == 1

        sidecar.signal(signal.SIGTERM)
        assert await sidecar.wait_exit() == 0
        assert json_records(sidecar.stdout, "sidecar.terminate") == [
            {
                "event": "sidecar.terminate",
                "signal": "SIGTERM",
                "stop_reason": "match_ended",
                "stop_detail": "the game ended the match",
            }
        ]


class TestSelfStop:
    async def test_shutdown_self_stops_the_emulated_deployment(
        self, start_sidecar: StartSidecar, emulator: EmulatorServer
    ) -> None:
        """POST /v1/shutdown → one DELETE with the raw token → the deployment terminates."""
        request_id = await emulator.deploy()
        await emulator.wait_for_status(request_id, "Status.READY")
        platform_env = await emulator.env(request_id)
        port = free_port()
        sidecar = await start_sidecar(
            ["serve"], clean_environ(**platform_env, SIDECAR_PORT=str(port)), port
        )
        await sidecar.wait_healthy()
        status, body = await sidecar.call("POST", "/v1/shutdown", {"grace_seconds": 0})
        assert (status, body["dry_run"]) == (202, False)

        final = await sidecar.wait_state("stopped", "failed", timeout=20)
        assert final["state"] == "stopped"
        calls = await emulator.requests(path_contains="/v1/self/stop/", method="DELETE")
        assert len(calls) == 1
        headers = {key.lower(): value for key, value in calls[0]["headers"].items()}
        assert headers["authorization"] == platform_env["ARBITRIUM_DELETE_TOKEN"]
        terminated = await emulator.wait_for_status(request_id, "Status.TERMINATED")
        assert terminated["current_status"] == "Status.TERMINATED"
        output = "\n".join(sidecar.stdout + sidecar.stderr)
        assert platform_env["ARBITRIUM_DELETE_TOKEN"] not in output


class TestSelfStopOverHttps:
    async def test_trusted_certificate_accepts_the_stop(
        self, start_sidecar: StartSidecar, https_platform: tuple[FakePlatform, Path]
    ) -> None:
        """The self-stop goes over verified TLS (bundled OpenSSL, SSL_CERT_FILE honoured)."""
        platform, cert = https_platform
        token = "raw-delete-token-42"
        port = free_port()
        env = clean_environ(
            ARBITRIUM_DELETE_URL=platform.url,
            ARBITRIUM_DELETE_TOKEN=token,
            SSL_CERT_FILE=str(cert),
            SIDECAR_PORT=str(port),
        )
        sidecar = await start_sidecar(["serve"], env, port)
        await sidecar.wait_healthy()
        assert (await sidecar.call("POST", "/v1/shutdown", {"grace_seconds": 0}))[0] == 202
        final = await sidecar.wait_state("stopped", "failed", timeout=20)
        assert final["state"] == "stopped", final["stop"]
        assert [call["Authorization"] for call in platform.calls] == [token]

    async def test_untrusted_certificate_is_refused(
        self, start_sidecar: StartSidecar, https_platform: tuple[FakePlatform, Path]
    ) -> None:
        """A platform certificate nobody vouches for gets no token: the stop fails instead."""
        platform, _ = https_platform
        port = free_port()
        env = clean_environ(
            ARBITRIUM_DELETE_URL=platform.url,
            ARBITRIUM_DELETE_TOKEN="raw-delete-token-42",
            SIDECAR_STOP_RETRY_BUDGET="1s",
            SIDECAR_ON_STOP_FAILURE="stay",
            SIDECAR_PORT=str(port),
        )
        sidecar = await start_sidecar(["serve"], env, port)
        await sidecar.wait_healthy()
        assert (await sidecar.call("POST", "/v1/shutdown", {"grace_seconds": 0}))[0] == 202
        final = await sidecar.wait_state("stopped", "failed", timeout=20)
        assert final["state"] == "failed"
        assert "certificate" in str(final["stop"]["last_error"]).lower()
        assert platform.calls == []


class TestRunMode:
    async def test_game_exit_code_and_stop_record_after_its_output(
        self, start_sidecar: StartSidecar
    ) -> None:
        """run -- GAME: the game's output, then the stop record; the sidecar exits with its code."""
        game = [sys.executable, "-c", "import sys; print('bye', flush=True); sys.exit(3)"]
        env = clean_environ(SIDECAR_PORT=str(free_port()))
        sidecar = await start_sidecar(["run", "--", *game], env)
        assert await sidecar.wait_exit() == 3
        assert "bye" in sidecar.stdout
        (record,) = json_records(sidecar.stdout, "sidecar.stop")
        assert sidecar.stdout.index("bye") < sidecar.stdout.index(
            next(line for line in sidecar.stdout if '"sidecar.stop"' in line)
        )
        assert record["reason"] == "game_crashed"
        assert record["exit_code"] == 3

    async def test_sigterm_is_forwarded_to_the_game(self, start_sidecar: StartSidecar) -> None:
        """SIGTERM to the sidecar reaches the game, which shuts down cleanly; no self-stop."""
        port = free_port()
        game = [sys.executable, str(GAMES / "term_handler.py"), "0"]
        sidecar = await start_sidecar(
            ["run", "--", *game], clean_environ(SIDECAR_PORT=str(port)), port
        )
        await sidecar.wait_line(lambda line: line == "ready")
        await sidecar.wait_healthy()
        sidecar.signal(signal.SIGTERM)
        await sidecar.wait_line(lambda line: line.startswith("shutdown: SIGTERM received"))
        assert await sidecar.wait_exit() == 0
        assert json_records(sidecar.stdout, "sidecar.terminate") == [
            {
                "event": "sidecar.terminate",
                "signal": "SIGTERM",
                "stop_reason": None,
                "stop_detail": None,
            }
        ]
        assert json_records(sidecar.stdout, "sidecar.stop") == []

    async def test_missing_game_exits_127(self, start_sidecar: StartSidecar) -> None:
        """A game command that does not exist → exit 127."""
        env = clean_environ(SIDECAR_PORT=str(free_port()))
        sidecar = await start_sidecar(["run", "--", str(GAMES / "no-such-game")], env)
        assert await sidecar.wait_exit(timeout=20) == 127
