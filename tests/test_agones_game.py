"""examples/agones_game: a game integrated with Agones only, run under `edgegap-sidecar run`
with SIDECAR_AGONES=true inside an emulated Edgegap deployment, self-stops once, for its
Shutdown(), with its logs kept."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from tests.conftest import GAMES, ROOT, Launch, free_port

SERVER = ROOT / "examples" / "agones_game" / "server.py"


def sidecar_env(**extra: str) -> dict[str, str]:
    """The deployment's sidecar settings (the platform adds ARBITRIUM_* itself)."""
    return {
        "SIDECAR_HOST": "127.0.0.1",
        "SIDECAR_PORT": str(free_port()),
        "SIDECAR_AGONES": "true",
        "SIDECAR_AGONES_HTTP_PORT": "0",
        "SIDECAR_MATCH_END_GRACE": "200ms",
        "SIDECAR_LOG_STORAGE": "true",
        "SIDECAR_DRY_RUN": "false",
        "SIDECAR_STOP_RETRY_BUDGET": "10s",
        "SIDECAR_TERM_GRACE": "2s",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        **extra,
    }


@pytest.fixture
async def emulator_with_agones_game() -> AsyncIterator[EmulatorServer]:
    command = "exec " + shlex.join(
        [
            *(sys.executable, "-m", "sidecar", "run", "--", sys.executable, str(SERVER)),
            *("--host", "127.0.0.1", "--health-interval", "0.2"),
        ]
    )
    options = EmulatorOptions(
        port=0,
        status_step_seconds=0.0,
        game_port=0,
        stop_grace_seconds=5.0,
        apps={"agones-game": command},
    )
    async with EmulatorServer(options) as emulator:
        yield emulator


def udp(port: int, *commands: str) -> list[str]:
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for command in commands:
            sock.sendto(command.encode(), ("127.0.0.1", port))
            replies.append(sock.recv(2048).decode())
    return replies


async def wait_for_log(emulator: EmulatorServer, request_id: str, needle: str) -> str:
    async with asyncio.timeout(20):
        while True:
            logs = (await emulator.logs(request_id))["logs"]
            if needle in logs:
                return str(logs)
            await asyncio.sleep(0.05)


class TestAgonesGame:
    @pytest.mark.slow
    async def test_self_stops_once_for_its_shutdown(
        self, emulator_with_agones_game: EmulatorServer
    ) -> None:
        """Ready, health, players and Shutdown over Agones' API → one self-stop, reason
        shutdown_requested, the deployment terminated and its logs stored."""
        emulator = emulator_with_agones_game
        request_id = await emulator.deploy(
            "agones-game",
            environment_variables=[
                {"key": key, "value": value, "is_hidden": False}
                for key, value in sidecar_env().items()
            ],
        )
        await emulator.wait_for_status(request_id, "Status.READY")
        platform = await emulator.env(request_id)
        ports = json.loads(platform["ARBITRIUM_PORTS_MAPPING"])["ports"]
        game_port = next(iter(ports.values()))["internal"]
        await wait_for_log(emulator, request_id, "told Agones we are ready")
        replies = await asyncio.to_thread(
            udp, game_port, "JOIN alice", "JOIN bob", "SCORE alice 3", "LEAVE bob", "LEAVE alice"
        )
        assert replies[-1] == "OK LEAVE alice players=0"
        terminated = await emulator.wait_for_status(request_id, "Status.TERMINATED", timeout=20)
        assert terminated["current_status"] == "Status.TERMINATED"
        stops = await emulator.requests(path_contains="/v1/self/stop/", method="DELETE")
        assert len(stops) == 1
        assert stops[0]["query"] == {"container_log_storage": "true"}
        logs = await wait_for_log(emulator, request_id, '"sidecar.stop"')  # kept after the stop
        (record,) = [
            json.loads(line[line.index("{") :])
            for line in logs.splitlines()
            if '"sidecar.stop"' in line
        ]
        assert record["reason"] == "shutdown_requested"
        assert record["players_peak"] == 2
        assert "[agones-game] connected to Agones: GameServer " + request_id in logs
        assert "[agones-game] told Agones to shut down" in logs


class TestRunMode:
    async def test_the_game_gets_the_agones_port(self, launch: Launch) -> None:
        """Run mode puts AGONES_SDK_HTTP_PORT (the port actually bound) in the game's env."""
        sc = await launch(
            "run",
            "--",
            sys.executable,
            str(GAMES / "introspect.py"),
            "AGONES_SDK_HTTP_PORT",
            SIDECAR_AGONES="true",
            SIDECAR_AGONES_HTTP_PORT="0",
        )
        code, stdout, _ = await sc.finish()
        assert code == 0
        port = json.loads(stdout.splitlines()[0])["variable"]
        assert port is not None
        assert int(port) > 0

    async def test_without_the_facade_no_agones_port(self, launch: Launch) -> None:
        """With SIDECAR_AGONES off the game gets no AGONES_SDK_HTTP_PORT and nothing listens."""
        sc = await launch(
            "run", "--", sys.executable, str(GAMES / "introspect.py"), "AGONES_SDK_HTTP_PORT"
        )
        code, stdout, _ = await sc.finish()
        assert code == 0
        assert json.loads(stdout.splitlines()[0])["variable"] is None


def test_example_is_stdlib_only() -> None:
    """The example imports nothing outside the standard library (a game copies it as is)."""
    source = Path(SERVER).read_text()
    imports = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and "__future__" not in line
    }
    assert imports <= set(sys.stdlib_module_names)
