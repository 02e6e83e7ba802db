"""The emulator under hostile input (SPEC §11 Round 2): `--app-version` files, deploy
environment variables, match tickets, header bytes, the sidecar proxy's destination and game
output are bounded or refused with a 4xx / exit 2 naming what is wrong; never a hang, a 5xx, a
traceback, a stuck deployment or a leaked token."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from tests.conftest import base_env


def emulate(*argv: str) -> subprocess.CompletedProcess[str]:
    """`sidecar emulate ARGV` as a user runs it; bounded so a hang fails by name."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "emulate", "--port", "0", *argv],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class TestAppVersionFile:
    @pytest.mark.parametrize("kind", ["fifo", "device", "deep", "nan", "oversize", "directory"])
    def test_bad_file_exits_2_naming_the_option(self, tmp_path: Path, kind: str) -> None:
        """A FIFO, a device, a directory, JSON nested 100,000 deep, NaN or a file over 1 MiB
        given to --app-version exits 2 naming the option and the problem, at once: no hang
        before listening, no memory spike, no RecursionError traceback."""
        path = tmp_path / "version.json"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path = Path("/dev/zero")
        elif kind == "directory":
            path = tmp_path
        elif kind == "deep":
            path.write_text("[" * 100_000 + "]" * 100_000)
        elif kind == "nan":
            path.write_text('{"time_to_deploy": NaN}')
        else:
            path.write_text('{"envs": [], "pad": "' + "x" * (1024 * 1024) + '"}')
        result = emulate(f"--app-version=game={path}")
        assert result.returncode == 2, result.stderr
        assert "--app-version" in result.stderr
        assert str(path) in result.stderr
        assert "Traceback" not in result.stderr


def game_command() -> str:
    """A backed game that binds its game port and waits."""
    script = (
        "import os, socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('127.0.0.1', int(os.environ['ARBITRIUM_PORT_GAMEPORT_INTERNAL'])))\n"
        "time.sleep(60)\n"
    )
    return f"{sys.executable} -c {shlex.quote(script)}"


class TestDeployEnvironment:
    @pytest.mark.parametrize(
        ("key", "value", "problem"),
        [
            ("A=B", "x", "'A=B': a key cannot contain '='"),
            ("A\0B", "x", "a key cannot contain '=' or a NUL"),
            ("SECRET", "s3cr\0t-value", "'SECRET': a value cannot contain a NUL"),
        ],
    )
    async def test_unusable_variable_is_refused_by_name(
        self, key: str, value: str, problem: str
    ) -> None:
        """A deploy (v2 and v1) whose variable no process environment can hold answers 4xx
        naming the variable (never its value), instead of a deployment stuck in DEPLOYING."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": game_command()})
        variable = {"key": key, "value": value}
        async with EmulatorServer(options) as emu:
            v2 = {"application": "game", "version": "v1", "environment_variables": [variable]}
            v1 = {"app_name": "game", "version_name": "v1", "env_vars": [variable]}
            for path, body, expected in (("/deployments", v2, 400), ("/v1/deploy", v1, 422)):
                status, answer = await emu.call("POST", path, json=body)
                assert status == expected, answer
                assert problem in json.dumps(answer, ensure_ascii=False).replace("\\\\", "\\")
                assert "s3cr" not in json.dumps(answer)
            _, listing = await emu.call("GET", "/v1/deployments")
            assert listing["data"] == []

    def test_unusable_variable_in_app_version_file_exits_2(self, tmp_path: Path) -> None:
        """An --app-version file whose `envs` holds such a key exits 2 naming the option."""
        path = tmp_path / "version.json"
        path.write_text(json.dumps({"envs": [{"key": "A=B", "value": "x"}]}))
        result = emulate(f"--app-version=game={path}")
        assert result.returncode == 2, result.stderr
        assert "--app-version" in result.stderr
        assert "'A=B'" in result.stderr


class TestMatchTickets:
    @pytest.mark.parametrize(
        ("attributes", "needle"),
        [
            ('{"skill": NaN}', "attributes.skill is NaN or Infinity"),
            ('{"skill": Infinity}', "attributes.skill is NaN or Infinity"),
            ('{"mode": "x", "scores": [1, -Infinity]}', "attributes.scores.1 is NaN"),
            ('{"skill": 1e400}', "attributes.skill is NaN or Infinity"),
            ('{"deep": ' + "[" * 70 + "]" * 70 + "}", "nests deeper than 64 levels"),
        ],
    )
    async def test_ticket_the_sidecar_would_ignore_is_400(
        self, attributes: str, needle: str
    ) -> None:
        """A ticket attribute the sidecar refuses to read (NaN, Infinity, an overflowing
        number, nesting past 64) answers 400 naming it, instead of a rehearsed match whose
        game sees no players."""
        body = '{"app": "simulated", "tickets": [{"attributes": %s}, {}]}' % attributes
        async with EmulatorServer() as emu:
            status, answer = await emu.call(
                "POST",
                "/_emulator/matches",
                data=body.encode(),
                headers={"content-type": "application/json"},
            )
            assert status == 400, answer
            assert needle in json.dumps(answer), answer
            _, listing = await emu.call("GET", "/v1/deployments")
            assert listing["total_count"] == 0
