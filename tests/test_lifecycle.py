"""Timer rules and transitions of the pure lifecycle core, on a fake clock (no sleeping)."""

from __future__ import annotations

import pytest

from sidecar.lifecycle import (
    ROSTER_CAP,
    Change,
    Lifecycle,
    ReadySource,
    RosterFull,
    State,
    StopReason,
    TimerSettings,
    TransitionRefused,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(clock: FakeClock, **timers: float) -> Lifecycle:
    """A lifecycle with SPEC §4's default timers (TimerSettings' own), but for `timers`."""
    return Lifecycle(TimerSettings(**timers), clock)


def run_until(lc: Lifecycle, clock: FakeClock, seconds: float) -> None:
    """Advance the clock to each deadline in turn, polling like the runtime does."""
    end = clock.now + seconds
    while True:
        lc.poll()
        deadline = lc.next_deadline()
        if deadline is None or deadline > end:
            clock.now = end
            lc.poll()
            return
        clock.now = max(clock.now, deadline)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestReady:
    def test_ready_timeout_fires_when_the_game_never_reports_ready(self, clock: FakeClock) -> None:
        """A game that never becomes ready is stopped for ready_timeout at exactly 5 minutes."""
        lc = make(clock)
        run_until(lc, clock, 299.9)
        assert lc.state is State.STARTING
        run_until(lc, clock, 0.1)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.READY_TIMEOUT
        assert lc.decision.abnormal
        assert lc.state is State.STOPPING

    def test_ready_cancels_the_ready_timer_and_is_idempotent(self, clock: FakeClock) -> None:
        """Calling ready twice is fine and the first call's time counts."""
        lc = make(clock)
        clock.advance(10)
        lc.ready()
        clock.advance(10)
        lc.ready()
        assert lc.state is State.READY
        assert lc.ready_at == 1010.0
        assert "ready" not in lc.timers_left()

    def test_player_before_ready_moves_to_active_and_disarms_ready_timeout(
        self, clock: FakeClock
    ) -> None:
        """A server with players is never stopped for ready_timeout."""
        lc = make(clock, ready_timeout=10)
        lc.player_connected("p1")
        assert lc.state is State.ACTIVE
        run_until(lc, clock, 100)
        assert lc.decision is None

    def test_port_ready_game_gets_no_player_timers(self, clock: FakeClock) -> None:
        """A game ready only by its port is not stopped by first-player or empty timers."""
        lc = make(clock, first_player_timeout=10, empty_timeout=10)
        lc.ready(ReadySource.PORT)
        assert lc.ready_source == "port"
        run_until(lc, clock, 1000)
        assert lc.decision is None
        assert lc.next_deadline() is None

    def test_ready_after_stop_decided_is_refused(self, clock: FakeClock) -> None:
        """POST /v1/ready after a stop is decided answers 409 (TransitionRefused)."""
        lc = make(clock)
        lc.shutdown_requested()
        with pytest.raises(TransitionRefused):
            lc.ready()


class TestIdleTimers:
    def test_first_player_timeout_counts_from_ready(self, clock: FakeClock) -> None:
        """No player within first_player_timeout of ready → first_player_timeout."""
        lc = make(clock)
        clock.advance(50)
        lc.ready()
        run_until(lc, clock, 119)
        assert lc.decision is None
        run_until(lc, clock, 1)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.FIRST_PLAYER_TIMEOUT
        assert lc.decision.decided_at == 1170.0

    def test_empty_timeout_after_last_player_leaves(self, clock: FakeClock) -> None:
        """The empty window starts when the last player disconnects."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("a")
        lc.player_connected("b")
        run_until(lc, clock, 500)
        lc.player_disconnected("a")
        run_until(lc, clock, 100)
        assert lc.decision is None
        lc.player_disconnected("b")
        run_until(lc, clock, 59)
        assert lc.decision is None
        run_until(lc, clock, 1)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.EMPTY_TIMEOUT

    def test_reconnect_during_empty_window_cancels_it(self, clock: FakeClock) -> None:
        """A player coming back before the empty timeout keeps the server."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("a")
        lc.player_disconnected("a")
        run_until(lc, clock, 50)
        lc.player_connected("a")
        run_until(lc, clock, 500)
        assert lc.decision is None

    def test_activity_restarts_the_running_idle_timer(self, clock: FakeClock) -> None:
        """POST /v1/activity postpones the first-player timer by a full window."""
        lc = make(clock)
        lc.ready()
        run_until(lc, clock, 100)
        lc.activity()
        run_until(lc, clock, 119)
        assert lc.decision is None
        run_until(lc, clock, 1)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.FIRST_PLAYER_TIMEOUT

    def test_activity_restarts_the_empty_timer(self, clock: FakeClock) -> None:
        """Activity while empty restarts the empty window."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("a")
        lc.player_disconnected("a")
        run_until(lc, clock, 59)
        lc.activity()
        run_until(lc, clock, 59)
        assert lc.decision is None
        run_until(lc, clock, 1)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.EMPTY_TIMEOUT

    def test_hold_suspends_idle_and_restarts_a_full_window_after(self, clock: FakeClock) -> None:
        """During a hold no idle stop fires; after it the idle window is a full one."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("a")
        lc.player_disconnected("a")
        run_until(lc, clock, 30)
        lc.hold(100)
        assert "hold" in lc.timers_left()
        run_until(lc, clock, 100)
        assert lc.decision is None
        run_until(lc, clock, 59.5)
        assert lc.decision is None
        run_until(lc, clock, 0.5)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.EMPTY_TIMEOUT
        assert lc.decision.decided_at == pytest.approx(1000 + 30 + 100 + 60)

    def test_hold_zero_clears_the_hold_and_restarts_the_window(self, clock: FakeClock) -> None:
        """hold(0) ends a hold now; the idle window restarts from that moment."""
        lc = make(clock)
        lc.ready()
        lc.hold(1000)
        run_until(lc, clock, 200)
        lc.hold(0)
        assert not lc.hold_active
        run_until(lc, clock, 119)
        assert lc.decision is None
        run_until(lc, clock, 1)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.FIRST_PLAYER_TIMEOUT

    def test_idle_never_fires_with_players_connected(self, clock: FakeClock) -> None:
        """Players connected: no idle reason, however long."""
        lc = make(clock, network_idle_timeout=10)
        lc.ready()
        lc.player_connected("a")
        lc.network_sample(0)
        run_until(lc, clock, 10_000)
        assert lc.decision is None

    def test_set_players_by_count_then_disconnect_by_id(self, clock: FakeClock) -> None:
        """PUT count=2 then two disconnects by id empties the roster and arms empty."""
        lc = make(clock)
        lc.ready()
        assert lc.set_players(count=2) == 2
        assert lc.state is State.ACTIVE
        assert lc.player_disconnected("x") == 1
        assert lc.player_disconnected("y") == 0
        assert "empty" in lc.timers_left()

    def test_set_players_by_ids_replaces_the_roster(self, clock: FakeClock) -> None:
        """PUT player_ids makes the roster exactly those ids."""
        lc = make(clock)
        lc.player_connected("old")
        assert lc.set_players(ids=["a", "b"]) == 2
        assert lc.player_ids == ["a", "b"]
        assert lc.player_connected("a") == 2  # idempotent per id
        assert lc.player_disconnected("nobody") == 2

    def test_match_start_without_players_keeps_first_player_timer(self, clock: FakeClock) -> None:
        """A started match with nobody connected still ends on first_player_timeout."""
        lc = make(clock)
        lc.ready()
        lc.match_started("m1")
        assert lc.state is State.ACTIVE
        run_until(lc, clock, 120)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.FIRST_PLAYER_TIMEOUT


class TestOtherTimers:
    def test_max_duration_fires_even_with_players(self, clock: FakeClock) -> None:
        """max_duration is a hard cap whatever the players or holds."""
        lc = make(clock, max_duration=600)
        lc.ready()
        lc.player_connected("a")
        lc.hold(10_000)
        run_until(lc, clock, 600)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.MAX_DURATION

    def test_health_is_armed_by_the_first_heartbeat_only(self, clock: FakeClock) -> None:
        """A game that never sends a heartbeat is never unhealthy."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("a")
        run_until(lc, clock, 10_000)
        assert lc.decision is None

    def test_heartbeat_silence_is_unhealthy(self, clock: FakeClock) -> None:
        """After the first heartbeat, 30 s of silence → unhealthy (abnormal)."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("a")
        lc.heartbeat()
        run_until(lc, clock, 20)
        lc.heartbeat()
        run_until(lc, clock, 29.9)
        assert lc.decision is None
        run_until(lc, clock, 0.1)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.UNHEALTHY
        assert lc.decision.abnormal

    def test_zero_disables_a_timer(self, clock: FakeClock) -> None:
        """A timer set to 0 never fires."""
        lc = make(clock, ready_timeout=0)
        run_until(lc, clock, 100_000)
        assert lc.decision is None
        assert lc.next_deadline() is None

    def test_network_idle_fires_after_quiet_interfaces(self, clock: FakeClock) -> None:
        """Below the packets/s threshold for the timeout → network_idle."""
        lc = make(clock, network_idle_timeout=30, network_idle_pps=2)
        lc.ready(ReadySource.PORT)
        packets = 0
        for _ in range(20):  # busy: 10 packets/s
            packets += 10
            clock.advance(1)
            lc.network_sample(packets)
            lc.poll()
        busy_until = clock.now
        for _ in range(40):  # quiet: 1 packet/s
            packets += 1
            clock.advance(1)
            lc.network_sample(packets)
            lc.poll()
            if lc.decision:
                break
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.NETWORK_IDLE
        assert lc.decision.decided_at == busy_until + 30

    def test_network_idle_respects_a_hold(self, clock: FakeClock) -> None:
        """network_idle is an idle reason: a hold suspends it."""
        lc = make(clock, network_idle_timeout=5)
        lc.ready(ReadySource.PORT)
        lc.network_sample(0)
        lc.hold(100)
        for _ in range(100):
            clock.advance(1)
            lc.network_sample(0)
            lc.poll()
        assert lc.decision is None


class TestPrecedence:
    def test_coinciding_deadlines_pick_by_precedence(self, clock: FakeClock) -> None:
        """max_duration and empty due at the same instant: max_duration wins."""
        lc = make(clock, max_duration=100, empty_timeout=60)
        lc.ready()
        lc.player_connected("a")
        clock.advance(40)
        lc.player_disconnected("a")
        clock.advance(60)
        lc.poll()
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.MAX_DURATION

    def test_unhealthy_beats_max_duration_on_a_tie(self, clock: FakeClock) -> None:
        """Failures take precedence over the hard cap when exactly simultaneous."""
        lc = make(clock, max_duration=30, health_timeout=30)
        lc.heartbeat()
        lc.ready()
        clock.advance(30)
        lc.poll()
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.UNHEALTHY

    def test_earliest_deadline_wins_after_a_long_pause(self, clock: FakeClock) -> None:
        """When polled late, the timer that expired first is the reason."""
        lc = make(clock, max_duration=500)
        lc.ready()
        clock.advance(1000)
        lc.poll()
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.FIRST_PLAYER_TIMEOUT

    def test_first_decided_reason_wins_and_later_triggers_are_recorded(
        self, clock: FakeClock
    ) -> None:
        """A second trigger never changes the reason nor causes a second stop."""
        lc = make(clock)
        assert lc.match_ended({"winner": "a"})
        assert not lc.shutdown_requested("again")
        assert not lc.match_ended()
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.MATCH_ENDED
        assert [t.reason for t in lc.later_triggers] == [
            StopReason.SHUTDOWN_REQUESTED,
            StopReason.MATCH_ENDED,
        ]


class TestDrainAndStop:
    def test_match_end_drains_for_the_grace_then_releases_once(self, clock: FakeClock) -> None:
        """match/end waits SIDECAR_MATCH_END_GRACE, then poll() releases the stop exactly once."""
        lc = make(clock)
        lc.ready()
        lc.match_ended({"score": 3})
        assert lc.state is State.DRAINING
        assert lc.next_deadline() == 1005.0
        clock.advance(4.9)
        assert lc.poll() is None
        clock.advance(0.1)
        decision = lc.poll()
        assert decision is not None
        assert decision.reason is StopReason.MATCH_ENDED
        assert decision.match_result == {"score": 3}
        assert lc.state is State.STOPPING
        assert lc.poll() is None
        lc.stop_accepted()
        assert lc.state is State.STOPPED

    def test_body_grace_overrides_the_default(self, clock: FakeClock) -> None:
        """grace_seconds in the request replaces SIDECAR_MATCH_END_GRACE."""
        lc = make(clock)
        lc.shutdown_requested("maintenance", grace=0, log_storage="my-store")
        decision = lc.poll()
        assert decision is not None
        assert decision.log_storage_override == "my-store"
        assert decision.detail == "maintenance"

    def test_game_exit_cuts_the_drain_short_and_keeps_the_first_reason(
        self, clock: FakeClock
    ) -> None:
        """If the game exits while draining, the stop starts now for the original reason."""
        lc = make(clock)
        lc.match_ended(grace=60)
        clock.advance(1)
        assert not lc.game_exited(0)
        decision = lc.poll()
        assert decision is not None
        assert decision.reason is StopReason.MATCH_ENDED
        assert [t.reason for t in lc.later_triggers] == [StopReason.GAME_EXITED]

    def test_game_crash_is_abnormal(self, clock: FakeClock) -> None:
        """Non-zero exit or a signal → game_crashed; exit 0 → game_exited."""
        crashed = make(clock)
        crashed.game_exited(3)
        assert crashed.decision is not None
        assert crashed.decision.reason is StopReason.GAME_CRASHED
        assert crashed.decision.abnormal
        killed = make(clock)
        killed.game_exited(137, "SIGKILL")
        assert killed.decision is not None
        assert killed.decision.reason is StopReason.GAME_CRASHED
        clean = make(clock)
        clean.game_exited(0)
        assert clean.decision is not None
        assert clean.decision.reason is StopReason.GAME_EXITED
        assert not clean.decision.abnormal

    def test_calls_after_stop_decided(self, clock: FakeClock) -> None:
        """After the decision: match start refused, players/health/hold/activity still work."""
        lc = make(clock)
        lc.ready()
        lc.match_ended()
        with pytest.raises(TransitionRefused):
            lc.match_started()
        lc.heartbeat()
        lc.activity()
        lc.hold(10)
        assert lc.player_connected("late") == 1
        assert lc.state is State.DRAINING

    def test_failed_stop(self, clock: FakeClock) -> None:
        """A stop that fails for good ends in failed."""
        lc = make(clock)
        lc.shutdown_requested(grace=0)
        lc.poll()
        lc.stop_failed()
        assert lc.state is State.FAILED

    def test_terminating_prevents_any_stop(self, clock: FakeClock) -> None:
        """After SIGTERM no timer or request decides a self-stop."""
        lc = make(clock, ready_timeout=5)
        lc.terminating("SIGTERM")
        assert lc.state is State.TERMINATING
        assert not lc.match_ended()
        run_until(lc, clock, 100)
        assert lc.decision is None

    def test_transitions_are_published(self, clock: FakeClock) -> None:
        """Subscribers see every change as (old, new)."""
        lc = make(clock)
        seen: list[tuple[State, State]] = []
        lc.subscribe(lambda old, new: seen.append((old, new)))
        lc.ready()
        lc.player_connected("a")
        lc.match_ended(grace=0)
        lc.poll()
        lc.stop_accepted()
        assert seen == [
            (State.STARTING, State.READY),
            (State.READY, State.ACTIVE),
            (State.ACTIVE, State.DRAINING),
            (State.DRAINING, State.STOPPING),
            (State.STOPPING, State.STOPPED),
        ]

    def test_peak_players(self, clock: FakeClock) -> None:
        """players_peak is the most players connected at once."""
        lc = make(clock)
        for pid in "abc":
            lc.player_connected(pid)
        lc.player_disconnected("a")
        lc.set_players(count=1)
        assert lc.players_peak == 3


class TestRosterCap:
    def test_connect_beyond_the_cap_is_refused_without_change(self, clock: FakeClock) -> None:
        """The ROSTER_CAP+1-th distinct id raises RosterFull and changes nothing; known ids
        and disconnects still work at the cap."""
        lc = make(clock)
        lc.set_players(ids=[f"p{i}" for i in range(ROSTER_CAP)])
        with pytest.raises(RosterFull, match="at most 10000"):
            lc.player_connected("new")
        assert lc.player_count == ROSTER_CAP
        assert "new" not in lc.player_ids
        assert lc.player_connected("p0") == ROSTER_CAP
        assert lc.player_disconnected("p0") == ROSTER_CAP - 1
        assert lc.player_connected("new") == ROSTER_CAP

    def test_set_players_beyond_the_cap_keeps_the_old_roster(self, clock: FakeClock) -> None:
        """Replacing the roster with too many ids or too large a count raises RosterFull and
        keeps the roster as it was; the cap counts anonymous players too."""
        lc = make(clock)
        lc.set_players(ids=["a", "b"])
        with pytest.raises(RosterFull):
            lc.set_players(ids=[str(i) for i in range(ROSTER_CAP + 1)])
        with pytest.raises(RosterFull):
            lc.set_players(count=ROSTER_CAP + 1)
        assert lc.player_ids == ["a", "b"]
        assert lc.set_players(count=ROSTER_CAP) == ROSTER_CAP
        with pytest.raises(RosterFull):
            lc.player_connected("one-more")


class TestChangeAnnouncements:
    """The lifecycle tells the runtime when to re-plan its sleep; no adapter has to."""

    @staticmethod
    def recorder(lc: Lifecycle) -> list[Change]:
        seen: list[Change] = []
        lc.on_change(seen.append)
        return seen

    def test_a_repeated_heartbeat_does_not_ask_for_a_replan(self, clock: FakeClock) -> None:
        """The first heartbeat arms the health timer (re-plan); later ones only push its deadline
        later, so a game heartbeating many times a second never wakes the timer loop."""
        lc = make(clock)
        seen = self.recorder(lc)
        lc.heartbeat()
        clock.advance(0.01)
        lc.heartbeat()
        lc.heartbeat()
        assert seen == [Change.TIMERS, Change.STATUS, Change.STATUS]

    def test_replan_listeners_hear_only_what_may_bring_a_deadline_earlier(
        self, clock: FakeClock
    ) -> None:
        """`on_replan` (the timer loop) is called for TIMERS changes only: repeated heartbeats
        call nobody but the `on_change` listeners."""
        lc = make(clock)
        seen = self.recorder(lc)
        replans: list[None] = []
        lc.on_replan(lambda: replans.append(None))
        lc.heartbeat()
        for _ in range(5):
            lc.heartbeat()
        lc.ready()
        assert len(seen) == 7
        assert len(replans) == 2

    def test_every_event_announces_exactly_one_change(self, clock: FakeClock) -> None:
        """Each call that changes something is announced once, so a status cache or a facade
        listening to `on_change` never misses one."""
        lc = make(clock, network_idle_timeout=30)
        seen = self.recorder(lc)
        events = [
            lambda: lc.ready(),
            lambda: lc.ready(),
            lambda: lc.heartbeat(),
            lambda: lc.activity(),
            lambda: lc.network_sample(0),
            lambda: lc.player_connected("a"),
            lambda: lc.set_players(ids=["a", "b"]),
            lambda: lc.player_disconnected("a"),
            lambda: lc.hold(10),
            lambda: lc.match_started("m"),
            lambda: lc.match_ended(grace=1),
            lambda: lc.shutdown_requested(),
            lambda: lc.game_exited(0),
            lambda: lc.terminating("SIGTERM"),
        ]
        for number, event in enumerate(events, 1):
            event()
            assert len(seen) == number

    def test_refused_events_announce_nothing(self, clock: FakeClock) -> None:
        """A call refused with TransitionRefused or RosterFull changed nothing, and says so."""
        lc = make(clock)
        lc.set_players(ids=[f"p{i}" for i in range(ROSTER_CAP)])
        lc.match_ended(grace=0)
        seen = self.recorder(lc)
        with pytest.raises(RosterFull):
            lc.player_connected("one too many")
        with pytest.raises(TransitionRefused):
            lc.ready()
        with pytest.raises(TransitionRefused):
            lc.match_started()
        assert seen == []

    def test_poll_announces_only_what_it_changed(self, clock: FakeClock) -> None:
        """`poll()` with nothing due is silent; a timer firing and the stop's release are each
        announced."""
        lc = make(clock, ready_timeout=5)
        seen = self.recorder(lc)
        lc.poll()
        assert seen == []
        clock.advance(5)
        assert lc.poll() is not None  # decided with no grace, and released at once
        assert seen == [Change.TIMERS]
        lc.stop_accepted()
        assert seen == [Change.TIMERS, Change.STATUS]

    def test_an_earlier_deadline_is_always_announced_as_a_replan(self, clock: FakeClock) -> None:
        """Whenever an event brings the next deadline forward (or arms the first one), its
        announcement is TIMERS: the loop, asleep until the old deadline, would otherwise fire
        late."""
        lc = make(clock, network_idle_timeout=20, max_duration=900)
        seen = self.recorder(lc)
        events = [
            lambda: lc.ready(),
            lambda: lc.heartbeat(),
            lambda: lc.heartbeat(),
            lambda: lc.network_sample(0),
            lambda: lc.network_sample(10_000),
            lambda: lc.player_connected("a"),
            lambda: lc.hold(300),
            lambda: lc.player_disconnected("a"),
            lambda: lc.heartbeat(),
            lambda: lc.hold(0),
            lambda: lc.activity(),
            lambda: lc.heartbeat(),
            lambda: lc.set_players(count=2),
            lambda: lc.set_players(count=0),
            lambda: lc.match_ended(grace=3),
            lambda: lc.game_exited(1),
        ]
        for event in events:
            before = lc.next_deadline()
            count = len(seen)
            event()
            after = lc.next_deadline()
            assert len(seen) == count + 1
            if after is not None and (before is None or after < before):
                assert seen[-1] is Change.TIMERS
            clock.advance(0.5)


class TestAdapterDetectedStops:
    """`stop_for`: the trigger of a reason an adapter detects, decided by its row of REASONS."""

    def test_an_idle_reason_waits_for_nobody_here_and_no_hold(self, clock: FakeClock) -> None:
        """An idle reason reported while a player is connected, or during a hold, changes
        nothing; reported again once the server is empty, it decides the stop."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("p1")
        assert lc.stop_for(StopReason.NETWORK_IDLE, "no traffic") is False
        lc.player_disconnected("p1")
        lc.hold(30)
        assert lc.stop_for(StopReason.NETWORK_IDLE, "no traffic") is False
        assert lc.decision is None
        assert lc.later_triggers == []
        clock.advance(30)
        assert lc.stop_for(StopReason.NETWORK_IDLE, "no traffic") is True
        assert lc.state is State.DRAINING
        decision = lc.poll()
        assert decision is not None
        assert (decision.reason, decision.detail, decision.abnormal) == (
            StopReason.NETWORK_IDLE,
            "no traffic",
            False,
        )

    def test_an_abnormal_reason_stops_whoever_is_here_and_the_first_reason_wins(
        self, clock: FakeClock
    ) -> None:
        """A reason that is not idle decides at once, players or not; its row makes it
        abnormal; a later report is only recorded."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("p1")
        assert lc.stop_for(StopReason.UNHEALTHY, "the watchdog saw it hang") is True
        assert lc.decision is not None
        assert lc.decision.abnormal
        assert lc.stop_for(StopReason.GAME_CRASHED, "later") is False
        assert [t.reason for t in lc.later_triggers] == [StopReason.GAME_CRASHED]


class TestMaxDurationCapsTheDrain:
    """SIDECAR_MAX_DURATION is a hard cap whatever the players, and whatever the grace."""

    def test_a_huge_match_end_grace_ends_at_the_max_duration(self, clock: FakeClock) -> None:
        """A grace of 1e300 s still stops at the max-duration deadline, for match_ended, with
        max_duration recorded as the trigger that cut the drain short."""
        lc = make(clock, max_duration=3)
        lc.ready()
        clock.advance(1)
        lc.match_ended({"winner": "a"}, grace=1e300)
        assert lc.state is State.DRAINING
        assert lc.next_deadline() == 1003.0
        assert lc.timers_left()["drain"] == 2.0
        clock.advance(1.9)
        assert lc.poll() is None
        clock.advance(0.1)
        decision = lc.poll()
        assert decision is not None
        assert decision.reason is StopReason.MATCH_ENDED
        assert decision.match_result == {"winner": "a"}
        assert decision.grace == 2.0
        assert [t.reason for t in lc.later_triggers] == [StopReason.MAX_DURATION]
        assert lc.state is State.STOPPING

    def test_a_shutdown_grace_is_capped_too(self, clock: FakeClock) -> None:
        """POST /v1/shutdown's grace is bounded by the max duration like match end's."""
        lc = make(clock, max_duration=10)
        lc.shutdown_requested("bye", grace=86400)
        run_until(lc, clock, 10)
        assert lc.decision is not None
        assert lc.decision.reason is StopReason.SHUTDOWN_REQUESTED
        assert lc.state is State.STOPPING
        assert clock.now == 1010.0

    def test_a_grace_within_the_cap_is_untouched(self, clock: FakeClock) -> None:
        """A drain that ends before the max duration runs its full grace, no trigger recorded."""
        lc = make(clock, max_duration=100)
        lc.match_ended(grace=5)
        assert lc.next_deadline() == 1005.0
        run_until(lc, clock, 5)
        assert lc.state is State.STOPPING
        assert lc.later_triggers == []

    def test_a_drain_cut_by_the_game_exit_records_no_max_duration(self, clock: FakeClock) -> None:
        """A game exit before the cap ends the drain as before; max_duration never fired."""
        lc = make(clock, max_duration=100)
        lc.match_ended(grace=1000)
        clock.advance(1)
        lc.game_exited(0)
        assert lc.poll() is not None
        assert [t.reason for t in lc.later_triggers] == [StopReason.GAME_EXITED]

    def test_a_stop_decided_past_the_deadline_goes_at_once(self, clock: FakeClock) -> None:
        """A match end that lands after the max-duration deadline (before the timer loop woke)
        has no grace left."""
        lc = make(clock, max_duration=3)
        clock.advance(5)
        lc.match_ended(grace=60)
        decision = lc.poll()
        assert decision is not None
        assert decision.reason is StopReason.MATCH_ENDED
        assert [t.reason for t in lc.later_triggers] == [StopReason.MAX_DURATION]
