"""The Agones facade's pure parts on a fake clock: the state mapping, Reserve against the idle
timers, the wire format, counters and lists, Kubernetes' metadata rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sidecar.agones import counters, metadata, proto_json
from sidecar.agones.counters import Counter, ListState, Refused
from sidecar.agones.gameserver import OPEN_ENDED_HOLD, FacadeOptions, GameServer
from sidecar.agones.manifest import GameServerManifest, HealthSpec
from sidecar.agones.proto_json import AgonesError, PingScanner
from sidecar.agones.state import agones_state
from sidecar.deployment import DeploymentInfo, Port
from sidecar.lifecycle import Lifecycle, RosterFull, State, StopReason, TimerSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTimers:
    """A call_later seam that records what was scheduled."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> Any:
        self.calls.append((delay, callback))
        return self

    def cancel(self) -> None:
        pass


def make(
    clock: FakeClock,
    *,
    timers: TimerSettings | None = None,
    call_later: FakeTimers | None = None,
    deployment: DeploymentInfo | None = None,
    **options: Any,
) -> tuple[Lifecycle, GameServer]:
    lifecycle = Lifecycle(timers or TimerSettings(), clock)
    gameserver = GameServer(
        lifecycle,
        FacadeOptions(**options),
        deployment or DeploymentInfo(),
        wall_clock=lambda: 1_700_000_000.0,
        call_later=call_later,
    )
    return lifecycle, gameserver


class TestStateMapping:
    def test_every_lifecycle_state(self) -> None:
        """Each lifecycle state shows as SPEC §10's GameServer state."""
        clock = FakeClock()
        lifecycle, gs = make(clock, auto_allocate=False)
        assert gs.state == "Scheduled"
        gs.ready()
        assert (lifecycle.state, gs.state) == (State.READY, "Ready")
        gs.allocate()
        assert (lifecycle.state, gs.state) == (State.ACTIVE, "Allocated")
        gs.reserve(10)
        assert gs.state == "Reserved"
        clock.now += 10.001
        assert gs.state == "Allocated"
        gs.shutdown()
        assert (lifecycle.state, gs.state) == (State.DRAINING, "Shutdown")

    def test_unhealthy_when_the_health_timer_stops_it(self) -> None:
        """A stop for `unhealthy` shows as Unhealthy; any other stop as Shutdown."""
        clock = FakeClock()
        lifecycle, gs = make(clock, timers=TimerSettings(health_timeout=5))
        gs.ready()
        gs.health(1)
        clock.now += 5
        lifecycle.poll()
        assert lifecycle.decision is not None
        assert lifecycle.decision.reason is StopReason.UNHEALTHY
        assert gs.state == "Unhealthy"

    def test_reserved_shows_over_any_state_before_a_stop(self) -> None:
        """A hold shows as Reserved on Scheduled, Ready and Allocated, never after a stop."""
        for state in (State.STARTING, State.READY, State.ACTIVE):
            assert agones_state(state, None, hold_active=True) == "Reserved"
        assert agones_state(State.TERMINATING, None, hold_active=True) == "Shutdown"

    def test_auto_allocate(self) -> None:
        """With auto-allocation (the default) Ready moves on to Allocated (lifecycle: active)."""
        lifecycle, gs = make(FakeClock())
        gs.ready()
        assert (lifecycle.state, lifecycle.ready_source, gs.state) == (
            State.ACTIVE,
            "agones",
            "Allocated",
        )

    def test_ready_does_not_turn_on_the_player_timers(self) -> None:
        """Ready alone arms no first-player timer (SPEC §10); player tracking does."""
        clock = FakeClock()
        lifecycle, gs = make(clock, timers=TimerSettings(first_player_timeout=10))
        gs.ready()
        assert "first_player" not in lifecycle.timers_left()
        gs.player_connect("p1")
        gs.player_disconnect("p1")
        assert "empty" in lifecycle.timers_left()

    def test_calls_after_a_stop_change_nothing(self) -> None:
        """After Shutdown, Ready/Allocate/Reserve are no-ops and Shutdown is idempotent."""
        clock = FakeClock()
        lifecycle, gs = make(clock)
        gs.shutdown()
        decision = lifecycle.decision
        for call in (gs.ready, gs.allocate, lambda: gs.reserve(30), gs.shutdown):
            call()
        assert lifecycle.decision is decision
        assert not lifecycle.hold_active
        assert gs.state == "Shutdown"
        assert [t.reason for t in lifecycle.later_triggers] == [StopReason.SHUTDOWN_REQUESTED]


class TestReserve:
    def test_reserve_suspends_idle_stops_then_the_window_restarts(self) -> None:
        """No empty_timeout while Reserved; after it ends the empty window is a full one."""
        clock = FakeClock()
        timers = TimerSettings(empty_timeout=60)
        lifecycle, gs = make(clock, timers=timers)
        gs.ready()
        gs.player_connect("p1")
        gs.player_disconnect("p1")  # the empty window starts now
        clock.now += 50
        gs.reserve(30)
        clock.now += 29
        assert lifecycle.poll() is None
        assert lifecycle.decision is None
        clock.now += 1  # the hold ends at 1080: a full 60 s window from there
        assert gs.state == "Allocated"
        clock.now += 59.9
        lifecycle.poll()
        assert lifecycle.decision is None
        clock.now += 0.1
        lifecycle.poll()
        assert lifecycle.decision is not None
        assert lifecycle.decision.reason is StopReason.EMPTY_TIMEOUT

    def test_open_ended_reserve_lasts_until_ready_or_allocate(self) -> None:
        """Reserve(0) holds until the next Ready/Allocate, and the idle window restarts then."""
        clock = FakeClock()
        lifecycle, gs = make(clock, timers=TimerSettings(empty_timeout=60), auto_allocate=False)
        gs.ready()
        gs.player_connect("p1")
        gs.player_disconnect("p1")
        gs.reserve(0)
        assert lifecycle.timers_left()["hold"] == pytest.approx(OPEN_ENDED_HOLD)
        clock.now += 3600
        lifecycle.poll()
        assert gs.state == "Reserved"
        assert lifecycle.decision is None
        gs.allocate()
        assert gs.state == "Allocated"
        assert lifecycle.timers_left()["empty"] == pytest.approx(60)

    def test_max_duration_still_stops_a_reserved_server(self) -> None:
        """A hold suspends idle stops only: max duration still applies."""
        clock = FakeClock()
        lifecycle, gs = make(clock, timers=TimerSettings(max_duration=100))
        gs.ready()
        gs.reserve(0)
        clock.now += 100
        lifecycle.poll()
        assert lifecycle.decision is not None
        assert lifecycle.decision.reason is StopReason.MAX_DURATION

    def test_ready_without_a_hold_leaves_the_idle_window_alone(self) -> None:
        """Repeated Ready calls do not postpone the idle timers (only a running hold ends)."""
        clock = FakeClock()
        lifecycle, gs = make(clock, timers=TimerSettings(empty_timeout=60))
        gs.ready()
        gs.player_connect("p1")
        gs.player_disconnect("p1")
        clock.now += 30
        gs.ready()
        gs.allocate()
        assert lifecycle.timers_left()["empty"] == pytest.approx(30)


class TestHealthFromTheManifest:
    def test_pings_in_the_initial_delay_count_from_its_end(self) -> None:
        """spec.health: a ping during initialDelaySeconds counts as a ping at the delay's end."""
        clock = FakeClock()
        fake = FakeTimers()
        manifest = GameServerManifest(
            path="gs.yaml",
            health=HealthSpec(period_seconds=2, failure_threshold=3, initial_delay_seconds=10),
        )
        lifecycle, gs = make(
            clock, timers=TimerSettings(health_timeout=6), manifest=manifest, call_later=fake
        )
        clock.now += 1
        gs.health(1)
        assert [delay for delay, _ in fake.calls] == [9]
        clock.now += 9
        fake.calls[0][1]()
        assert lifecycle.timers_left()["health"] == pytest.approx(6)
        gs.health(1)
        assert len(fake.calls) == 1  # after the delay, pings are plain heartbeats

    def test_spec_health_is_shown_as_given(self) -> None:
        """GameServer.spec.health is the manifest's; without one it states the sidecar's rule."""
        manifest = GameServerManifest(path="gs.json", health=HealthSpec(True, 7, 2, 1))
        _, gs = make(FakeClock(), manifest=manifest)
        assert gs.snapshot()["spec"]["health"] == {
            "disabled": True,
            "period_seconds": 7,
            "failure_threshold": 2,
            "initial_delay_seconds": 1,
        }
        _, plain = make(FakeClock(), health_timeout=30)
        assert plain.snapshot()["spec"]["health"] == {
            "disabled": False,
            "period_seconds": 30,
            "failure_threshold": 1,
            "initial_delay_seconds": 0,
        }


class TestGameServerObject:
    def test_synthesized_from_the_platform_variables(self) -> None:
        """Name/uid from the request id, address and ports (external) from ARBITRIUM_*."""
        deployment = DeploymentInfo(
            request_id="9f3c1a2b",
            public_ip="203.0.113.7",
            ports=(Port("gameport", 7777, 31500, "UDP"), Port("web", 8080, None, "TCP")),
        )
        _, gs = make(FakeClock(), deployment=deployment)
        snapshot = gs.snapshot()
        meta = snapshot["object_meta"]
        assert (meta["name"], meta["uid"], meta["namespace"]) == ("9f3c1a2b", "9f3c1a2b", "default")
        assert meta["creation_timestamp"] == str(1_700_000_000)
        status = snapshot["status"]
        assert status["address"] == "203.0.113.7"
        assert status["addresses"] == [{"type": "ExternalIP", "address": "203.0.113.7"}]
        assert status["ports"] == [
            {"name": "gameport", "port": 31500},
            {"name": "web", "port": 8080},
        ]

    def test_resource_version_moves_with_every_change_only(self) -> None:
        """resource_version changes when anything in the GameServer changed, never otherwise."""
        _, gs = make(FakeClock())
        first = gs.snapshot()["object_meta"]["resource_version"]
        assert gs.snapshot()["object_meta"]["resource_version"] == first
        gs.set_label("mode", "ranked")
        second = gs.snapshot()["object_meta"]["resource_version"]
        assert int(second) == int(first) + 1
        gs.player_connect("p1")
        assert int(gs.snapshot()["object_meta"]["resource_version"]) == int(second) + 1

    def test_player_capacity(self) -> None:
        """Connecting beyond a non-zero capacity is refused; 0 means no limit; repeats are false."""
        _, gs = make(FakeClock())
        assert all(gs.player_connect(f"p{i}") for i in range(5))
        gs.set_player_capacity(6)
        assert gs.player_connect("p5") is True
        assert gs.player_connect("p5") is False
        with pytest.raises(Refused, match="at capacity"):
            gs.player_connect("p6")
        assert gs.player_disconnect("p6") is False
        assert gs.player_disconnect("p5") is True

    def test_the_players_list_is_the_roster(self) -> None:
        """The players list's values are the roster, whichever side changes it."""
        clock = FakeClock()
        lifecycle, gs = make(clock)
        gs.add_list_value("players", "alice")
        assert lifecycle.player_ids == ["alice"]
        lifecycle.player_connected("bob")
        assert gs.get_list("players").values == ("alice", "bob")
        gs.update_list("players", ["values"], capacity=0, values=["bob", "carol"])
        assert lifecycle.player_ids == ["bob", "carol"]
        gs.remove_list_value("players", "bob")
        assert lifecycle.player_ids == ["carol"]
        with pytest.raises(Refused, match="not found"):
            gs.remove_list_value("players", "bob")

    def test_a_player_id_the_roster_refuses(self) -> None:
        """Roster ids follow the local API's rule (1-128 printable characters): 400."""
        _, gs = make(FakeClock())
        for bad in ("", "x" * 129, "tab\there"):
            with pytest.raises(AgonesError) as caught:
                gs.player_connect(bad)
            assert (caught.value.status, caught.value.code) == (400, 3)


class TestCounters:
    def test_agones_rules(self) -> None:
        """Capacity then count then diff, each kept within 0..capacity."""
        rooms = Counter(1, 10)
        assert counters.update_counter("r", rooms, count=None, capacity=42, diff=-1) == Counter(
            0, 42
        )
        assert counters.update_counter("r", rooms, count=40, capacity=42, diff=0) == Counter(40, 42)
        assert counters.update_counter("r", Counter(8, 10), count=None, capacity=5, diff=0) == (
            Counter(5, 5)
        )
        for kwargs in (
            {"count": 11, "capacity": None, "diff": 0},
            {"count": None, "capacity": None, "diff": -2},
            {"count": None, "capacity": -1, "diff": 0},
            {"count": None, "capacity": None, "diff": 0},
        ):
            with pytest.raises(Refused):
                counters.update_counter("r", rooms, **kwargs)

    def test_list_rules(self) -> None:
        """Unique values, at most capacity of them, capacity within 0..1000."""
        players = ListState(100, ("test0", "test1", "test2"))
        updated = counters.update_list(
            players, ["capacity", "values"], capacity=10, values=["test123", "test456"]
        )
        assert updated == ListState(10, ("test123", "test456"))
        kept = counters.update_list(players, ["values"], capacity=0, values=["x", "test1", "x"])
        assert kept == ListState(100, ("test1", "x"))
        assert counters.update_list(players, ["capacity"], capacity=2, values=[]) == ListState(
            2, ("test0", "test1")
        )
        with pytest.raises(Refused, match="range"):
            counters.update_list(players, ["capacity"], capacity=1001, values=[])
        with pytest.raises(Refused, match="invalid"):
            counters.update_list(players, ["colour"], capacity=0, values=[])
        with pytest.raises(Refused, match="already exists"):
            counters.check_add("players", players.values, 100, "test0")
        with pytest.raises(Refused, match="No available capacity"):
            counters.check_add("players", players.values, 3, "test9")


class TestWire:
    @pytest.mark.parametrize(
        ("body", "pings"),
        [(b"{}", 1), (b"{}{}", 2), (b" {}\n{} \n {}", 3), (b'{"note": "a } in a string"}', 1)],
    )
    def test_one_ping_per_object(self, body: bytes, pings: int) -> None:
        """`{}{}` is two pings; whitespace between objects is fine; strings may hold braces."""
        scanner = PingScanner()
        assert scanner.feed(body) == pings
        scanner.close()

    def test_objects_split_across_chunks(self) -> None:
        """A ping split over several chunks counts once, when it completes."""
        scanner = PingScanner()
        assert [scanner.feed(part) for part in (b"{", b'"a":"}', b'"}{', b"}")] == [0, 0, 1, 1]
        scanner.close()

    @pytest.mark.parametrize("body", [b"[]", b"{", b"{]", b"1", b"{}x", b'{"a": NaN}'])
    def test_malformed_streams(self, body: bytes) -> None:
        """Anything but a run of JSON objects is INVALID_ARGUMENT (400, code 3)."""
        scanner = PingScanner()

        def scan() -> None:
            scanner.feed(body)
            scanner.close()

        with pytest.raises(AgonesError) as caught:
            scan()
        assert (caught.value.status, caught.value.code) == (400, 3)

    def test_int64_in_either_form(self) -> None:
        """int64 fields accept a number or a string; null is the default; unknown fields go."""
        assert proto_json.DURATION.parse(b'{"seconds": "5"}') == {"seconds": 5}
        assert proto_json.DURATION.parse(b'{"seconds": 5, "extra": [1]}') == {"seconds": 5}
        assert proto_json.DURATION.parse(b'{"seconds": null}') == {"seconds": 0}
        assert proto_json.DURATION.parse(b"") == {"seconds": 0}
        assert proto_json.COUNTER_UPDATE.parse(b'{"countDiff": "-1"}') == {
            "count": None,
            "capacity": None,
            "countDiff": -1,
        }
        for bad in (b'{"seconds": "five"}', b'{"seconds": 1.5}', b'{"seconds": true}', b"[]"):
            with pytest.raises(AgonesError):
                proto_json.DURATION.parse(bad)
        with pytest.raises(AgonesError):
            proto_json.DURATION.parse(b'{"seconds": "9223372036854775808"}')

    def test_error_shape(self) -> None:
        """Errors are {"code", "message", "details": []}."""
        assert proto_json.parse_json(proto_json.refused("counter not found: x").body()) == {
            "code": 2,
            "message": "counter not found: x",
            "details": [],
        }


class TestMetadataRules:
    @pytest.mark.parametrize("key", ["mode", "creationTimestamp", "a.b-c_d", "x" * 59])
    def test_keys_kubernetes_takes(self, key: str) -> None:
        """Keys whose agones.dev/sdk- form is a qualified name pass."""
        assert metadata.key_problem(metadata.sdk_key(key)) is None

    @pytest.mark.parametrize("key", ["", "a/b", "x.", "x-", "x" * 60, "spa ce", "é"])
    def test_keys_kubernetes_refuses(self, key: str) -> None:
        """Empty, slashed, badly ended, over-long or non-ASCII keys are refused."""
        assert metadata.key_problem(metadata.sdk_key(key)) is not None

    def test_label_values(self) -> None:
        """A label value is empty or a name of at most 63 characters."""
        assert metadata.label_value_problem("") is None
        assert metadata.label_value_problem("v1.2_x") is None
        assert metadata.label_value_problem("has space") is not None
        assert metadata.label_value_problem("x" * 64) is not None


class TestTextThatIsNotText:
    """The core refuses a string it could never write out, whatever transport brought it."""

    @pytest.mark.parametrize(
        "call",
        [
            lambda gs: gs.set_label("a", "\ud800"),
            lambda gs: gs.set_annotation("\udc00", "v"),
            lambda gs: gs.set_annotation("a", "x\ud800"),
            lambda gs: gs.add_list_value("maps", "\ud800"),
            lambda gs: gs.update_list("maps", ["values"], capacity=0, values=["\udc00"]),
            lambda gs: gs.add_list_value("players", "\ud800"),
            lambda gs: gs.player_connect("\ud800"),
        ],
    )
    def test_invalid_argument_and_nothing_changed(self, call: Callable[[Any], Any]) -> None:
        manifest = GameServerManifest("gs.yaml", lists={"maps": ListState(5, ("a",))})
        _, gameserver = make(FakeClock(), manifest=manifest)
        before = gameserver.body()
        with pytest.raises(AgonesError) as caught:
            call(gameserver)
        assert (caught.value.status, caught.value.code) == (400, 3)
        assert gameserver.body() == before

    def test_a_refusal_quoting_such_a_value_is_still_json(self) -> None:
        """Agones' "not found. Value: …" message quoting a lone surrogate: a JSON escape."""
        body = proto_json.error_body(2, "not found. Value: \ud800 not found in List: maps")
        assert body.startswith(b'{"code":2,"message":"not found. Value: \\ud800 not')
        assert json.loads(body)["message"] == "not found. Value: \ud800 not found in List: maps"


class TestPlayersListCapacity:
    def test_without_a_manifest_the_roster_stops_at_1000_named_players(self) -> None:
        """The players list always exists with Agones' default capacity (1000): the 1001st
        named player is refused whichever API connects it; anonymous players (`PUT /v1/players
        {"count"}`) are not list values and are not held to it."""
        lifecycle, gameserver = make(FakeClock())
        for number in range(1000):
            lifecycle.player_connected(f"player-{number}")
        with pytest.raises(RosterFull, match="holds at most its capacity, 1000 players"):
            lifecycle.player_connected("one-too-many")
        with pytest.raises(Refused):
            gameserver.player_connect("one-too-many")
        assert gameserver.get_list("players").values[-1] == "player-999"
        assert len(gameserver.get_list("players").values) == 1000
        lifecycle.set_players(count=5000)
        assert gameserver.get_list("players").values == ()

    def test_lowering_the_capacity_disconnects_the_last_players(self) -> None:
        """UpdateList(capacity) below the values drops them from the end (Agones' rule); here
        the values are players, so they are disconnected, and the list stays within it."""
        lifecycle, gameserver = make(FakeClock())
        lifecycle.set_players(ids=["a", "b", "c"])
        updated = gameserver.update_list("players", ["capacity"], capacity=2, values=[])
        assert updated == ListState(2, ("a", "b"))
        assert lifecycle.player_ids == ["a", "b"]
