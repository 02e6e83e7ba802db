"""The match in the pure lifecycle (SPEC §12): arrivals, quorum modes and the no-show stop, on a
fake clock (no sleeping)."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.agones.gameserver import FacadeOptions, GameServer
from sidecar.deployment import DeploymentInfo
from sidecar.lifecycle import (
    ABNORMAL_REASONS,
    IDLE_REASONS,
    REASONS,
    TIMER_NAMES,
    TIMER_PRECEDENCE,
    ExpectedPlayers,
    Lifecycle,
    Quorum,
    QuorumRule,
    ReadySource,
    State,
    StopReason,
    TimerSettings,
    UnknownTicket,
)

TICKETS = ("t1", "t2", "t3", "t4")
# Two teams of two, as the matchmaker's MM_TEAMS would give them once resolved.
TEAMS = {"red": ("t1", "t2"), "blue": ("t3", "t4")}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(
    clock: FakeClock,
    *,
    quorum: Quorum | None = None,
    tickets: tuple[str, ...] | None = TICKETS,
    teams: dict[str, tuple[str, ...]] | None = None,
    match_id: str | None = None,
    **timers: float,
) -> Lifecycle:
    """A lifecycle expecting `tickets` (None: no match data), with SPEC's default timers but
    for `timers`."""
    expected = None if tickets is None else ExpectedPlayers(tickets, teams or {})
    return Lifecycle(
        TimerSettings(**timers),
        clock,
        match_id=match_id,
        expected=expected,
        quorum=quorum or Quorum(),
    )


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


def reason(lc: Lifecycle) -> StopReason | None:
    return lc.decision.reason if lc.decision is not None else None


def count(n: int) -> Quorum:
    return Quorum(QuorumRule.COUNT, n)


class TestReasonTable:
    def test_every_reason_has_one_row(self) -> None:
        """Each stop reason is a row of the one table; the views are read off it."""
        assert set(REASONS) == set(StopReason)
        assert TIMER_NAMES[StopReason.NO_SHOW] == "no_show"
        assert StopReason.NO_SHOW in ABNORMAL_REASONS
        assert StopReason.NO_SHOW not in IDLE_REASONS
        assert {
            StopReason.FIRST_PLAYER_TIMEOUT,
            StopReason.EMPTY_TIMEOUT,
            StopReason.NETWORK_IDLE,
        } == IDLE_REASONS
        assert {
            StopReason.READY_TIMEOUT,
            StopReason.UNHEALTHY,
            StopReason.GAME_CRASHED,
            StopReason.NO_SHOW,
        } == ABNORMAL_REASONS

    def test_no_show_ties_after_max_duration_and_before_first_player(self) -> None:
        """SPEC §12: the tie order puts no_show after max_duration, before first_player."""
        assert TIMER_PRECEDENCE == (
            StopReason.READY_TIMEOUT,
            StopReason.UNHEALTHY,
            StopReason.MAX_DURATION,
            StopReason.NO_SHOW,
            StopReason.FIRST_PLAYER_TIMEOUT,
            StopReason.EMPTY_TIMEOUT,
            StopReason.NETWORK_IDLE,
        )


class TestArrivals:
    def test_a_player_whose_id_is_a_ticket_arrives(self, clock: FakeClock) -> None:
        """Connecting with a ticket id as player id marks that ticket arrived."""
        lc = make(clock)
        lc.player_connected("t2")
        assert dict(lc.arrivals) == {"t2": "t2"}
        assert lc.missing_tickets() == ["t1", "t3", "t4"]
        assert (lc.expected_count, lc.arrived_count) == (4, 1)

    def test_a_connect_naming_a_ticket_arrives_it(self, clock: FakeClock) -> None:
        """`ticket_id` on connect brings that ticket, whatever the player id."""
        lc = make(clock)
        lc.player_connected("alice", ticket_id="t3")
        assert dict(lc.arrivals) == {"t3": "alice"}
        assert lc.player_ids == ["alice"]

    def test_an_unknown_ticket_is_refused_and_changes_nothing(self, clock: FakeClock) -> None:
        """A ticket that is not expected is refused; the player is not added."""
        lc = make(clock)
        with pytest.raises(UnknownTicket):
            lc.player_connected("alice", ticket_id="nope")
        assert lc.player_count == 0
        assert not lc.reports_players

    def test_without_match_data_every_ticket_is_unknown(self, clock: FakeClock) -> None:
        """No MM_TICKET_IDS: a connect naming a ticket is refused; ids never arrive."""
        lc = make(clock, tickets=None)
        with pytest.raises(UnknownTicket):
            lc.player_connected("alice", ticket_id="t1")
        lc.player_connected("t1")
        assert lc.arrived_count == 0
        assert lc.missing_tickets() == []
        assert lc.quorum_met

    def test_a_stranger_does_not_arrive(self, clock: FakeClock) -> None:
        """A player that is not a ticket is connected but brings no ticket."""
        lc = make(clock)
        lc.player_connected("stranger")
        assert lc.player_count == 1
        assert lc.arrived_count == 0

    def test_an_arrived_ticket_stays_arrived(self, clock: FakeClock) -> None:
        """A ticket's player leaving does not undo its arrival; the first player stays."""
        lc = make(clock)
        lc.player_connected("alice", ticket_id="t1")
        lc.player_disconnected("alice")
        lc.player_connected("bob", ticket_id="t1")
        assert dict(lc.arrivals) == {"t1": "alice"}
        lc.set_players(ids=[])
        assert lc.arrived_count == 1

    def test_a_whole_roster_brings_its_tickets(self, clock: FakeClock) -> None:
        """PUT-style rosters (and Agones list updates) arrive every ticket id in them."""
        lc = make(clock)
        lc.set_players(ids=["t4", "x", "t1"])
        assert dict(lc.arrivals) == {"t4": "t4", "t1": "t1"}

    def test_the_matchmaker_match_id_wins_over_match_start(self, clock: FakeClock) -> None:
        """match_id is MM_MATCH_ID, else the one given to match start."""
        lc = make(clock, match_id="mm-1")
        lc.match_started("game-1")
        assert lc.match_id == "mm-1"
        other = make(clock)
        other.match_started("game-1")
        assert other.match_id == "game-1"


class TestNoShow:
    def test_fires_60s_after_ready_without_arrivals(self, clock: FakeClock) -> None:
        """Default: nobody arrived 60 s after ready → no_show, an abnormal stop."""
        lc = make(clock)
        lc.ready()
        assert lc.timers_left()["no_show"] == 60
        run_until(lc, clock, 59.9)
        assert lc.state is State.READY
        run_until(lc, clock, 0.1)
        assert reason(lc) is StopReason.NO_SHOW
        assert lc.decision is not None
        assert lc.decision.abnormal
        assert lc.decision.detail == (
            "0 of 4 expected players arrived within 60s of ready (quorum 1)"
        )

    def test_its_length_is_the_setting_and_0_disables_it(self, clock: FakeClock) -> None:
        """SIDECAR_NO_SHOW_TIMEOUT sets the window; 0 turns the no-show off."""
        lc = make(clock, no_show_timeout=15)
        lc.ready()
        run_until(lc, clock, 15)
        assert reason(lc) is StopReason.NO_SHOW
        off = make(clock, no_show_timeout=0)
        off.ready()
        assert "no_show" not in off.timers_left()
        run_until(off, clock, 119)
        assert reason(off) is None

    def test_not_without_match_data(self, clock: FakeClock) -> None:
        """No MM_TICKET_IDS: no no-show timer; first_player runs as before."""
        lc = make(clock, tickets=None)
        lc.ready()
        assert "no_show" not in lc.timers_left()
        run_until(lc, clock, 120)
        assert reason(lc) is StopReason.FIRST_PLAYER_TIMEOUT

    def test_not_for_a_game_ready_by_its_port(self, clock: FakeClock) -> None:
        """A game that never reported players (ready by port) gets no no-show."""
        lc = make(clock)
        lc.ready(ReadySource.PORT)
        assert "no_show" not in lc.timers_left()
        run_until(lc, clock, 600)
        assert lc.decision is None

    def test_a_port_ready_game_that_reports_players_gets_it(self, clock: FakeClock) -> None:
        """Using a players route makes the game one that reports players: the no-show runs
        from its ready."""
        lc = make(clock)
        lc.ready(ReadySource.PORT)
        clock.now += 10
        lc.player_connected("stranger")
        assert lc.timers_left()["no_show"] == 50

    def test_not_before_ready(self, clock: FakeClock) -> None:
        """Before ready the ready timer runs; the no-show waits for ready."""
        lc = make(clock)
        lc.player_connected("stranger")  # reports players, moves to active
        assert "no_show" not in lc.timers_left()

    def test_connected_strangers_do_not_stop_it(self, clock: FakeClock) -> None:
        """Only arrivals count: players who bring no ticket do not meet the quorum."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("stranger")
        run_until(lc, clock, 60)
        assert reason(lc) is StopReason.NO_SHOW

    def test_disarmed_by_match_start(self, clock: FakeClock) -> None:
        """The game decided to play: no no-show, before or after ready."""
        lc = make(clock)
        lc.ready()
        clock.now += 30
        lc.match_started()
        assert "no_show" not in lc.timers_left()
        run_until(lc, clock, 600)
        assert reason(lc) is not StopReason.NO_SHOW
        early = make(clock)
        early.match_started()
        early.ready()
        assert "no_show" not in early.timers_left()

    def test_a_hold_postpones_it_by_a_full_window(self, clock: FakeClock) -> None:
        """A hold suspends it; it restarts with a full window from the hold's end."""
        lc = make(clock)
        lc.ready()
        clock.now += 50
        lc.hold(100)
        run_until(lc, clock, 100)
        assert lc.decision is None
        assert lc.timers_left()["no_show"] == 60
        run_until(lc, clock, 59.9)
        assert lc.decision is None
        run_until(lc, clock, 0.1)
        assert reason(lc) is StopReason.NO_SHOW

    def test_ending_a_hold_early_starts_the_window_then(self, clock: FakeClock) -> None:
        """hold(0) ends the hold now: a full window from now."""
        lc = make(clock)
        lc.ready()
        lc.hold(1000)
        clock.now += 30
        lc.hold(0)
        assert lc.timers_left()["no_show"] == 60

    def test_activity_does_not_postpone_it(self, clock: FakeClock) -> None:
        """Activity restarts the idle timers only: the no-show counts from ready."""
        lc = make(clock)
        lc.ready()
        clock.now += 40
        lc.activity()
        assert lc.timers_left()["no_show"] == 20

    def test_players_leaving_keep_a_met_quorum(self, clock: FakeClock) -> None:
        """Once the quorum is met the no-show is gone, even when everyone leaves; the empty
        timer then decides."""
        lc = make(clock)
        lc.ready()
        lc.player_connected("t1")
        lc.player_disconnected("t1")
        assert "no_show" not in lc.timers_left()
        run_until(lc, clock, 60)
        assert reason(lc) is StopReason.EMPTY_TIMEOUT

    def test_the_first_decided_reason_wins(self, clock: FakeClock) -> None:
        """A match end decided before the deadline stays the reason."""
        lc = make(clock, match_end_grace=120)
        lc.ready()
        lc.match_ended()
        run_until(lc, clock, 61)
        assert reason(lc) is StopReason.MATCH_ENDED


class TestQuorum:
    @pytest.mark.parametrize(
        ("quorum", "arrivals", "met"),
        [
            (count(1), [], False),
            (count(1), ["t3"], True),
            (count(3), ["t1", "t2"], False),
            (count(3), ["t1", "t2", "t4"], True),
            (count(99), ["t1", "t2", "t3"], False),  # capped at the 4 tickets
            (count(99), ["t1", "t2", "t3", "t4"], True),
            (Quorum(QuorumRule.ALL), ["t1", "t2", "t3"], False),
            (Quorum(QuorumRule.ALL), ["t4", "t3", "t2", "t1"], True),
        ],
    )
    def test_counts(self, clock: FakeClock, quorum: Quorum, arrivals: list[str], met: bool) -> None:
        """A number (capped at the ticket count) or `all`: that many arrivals disarm it."""
        lc = make(clock, quorum=quorum)
        lc.ready()
        for ticket in arrivals:
            lc.player_connected(ticket)
        assert lc.quorum_met is met
        run_until(lc, clock, 60)
        assert (reason(lc) is StopReason.NO_SHOW) is not met

    @pytest.mark.parametrize(
        ("arrivals", "met"),
        [
            (["t1", "t2"], False),  # the whole red team, nobody in blue
            (["t1", "t4"], True),
            (["t2", "t3"], True),
        ],
    )
    def test_teams_needs_one_arrival_in_every_team(
        self, clock: FakeClock, arrivals: list[str], met: bool
    ) -> None:
        """`teams`: at least one arrival in every team."""
        lc = make(clock, quorum=Quorum(QuorumRule.TEAMS), teams=TEAMS)
        lc.ready()
        for ticket in arrivals:
            lc.player_connected(ticket)
        run_until(lc, clock, 60)
        assert (reason(lc) is StopReason.NO_SHOW) is not met

    def test_teams_without_team_data_is_as_1(self, clock: FakeClock) -> None:
        """`teams` with no team data behaves as a quorum of 1."""
        lc = make(clock, quorum=Quorum(QuorumRule.TEAMS))
        assert not lc.quorum_met
        lc.player_connected("t2")
        assert lc.quorum_met

    def test_no_tickets_means_nothing_to_wait_for(self, clock: FakeClock) -> None:
        """An empty MM_TICKET_IDS has a quorum of 0: no no-show."""
        lc = make(clock, tickets=())
        lc.ready()
        assert "no_show" not in lc.timers_left()

    def test_quorum_shows_as_configured(self) -> None:
        """The stop record's `quorum` is the setting: a number, `all` or `teams`."""
        assert [q.configured for q in (count(3), Quorum(QuorumRule.ALL))] == [3, "all"]
        assert str(Quorum(QuorumRule.TEAMS)) == "teams"


class TestTies:
    def test_max_duration_wins_an_exact_tie(self, clock: FakeClock) -> None:
        """Equal deadlines: max_duration comes before no_show."""
        lc = make(clock, max_duration=60)
        lc.ready()
        run_until(lc, clock, 60)
        assert reason(lc) is StopReason.MAX_DURATION
        assert [t.reason for t in lc.later_triggers] == []

    def test_no_show_wins_an_exact_tie_with_first_player(self, clock: FakeClock) -> None:
        """Equal deadlines: no_show comes before first_player_timeout."""
        lc = make(clock, first_player_timeout=60)
        lc.ready()
        clock.now += 61  # suspended past both deadlines
        lc.poll()
        assert reason(lc) is StopReason.NO_SHOW


def agones(clock: FakeClock, **options: Any) -> tuple[Lifecycle, GameServer]:
    lifecycle = make(clock)
    gameserver = GameServer(
        lifecycle,
        FacadeOptions(**options),
        DeploymentInfo(),
        wall_clock=lambda: 1_700_000_000.0,
    )
    return lifecycle, gameserver


class TestAgones:
    def test_allocate_is_a_match_start(self, clock: FakeClock) -> None:
        """Agones Allocate disarms the no-show like POST /v1/match/start."""
        lc, gs = agones(clock, auto_allocate=False)
        gs.ready()
        gs.player_connect("stranger")  # the game reports players
        assert "no_show" in lc.timers_left()
        gs.allocate()
        assert "no_show" not in lc.timers_left()

    def test_ready_with_auto_allocate_starts_the_match(self, clock: FakeClock) -> None:
        """With SIDECAR_AGONES_AUTO_ALLOCATE (the default) Ready allocates: no no-show."""
        lc, gs = agones(clock)
        gs.ready()
        gs.player_connect("stranger")
        assert "no_show" not in lc.timers_left()

    def test_agones_ready_alone_waits_for_the_roster(self, clock: FakeClock) -> None:
        """Agones Ready says nothing about players: no no-show until a player call."""
        lc, gs = agones(clock, auto_allocate=False)
        gs.ready()
        run_until(lc, clock, 600)
        assert lc.decision is None

    def test_player_and_list_calls_bring_tickets(self, clock: FakeClock) -> None:
        """Agones PlayerConnect and the players list arrive tickets by id."""
        lc, gs = agones(clock, auto_allocate=False)
        gs.ready()
        gs.player_connect("t1")
        gs.add_list_value("players", "t2")
        gs.update_list("players", ["values"], capacity=1000, values=["t1", "t2", "t3"])
        assert list(lc.arrivals) == ["t1", "t2", "t3"]
        run_until(lc, clock, 60)
        assert lc.decision is None
