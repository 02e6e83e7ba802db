"""Every runnable example, exercised against a real `python -m sidecar serve` in dry-run.

The Python game and its bots play a whole match over real UDP, the curl script and the Node
example walk a match, and each time the sidecar's own status must show the stop under way with
reason `match_ended`. Waits are polls under a deadline, never fixed sleeps.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sidecar.client import SidecarClient, SidecarConnectionError
from tests.conftest import base_env, wait_for

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
STOP_STATES = {"draining", "stopping", "stopped"}
# How long a game gets to exit after SIGTERM before SIGKILL.
EXIT_GRACE = 5.0


def load_example(name: str, path: Path) -> ModuleType:
    """Import an example script by path (the examples are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


game = load_example("example_game_server", EXAMPLES / "python_game" / "server.py")
bots = load_example("example_game_bots", EXAMPLES / "python_game" / "bots.py")


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The test environment without platform or sidecar settings, plus `overrides`."""
    return base_env(**overrides)


class Child:
    """A child process whose output goes to a file (a full pipe would block it)."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, *, graceful: bool = True
    ) -> None:
        self.graceful = graceful
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            args, env=env, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (SIGKILL after EXIT_GRACE), or SIGKILL at once when not graceful; reaped."""
        if self.process.poll() is None and not self.graceful:
            self.process.kill()
        elif self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(EXIT_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait()
        self._log.close()
        return code


class Harness:
    """Starts sidecars and example games for one test and stops all of them afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.children: list[Child] = []

    def start(
        self, name: str, args: list[str], env: dict[str, str], *, graceful: bool = True
    ) -> Child:
        log_path = self.tmp_path / f"{name}-{len(self.children)}.log"
        child = Child(args, env, log_path, graceful=graceful)
        self.children.append(child)
        return child

    def sidecar(self, **settings: str) -> tuple[Child, SidecarClient]:
        port = free_port()
        env = clean_env(SIDECAR_HOST="127.0.0.1", SIDECAR_PORT=str(port), **settings)
        # Killed, not terminated, at teardown: the sidecar's graceful exit is the subject of its
        # own tests, and here waiting for it would only slow every test down.
        child = self.start(
            "sidecar", [sys.executable, "-m", "sidecar", "serve"], env, graceful=False
        )
        client = SidecarClient(f"http://127.0.0.1:{port}", token=settings.get("SIDECAR_API_TOKEN"))
        deadline = time.monotonic() + 15
        while True:
            try:
                client.healthz()
                return child, client
            except SidecarConnectionError:
                if child.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sidecar did not come up:\n{child.output()}")
                time.sleep(0.02)

    def game(self, client: SidecarClient, *args: str) -> tuple[Child, int]:
        """Start the example game beside `client`'s sidecar; returns it once it said ready."""
        port = free_port(socket.SOCK_DGRAM)
        command = [sys.executable, str(EXAMPLES / "python_game" / "server.py"), "--port", str(port)]
        env = clean_env(SIDECAR_PORT=client.base_url.rsplit(":", 1)[1])
        child = self.start("game", [*command, "--heartbeat", "0.2", *args], env)
        wait_for(lambda: client.status()["state"] == "ready", what="the game to report ready")
        return child, port

    def close(self) -> None:
        for child in self.children:
            child.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()


def wait_for_stop(client: SidecarClient) -> dict[str, Any]:
    """The sidecar's status once a stop is under way."""
    status: dict[str, Any] = wait_for(
        lambda: (s := client.status())["state"] in STOP_STATES and s,
        what="the sidecar to start stopping",
    )
    return status


def stop_record(sidecar: Child) -> dict[str, Any]:
    """The `sidecar.stop` JSON line the sidecar writes before its self-stop call."""

    def find() -> dict[str, Any] | None:
        for line in sidecar.output().splitlines():
            if line.startswith("{") and '"sidecar.stop"' in line:
                record: dict[str, Any] = json.loads(line)
                return record
        return None

    found: dict[str, Any] = wait_for(find, what="the sidecar.stop log line")
    return found


class TestPythonGame:
    def test_match_ends_when_every_player_has_left(self, harness: Harness) -> None:
        """Bots join, score and leave; the game ends the match and the sidecar stops for it."""
        sidecar, client = harness.sidecar(SIDECAR_MATCH_END_GRACE="0")
        server, port = harness.game(client)

        summary = bots.run_bots(
            "127.0.0.1", port, count=3, rounds=2, seed=7, interval=0, log=lambda line: None
        )
        outcomes = summary["bots"]
        assert sorted(outcomes) == ["bot-1", "bot-2", "bot-3"]
        assert all(o["joined"] and o["left"] and o["score"] > 0 for o in outcomes.values())

        status = wait_for_stop(client)
        assert status["stop_reason"] == "match_ended"
        assert status["players"]["count"] == 0
        result = stop_record(sidecar)
        scores = {player: o["score"] for player, o in outcomes.items()}
        assert result["match_result"]["scores"] == scores
        assert result["match_result"]["reason"] == "all_players_left"
        assert result["match_result"]["winner"] == max(scores, key=scores.__getitem__)

        assert server.stop() == 0
        assert "[game] shutdown: SIGTERM received" in server.output()

    def test_target_score_ends_the_match_early(self, harness: Harness) -> None:
        """With --target-score, the first bot to reach it wins and later scores are refused."""
        sidecar, client = harness.sidecar(SIDECAR_MATCH_END_GRACE="0")
        server, port = harness.game(client, "--target-score", "15")

        run = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "python_game" / "bots.py"),
                "--port",
                str(port),
                "--count",
                "2",
                "--rounds",
                "10",
                "--seed",
                "1",
                "--interval",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert "match over" in run.stdout

        assert wait_for_stop(client)["stop_reason"] == "match_ended"
        match_result = stop_record(sidecar)["match_result"]
        assert match_result["reason"] == "target_score"
        assert match_result["scores"][match_result["winner"]] >= 15
        assert server.stop() == 0

    def test_match_under_supervise_mode(self, harness: Harness) -> None:
        """`sidecar run -- server.py` (the demo's setup): the match ends the deployment, and on
        SIGTERM the game prints its shutdown line and the sidecar exits with the game's 0."""
        api_port, game_port = free_port(), free_port(socket.SOCK_DGRAM)
        server = [sys.executable, str(EXAMPLES / "python_game" / "server.py")]
        supervised = harness.start(
            "run",
            [sys.executable, "-m", "sidecar", "run", "--", *server, "--port", str(game_port)],
            clean_env(SIDECAR_PORT=str(api_port), SIDECAR_MATCH_END_GRACE="0"),
        )
        client = SidecarClient(f"http://127.0.0.1:{api_port}", startup_wait=15)
        wait_for(lambda: client.status()["state"] == "ready", what="the game to report ready")

        bots.run_bots("127.0.0.1", game_port, count=2, rounds=1, seed=3, interval=0, log=print)
        status = wait_for_stop(client)
        assert status["stop_reason"] == "match_ended"
        wait_for(lambda: client.status()["state"] == "stopped", what="the dry-run stop")

        supervised.process.terminate()
        assert supervised.process.wait(15) == 0
        output = supervised.output()
        assert "[game] match over (all_players_left)" in output
        assert "[game] shutdown: SIGTERM received" in output

    def test_game_keeps_serving_when_the_sidecar_is_absent(self, harness: Harness) -> None:
        """Without a sidecar the game still plays: sidecar failures are logged, never fatal."""
        port = free_port(socket.SOCK_DGRAM)
        dead = str(free_port())
        server = harness.start(
            "game",
            [
                sys.executable,
                str(EXAMPLES / "python_game" / "server.py"),
                *("--port", str(port), "--sidecar-wait", "0.2"),
            ],
            clean_env(SIDECAR_PORT=dead),
        )
        summary = bots.run_bots(
            "127.0.0.1",
            port,
            count=1,
            rounds=1,
            seed=1,
            interval=0,
            join_wait=20,
            log=lambda line: None,
        )
        assert summary["bots"]["bot-1"]["left"]
        assert server.stop() == 0
        assert "sidecar ready failed" in server.output()


class TestGameRules:
    def test_port_comes_from_the_ports_mapping(self) -> None:
        """The game binds the first UDP internal port of ARBITRIUM_PORTS_MAPPING."""
        mapping = {
            "ports": {
                "web": {"name": "web", "internal": 8080, "external": 31000, "protocol": "TCP"},
                "gameport": {"name": "gameport", "internal": 7000, "protocol": "UDP"},
            }
        }
        env = {"ARBITRIUM_PORTS_MAPPING": json.dumps(mapping)}
        assert game.game_port_from_env(env) == 7000

    def test_malformed_mapping_falls_back(self) -> None:
        """A malformed mapping is ignored in favour of ARBITRIUM_PORT_GAMEPORT_INTERNAL."""
        env = {"ARBITRIUM_PORTS_MAPPING": "{not json", "ARBITRIUM_PORT_GAMEPORT_INTERNAL": "7100"}
        assert game.game_port_from_env(env) == 7100
        assert game.game_port_from_env({}) is None

    def test_a_deeply_nested_mapping_falls_back(self) -> None:
        """A mapping nested 5000 deep (RecursionError in json.loads) is ignored like a
        malformed one by both example games: they start on their fallback port."""
        deep = "[" * 5000 + "]" * 5000
        env = {"ARBITRIUM_PORTS_MAPPING": deep, "ARBITRIUM_PORT_GAMEPORT_INTERNAL": "7100"}
        assert game.game_port_from_env(env) == 7100
        agones_game = load_example("example_agones_server", EXAMPLES / "agones_game" / "server.py")
        assert agones_game.game_port(env) == agones_game.DEFAULT_PORT

    def test_a_tie_has_no_winner(self) -> None:
        """When the top score is shared the result names no winner."""
        match = game.Match(target_score=0)
        for player in ("a", "b"):
            match.join(player)
            match.score(player, 5)
        match.leave("a")
        assert match.result is None
        match.leave("b")
        assert match.result == {
            "reason": "all_players_left",
            "winner": None,
            "scores": {"a": 5, "b": 5},
        }

    def test_a_resent_score_is_not_counted_twice(self) -> None:
        """SCORE carries a running total, so a duplicate or late datagram changes nothing."""
        match = game.Match(target_score=0)
        match.join("a")
        match.score("a", 7)
        match.score("a", 7)
        match.score("a", 3)
        assert match.scores == {"a": 7}

    def test_protocol_errors_are_answered(self, harness: Harness) -> None:
        """Malformed commands get an ERR reply naming the problem, over real UDP."""
        _, client = harness.sidecar()
        _, port = harness.game(client)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            replies = {}
            for command in ("PING", "DANCE x", "SCORE ghost 3", "SCORE", "JOIN a b"):
                sock.send(command.encode())
                replies[command] = sock.recv(2048).decode()
        assert replies["PING"] == "OK PING - players=0"
        assert replies["DANCE x"] == "ERR DANCE - unknown command"
        assert replies["SCORE ghost 3"] == "ERR SCORE ghost not joined"
        assert replies["SCORE"].startswith("ERR SCORE - usage")
        assert replies["JOIN a b"].startswith("ERR JOIN a usage")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
class TestCurlScript:
    script = str(EXAMPLES / "curl" / "integrate.sh")

    def run_script(
        self, client: SidecarClient, *args: str, **env: str
    ) -> subprocess.CompletedProcess[str]:
        port = client.base_url.rsplit(":", 1)[1]
        return subprocess.run(
            ["bash", self.script, *args],
            env=clean_env(SIDECAR_PORT=port, **env),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def test_demo_walks_a_match_with_a_token(self, harness: Harness) -> None:
        """`integrate.sh demo` with a token reports ready, players and the match end."""
        _, client = harness.sidecar(SIDECAR_API_TOKEN="curl-secret", SIDECAR_MATCH_END_GRACE="30s")
        run = self.run_script(client, "demo", SIDECAR_API_TOKEN="curl-secret")
        assert run.returncode == 0, run.stderr
        status = client.status()
        assert status["state"] in STOP_STATES
        assert status["stop_reason"] == "match_ended"
        assert status["players"]["count"] == 0
        assert "curl-secret" not in run.stdout + run.stderr

    def test_http_error_fails_the_command(self, harness: Harness) -> None:
        """A refused call exits non-zero and prints the sidecar's error."""
        _, client = harness.sidecar(SIDECAR_API_TOKEN="curl-secret")
        run = self.run_script(client, "ready")
        assert run.returncode == 1
        assert "HTTP 401" in run.stderr

    def test_player_ids_are_escaped(self, harness: Harness) -> None:
        """Quotes and backslashes in a player id reach the sidecar intact."""
        _, client = harness.sidecar()
        player = 'o"brien\\x'
        run = self.run_script(client, "connect", player)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == {"count": 1}
        assert client.players()["ids"] == [player]

    def test_players_count_and_status(self, harness: Harness) -> None:
        """`players N` sets the count and `status` prints the sidecar's status JSON."""
        _, client = harness.sidecar()
        assert self.run_script(client, "players", "3").returncode == 0
        run = self.run_script(client, "status")
        assert json.loads(run.stdout)["players"]["count"] == 3

    def test_unknown_command_prints_usage(self, harness: Harness) -> None:
        """An unknown command exits 2 with the usage text."""
        _, client = harness.sidecar()
        run = self.run_script(client, "dance")
        assert run.returncode == 2
        assert "Usage:" in run.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
class TestNodeExample:
    def run_node(self, client: SidecarClient, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["node", *args],
            env=clean_env(SIDECAR_PORT=client.base_url.rsplit(":", 1)[1]),
            cwd=EXAMPLES / "node",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def test_example_walks_a_match(self, harness: Harness) -> None:
        """example.mjs reports a match and sees the sidecar's stop event for match_ended."""
        _, client = harness.sidecar(SIDECAR_MATCH_END_GRACE="30s")
        run = self.run_node(client, "example.mjs")
        assert run.returncode == 0, run.stderr
        assert "sidecar is draining (match_ended)" in run.stdout
        assert client.status()["stop_reason"] == "match_ended"

    def test_client_maps_api_errors(self, harness: Harness) -> None:
        """The Node client raises SidecarAPIError with the API's status and code."""
        _, client = harness.sidecar()
        script = """
            import { SidecarClient, SidecarAPIError } from "./sidecar-client.mjs";
            const sidecar = new SidecarClient();
            try { await sidecar.connect(""); } catch (error) {
              console.log(JSON.stringify({ api: error instanceof SidecarAPIError,
                                           status: error.status, code: error.code }));
            }
            console.log(JSON.stringify(await sidecar.setPlayers({ ids: ["a", "b"] })));
        """
        run = self.run_node(client, "--input-type=module", "-e", script)
        assert run.returncode == 0, run.stderr
        error_line, roster_line = run.stdout.splitlines()
        assert json.loads(error_line) == {"api": True, "status": 422, "code": "invalid_body"}
        assert json.loads(roster_line)["count"] == 2
