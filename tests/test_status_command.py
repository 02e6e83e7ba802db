"""`edgegap-sidecar status` (SPEC §13) against a real sidecar in another process: the table,
`--json`, `--watch`, how the sidecar is found, and the exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.status_command import render_table
from tests.conftest import base_env, free_port
from tests.test_client import Sidecar, start_sidecar

__all__ = ["start_sidecar"]  # the fixture, shared with test_client.py

REPO = Path(__file__).resolve().parents[1]
TOKEN = "status-token-0123"


def status(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "status", *args],
        env=base_env(**env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def table(output: str) -> dict[str, str]:
    rows = [line.split("  ", 1) for line in output.splitlines()]
    return {name.strip(): value.strip() for name, value in rows}


class TestStatus:
    def test_table_shows_state_timers_players_and_match(
        self, start_sidecar: Callable[..., Sidecar]
    ) -> None:
        """The table shows state, timers with time left, players and match; never the token."""
        sidecar = start_sidecar(SIDECAR_API_TOKEN=TOKEN, SIDECAR_EMPTY_TIMEOUT="1h")
        sidecar.client.ready()
        sidecar.client.match_start("match-42")
        sidecar.client.connect("player-1")
        sidecar.client.disconnect("player-1")
        result = status(SIDECAR_PORT=str(sidecar.port), SIDECAR_API_TOKEN=TOKEN)
        assert result.returncode == 0, result.stderr
        rows = table(result.stdout)
        assert rows["state"] == "active"
        assert rows["timers"].startswith("empty 3")
        assert rows["timers"].endswith(" s left")
        assert rows["players"] == "0"
        assert rows["players peak"] == "1"
        assert rows["match"] == "match-42"
        assert rows["stop"] == "none decided"
        assert TOKEN not in result.stdout + result.stderr

    def test_json_is_the_status_body(self, start_sidecar: Callable[..., Sidecar]) -> None:
        """--json prints the /v1/status body, one JSON object, as the API wrote it."""
        sidecar = start_sidecar()
        sidecar.client.ready()
        result = status("--json", SIDECAR_URL=sidecar.url)
        assert result.returncode == 0, result.stderr
        printed = json.loads(result.stdout)
        expected = sidecar.client.status()
        assert printed.keys() == expected.keys()
        assert printed["state"] == expected["state"] == "ready"
        assert result.stdout.count("\n") == 1  # compact, as served

    def test_sidecar_url_wins_over_host_and_port(
        self, start_sidecar: Callable[..., Sidecar]
    ) -> None:
        """SIDECAR_URL, when set, is where the sidecar is asked (SIDECAR_PORT is ignored)."""
        sidecar = start_sidecar()
        result = status(SIDECAR_URL=sidecar.url + "/", SIDECAR_PORT=str(free_port()))
        assert result.returncode == 0, result.stderr
        assert table(result.stdout)["state"] == "starting"

    def test_nothing_answering_exits_1(self) -> None:
        """With no sidecar listening, the exit is 1 with one line naming the URL."""
        port = free_port()
        result = status(SIDECAR_PORT=str(port))
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith(f"edgegap-sidecar status: http://127.0.0.1:{port}: ")
        assert "Traceback" not in result.stderr

    def test_wrong_token_exits_1_naming_the_refusal(
        self, start_sidecar: Callable[..., Sidecar]
    ) -> None:
        """A refused token is exit 1 with the API's error code, and no token is printed."""
        sidecar = start_sidecar(SIDECAR_API_TOKEN=TOKEN)
        result = status(SIDECAR_PORT=str(sidecar.port), SIDECAR_API_TOKEN="wrong-token-99")
        assert result.returncode == 1
        assert "HTTP 401 unauthorized" in result.stderr
        assert "wrong-token-99" not in result.stderr + result.stdout

    def test_bad_port_is_a_usage_error(self) -> None:
        """A malformed SIDECAR_PORT or SIDECAR_URL is exit 2 naming the variable."""
        bad_port = status(SIDECAR_PORT="eighty")
        assert bad_port.returncode == 2
        assert bad_port.stderr.startswith("edgegap-sidecar: SIDECAR_PORT: ")
        bad_url = status(SIDECAR_URL="ftp://x")
        assert bad_url.returncode == 2
        assert bad_url.stderr.startswith("edgegap-sidecar: SIDECAR_URL: ")

    def test_the_url_is_never_shown_with_a_token(self) -> None:
        """Before: the error line printed SIDECAR_URL as set, token in userinfo and query. Now
        userinfo and query are redacted, and the token wherever else it stands (the path)."""
        port = free_port()
        url = f"http://u:{TOKEN}@127.0.0.1:{port}/{TOKEN}?t={TOKEN}"
        result = status(SIDECAR_URL=url, SIDECAR_API_TOKEN=TOKEN)
        assert result.returncode == 1
        assert TOKEN not in result.stdout + result.stderr
        assert result.stderr.startswith(
            f"edgegap-sidecar status: http://<redacted>@127.0.0.1:{port}/<redacted>?<redacted>: "
        )

    @pytest.mark.parametrize("host", ["h\udcff", "[::1]"])
    def test_a_host_the_sidecar_could_not_bind_is_a_usage_error(self, host: str) -> None:
        """Before: undecodable bytes in SIDECAR_HOST were a traceback. Now exit 2 naming it."""
        result = status(SIDECAR_HOST=host, SIDECAR_PORT="1")
        assert result.returncode == 2
        assert result.stderr.startswith("edgegap-sidecar: SIDECAR_HOST: ")
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize("url", ["http://127.0.0.1:1/\udcff", "http://h\u00e9st:1/"])
    def test_a_url_that_is_not_ascii_is_a_usage_error(self, url: str) -> None:
        """Before: a traceback. Now exit 2 naming SIDECAR_URL."""
        result = status(SIDECAR_URL=url)
        assert result.returncode == 2
        assert result.stderr.startswith("edgegap-sidecar: SIDECAR_URL: ")
        assert "Traceback" not in result.stderr


class TestWatch:
    def test_watch_follows_changes_until_interrupted(
        self, start_sidecar: Callable[..., Sidecar]
    ) -> None:
        """--watch prints the current state, then a line per change; Ctrl-C ends it with 0."""
        sidecar = start_sidecar(SIDECAR_API_TOKEN=TOKEN)
        watcher = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "status", "--watch"],
            env=base_env(SIDECAR_URL=sidecar.url, SIDECAR_API_TOKEN=TOKEN),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stdout is not None
            first = watcher.stdout.readline()
            assert first.startswith("state  state starting")
            sidecar.client.ready()
            assert watcher.stdout.readline().startswith("state  state ready")
            sidecar.client.connect("p1")
            assert "players 1" in watcher.stdout.readline()
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(timeout=10) == 0
            assert watcher.stderr is not None
            assert TOKEN not in watcher.stderr.read()
        finally:
            if watcher.poll() is None:
                watcher.kill()
            watcher.wait()
            for stream in (watcher.stdout, watcher.stderr):
                if stream is not None:
                    stream.close()

    def test_watch_json_ends_with_the_stream(self, start_sidecar: Callable[..., Sidecar]) -> None:
        """--watch --json prints each event's object and exits 0 when the sidecar goes away."""
        sidecar = start_sidecar()
        watcher = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "status", "--watch", "--json"],
            env=base_env(SIDECAR_URL=sidecar.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert watcher.stdout is not None
            assert json.loads(watcher.stdout.readline())["state"] == "starting"
            sidecar.process.send_signal(signal.SIGTERM)
            assert watcher.wait(timeout=15) == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
            watcher.wait()
            if watcher.stdout is not None:
                watcher.stdout.close()


class TestTable:
    def test_stop_and_attempts_as_the_api_wrote_them(self) -> None:
        """A stop in progress shows its reason, detail, attempts, outcome and last error."""
        body = {
            "state": "stopping",
            "stop_reason": "empty_timeout",
            "stop_detail": "no players for 60s",
            "players": {"count": 0, "ids": []},
            "timers": {},
            "stop": {
                "attempts": 3,
                "last_error": "HTTP 503",
                "last_status": 503,
                "outcome": None,
                "log_storage": "true",
            },
            "new_field": {"x": 1},
        }
        rows = table(render_table(body))
        assert rows["state"] == "stopping"
        assert rows["stop"] == "empty_timeout (no players for 60s)"
        assert rows["stop attempts"] == "3, outcome -, last status 503, last error HTTP 503"
        assert rows["stop log storage"] == "true"
        assert rows["timers"] == "none running"
        assert rows["new field"] == '{"x":1}'

    def test_control_characters_cannot_reach_the_terminal(self) -> None:
        """A match id or reason carrying escape codes or newlines is printed escaped."""
        body = {"state": "active", "match_id": "m\x1b[2J\nforged  line", "players": {"ids": []}}
        text = render_table(body)
        assert "\x1b" not in text
        assert len(text.splitlines()) == len(table(text))
        assert "m\\x1b[2J\\nforged  line" in text


@pytest.fixture(autouse=True)
def _no_inherited_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own SIDECAR_* exports must not point these tests elsewhere."""
    for name in list(os.environ):
        if name.startswith("SIDECAR_"):
            monkeypatch.delenv(name)
