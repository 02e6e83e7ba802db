"""`sidecar.client` against a real `python -m sidecar serve` child on a free loopback port.

Every sidecar here runs in dry-run (no ARBITRIUM_* variables), so a stop only logs what it would
have sent. Waiting is always a poll or a blocking read under a deadline, never a fixed sleep.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.addresses import local_url
from sidecar.client import (
    EventParser,
    EventStream,
    Heartbeat,
    SidecarAPIError,
    SidecarClient,
    SidecarConnectionError,
)
from tests.conftest import base_env, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
STOP_STATES = {"draining", "stopping", "stopped"}


def sidecar_env(port: int, **overrides: str) -> dict[str, str]:
    """The test process's environment minus platform and sidecar settings, plus `overrides`."""
    return base_env(SIDECAR_PORT=str(port), SIDECAR_HOST="127.0.0.1", **overrides)


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap the sidecar (reaped, so no ResourceWarning).

    Not SIGTERM: the sidecar's graceful shutdown is the subject of its own tests; here it only
    has to go away.
    """
    if process.poll() is None:
        process.kill()
    process.wait()


class Sidecar:
    """A running `python -m sidecar serve` child and a client bound to it."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = sidecar_env(self.port, **settings)
        self.log_path = tmp_path / f"sidecar-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve"],
            env=self.env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = SidecarClient(self.url, token=settings.get("SIDECAR_API_TOKEN"))

    def wait_serving(self) -> None:
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.healthz()
                return
            except SidecarConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sidecar did not come up:\n{self.log()}")
                time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        stop_child(self.process)
        self._log.close()


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    """Start sidecars with extra SIDECAR_* settings; every one is stopped at teardown."""
    started: list[Sidecar] = []

    def start(wait: bool = True, **settings: str) -> Sidecar:
        sidecar = Sidecar(tmp_path, **settings)
        started.append(sidecar)
        if wait:
            sidecar.wait_serving()
        return sidecar

    try:
        yield start
    finally:
        for sidecar in started:
            sidecar.close()


@pytest.fixture
def sidecar(start_sidecar: Callable[..., Sidecar]) -> Sidecar:
    return start_sidecar()


@pytest.fixture
def client(sidecar: Sidecar) -> SidecarClient:
    return sidecar.client


def next_state(stream: EventStream, wanted: set[str]) -> dict[str, Any]:
    """Read `state` events until one is in `wanted` (the stream's own timeout bounds each read)."""
    for event, data in stream:
        if event == "state" and data.get("state") in wanted:
            return data
    pytest.fail(f"event stream ended before a state in {wanted}")


class TestLifecycleCalls:
    def test_ready_moves_the_sidecar_to_ready(self, client: SidecarClient) -> None:
        """ready() reports the game ready and the status says so, with the API as source."""
        assert client.status()["state"] == "starting"
        client.ready()
        status = client.status()
        assert status["state"] == "ready"
        assert status["dry_run"] is True

    def test_ready_twice_is_fine(self, client: SidecarClient) -> None:
        """A repeated ready() is accepted, as games may call it on every map load."""
        client.ready()
        client.ready()
        assert client.status()["state"] == "ready"

    def test_health_and_activity_are_accepted(self, client: SidecarClient) -> None:
        """health() and activity() succeed and return the sidecar's JSON answer."""
        client.ready()
        assert isinstance(client.health(), dict)
        assert isinstance(client.activity(), dict)

    def test_connect_and_disconnect_return_the_count(self, client: SidecarClient) -> None:
        """connect()/disconnect() return the player count and are idempotent per id."""
        assert client.connect("alice") == 1
        assert client.connect("alice") == 1
        assert client.connect("bob") == 2
        assert client.disconnect("alice") == 1
        assert client.disconnect("alice") == 1
        assert client.players() == {"count": 1, "ids": ["bob"]}
        assert client.status()["state"] == "active"

    def test_set_players_replaces_the_roster(self, client: SidecarClient) -> None:
        """set_players() sets the exact roster by ids, or an anonymous count."""
        client.connect("alice")
        client.set_players(ids=["carol", "dave"])
        assert sorted(client.players()["ids"]) == ["carol", "dave"]
        client.set_players(count=5)
        assert client.players()["count"] == 5

    def test_set_players_needs_exactly_one_argument(self) -> None:
        """set_players() refuses ambiguous calls before sending anything."""
        client = SidecarClient(f"http://127.0.0.1:{free_port()}", startup_wait=0)
        with pytest.raises(ValueError, match="exactly one"):
            client.set_players()
        with pytest.raises(ValueError, match="exactly one"):
            client.set_players(ids=["a"], count=1)

    def test_hold_and_match_start(self, client: SidecarClient) -> None:
        """hold() is accepted and match_start() makes the server active."""
        client.ready()
        client.hold(30)
        client.hold(0)
        client.match_start("match-1")
        assert client.status()["state"] == "active"

    def test_match_end_starts_the_stop(self, start_sidecar: Callable[..., Sidecar]) -> None:
        """match_end() with a result stops with reason match_ended, and repeating it is harmless."""
        client = start_sidecar(SIDECAR_MATCH_END_GRACE="30s").client
        client.ready()
        answer = client.match_end(result={"winner": "alice"}, grace_seconds=30)
        assert answer["state"] == "draining"
        assert client.match_end()["stop_reason"] == "match_ended"
        status = client.status()
        assert status["state"] == "draining"
        assert status["stop_reason"] == "match_ended"

    def test_shutdown_records_its_reason(self, client: SidecarClient) -> None:
        """shutdown() stops with reason shutdown_requested."""
        client.ready()
        client.shutdown(reason="maintenance", grace_seconds=30, log_storage="true")
        status = client.status()
        assert status["stop_reason"] == "shutdown_requested"
        assert status["state"] in STOP_STATES

    def test_deployment_and_status_shapes(self, client: SidecarClient) -> None:
        """deployment() and status() return the documented top-level fields."""
        assert isinstance(client.deployment(), dict)
        status = client.status()
        for key in ("state", "stop_reason", "players", "timers", "uptime_s", "dry_run"):
            assert key in status


class TestErrors:
    def test_invalid_player_id_is_a_422(self, client: SidecarClient) -> None:
        """An empty player id raises SidecarAPIError with the API's 422 code and message."""
        with pytest.raises(SidecarAPIError) as caught:
            client.connect("")
        assert caught.value.status == 422
        assert caught.value.code
        assert caught.value.message

    def test_oversized_match_result_is_a_422(self, client: SidecarClient) -> None:
        """A match result over 16 KiB is refused with 422 and no stop starts."""
        with pytest.raises(SidecarAPIError) as caught:
            client.match_end(result={"blob": "x" * 17000})
        assert caught.value.status == 422
        assert client.status()["stop_reason"] is None

    def test_lifecycle_change_after_stop_is_a_409(self, client: SidecarClient) -> None:
        """match_start() after the stop is decided raises SidecarAPIError 409 (conflict)."""
        client.ready()
        client.match_end(grace_seconds=30)
        with pytest.raises(SidecarAPIError) as caught:
            client.match_start()
        assert caught.value.status == 409
        assert "409" in str(caught.value)

    def test_token_is_sent_as_bearer(self, start_sidecar: Callable[..., Sidecar]) -> None:
        """With SIDECAR_API_TOKEN, the client's token is accepted and a missing one gets 401."""
        sidecar = start_sidecar(SIDECAR_API_TOKEN="s3cret-token")
        sidecar.client.ready()
        anonymous = SidecarClient(sidecar.url, token="")
        with pytest.raises(SidecarAPIError) as caught:
            anonymous.status()
        assert caught.value.status == 401
        assert "s3cret" not in repr(sidecar.client)

    def test_token_defaults_from_environment(
        self, start_sidecar: Callable[..., Sidecar], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SidecarClient() reads SIDECAR_HOST, SIDECAR_PORT and SIDECAR_API_TOKEN."""
        sidecar = start_sidecar(SIDECAR_API_TOKEN="env-token")
        monkeypatch.setenv("SIDECAR_HOST", "0.0.0.0")
        monkeypatch.setenv("SIDECAR_PORT", str(sidecar.port))
        monkeypatch.setenv("SIDECAR_API_TOKEN", "env-token")
        client = SidecarClient()
        assert client.base_url == sidecar.url
        assert client.ready()["state"] == "ready"

    def test_unreachable_sidecar_fails_fast_after_startup(self) -> None:
        """With no sidecar and the start-up window over, a call fails at once."""
        client = SidecarClient(f"http://127.0.0.1:{free_port()}", startup_wait=0)
        started = time.monotonic()
        with pytest.raises(SidecarConnectionError, match="refused"):
            client.health()
        assert time.monotonic() - started < 1

    def test_waits_for_a_sidecar_that_starts_later(
        self, start_sidecar: Callable[..., Sidecar]
    ) -> None:
        """A call made before the sidecar listens is retried until it comes up."""
        sidecar = start_sidecar(wait=False)
        client = SidecarClient(sidecar.url, startup_wait=15)
        assert client.ready()["state"] == "ready"

    def test_bad_base_url_is_refused(self) -> None:
        """A base URL that is not http(s)://host:port raises ValueError at construction."""
        with pytest.raises(ValueError, match="base_url"):
            SidecarClient("127.0.0.1:8787")


class TestEvents:
    def test_state_change_arrives_as_an_event(self, client: SidecarClient) -> None:
        """events() yields the current state first, then a `state` event per change."""
        with client.events(timeout=10) as stream:
            assert next_state(stream, {"starting"})["state"] == "starting"
            client.ready()
            assert next_state(stream, {"ready"})["state"] == "ready"
            client.match_end(result={"winner": "bob"}, grace_seconds=30)
            drain = next_state(stream, STOP_STATES)
        assert drain["stop_reason"] == "match_ended"

    def test_closing_the_stream_ends_iteration(self, client: SidecarClient) -> None:
        """After close() the stream yields nothing more and holds no connection."""
        stream = client.events(timeout=10)
        next(stream)
        stream.close()
        with pytest.raises((StopIteration, SidecarConnectionError)):
            next(stream)

    def test_stream_framing_follows_the_event_stream_rules(self) -> None:
        """Named and unnamed events, multi-line data, comments and CRLF are read as browsers do."""
        parser = EventParser()
        lines = b': keep-alive\r\nevent: state\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        lines += b"\n\ndata:plain\nid: 7\n\n"
        events = [done for line in lines.splitlines(keepends=True) if (done := parser.feed(line))]
        assert events == [("state", '{"a":\n1}'), ("message", "plain")]

    def test_events_need_the_token(self, start_sidecar: Callable[..., Sidecar]) -> None:
        """Subscribing without the token raises the 401 at once, before any iteration."""
        sidecar = start_sidecar(SIDECAR_API_TOKEN="tok-0123")
        with pytest.raises(SidecarAPIError) as caught:
            SidecarClient(sidecar.url, token="").events(timeout=5)
        assert caught.value.status == 401


class TestHeartbeat:
    def test_beats_until_stopped(self, client: SidecarClient) -> None:
        """Heartbeat calls health() repeatedly on its thread and stops cleanly."""
        client.ready()
        heartbeat = Heartbeat(client, interval=0.02)
        with heartbeat:
            wait_for(lambda: heartbeat.beats >= 3, what="three heartbeats")
        assert not any(t.name == "sidecar-heartbeat" for t in threading.enumerate())

    def test_failures_are_reported_and_beating_continues(self) -> None:
        """A failing heartbeat goes to on_error and the thread keeps trying."""
        errors: list[Exception] = []
        client = SidecarClient(f"http://127.0.0.1:{free_port()}", startup_wait=0)
        with Heartbeat(client, interval=0.01, on_error=errors.append):
            wait_for(lambda: len(errors) >= 2, what="two reported failures")
        assert all(isinstance(e, SidecarConnectionError) for e in errors)


class TestVendorable:
    def test_imports_only_the_standard_library(self) -> None:
        """client.py imports nothing outside the stdlib, so it can be copied as one file."""
        tree = ast.parse((REPO / "sidecar" / "client.py").read_text())
        modules = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        assert modules <= set(sys.stdlib_module_names) | {"__future__"}

    @pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "[::]", "::1", "10.1.2.3", ""])
    def test_finds_the_sidecar_as_the_sidecar_tells_it(
        self, host: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """From SIDECAR_HOST/SIDECAR_PORT the client builds the URL the sidecar's own rule gives
        (client.py keeps a copy of sidecar.addresses.local_url so that it stays one file)."""
        monkeypatch.setenv("SIDECAR_HOST", host)
        monkeypatch.setenv("SIDECAR_PORT", "8787")
        assert SidecarClient().base_url == local_url(host, 8787)
