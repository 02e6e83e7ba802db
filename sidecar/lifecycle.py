"""The lifecycle core: states, timers as deadlines, and the one stop decision. No I/O.

Over 400 lines on purpose: every rule of SPEC §5 in the one pure module the rest is built on.

Events come in as method calls (`ready`, `heartbeat`, `player_connected`, `game_exited`, ...),
the clock is injected, and decisions come out:

* `poll()` evaluates every deadline against the clock and returns the `StopDecision` exactly
  once, at the moment the self-stop call should begin (after the drain grace);
* `next_deadline()` tells the runtime when to call `poll()` again, so an idle sidecar sleeps
  instead of polling;
* the lifecycle announces its own changes: `subscribe` listeners hear every state change,
  `on_change` listeners everything that moves the state, a deadline or what the status shows,
  and `on_replan` listeners (the runtime's timer loop) only what may bring a deadline earlier
  (`Change.TIMERS`). No adapter has to remember to wake the timer loop, and one that only
  pushes a deadline later (a repeated heartbeat) does not wake it.

Rules (SPEC §5) that shape the code below:

* The first decided reason wins; later triggers are only recorded.
* Idle reasons (first player, empty, network idle) never fire while players are connected or a
  hold is active; when a hold ends the idle windows restart from its end (a full window).
* When several deadlines have passed at the same `poll()` (the process was suspended, or two
  timers coincide), the earliest deadline wins; exact ties go by the order of `REASONS`.
* The no-show (SPEC §12) counts arrivals, not players: a matchmaker ticket arrives when a player
  with its id (or naming it) connects, and stays arrived. It runs from ready for a game that
  reports players, until the quorum is met or a match starts; a hold postpones it.
* Every stop reason is one row of `REASONS` (abnormal, idle, timer name, detail); a timer's
  deadline is its rule in `_timer_deadlines`.

This module imports nothing from the rest of the package, nor aiohttp, psutil or pydantic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any


class State(StrEnum):
    """Where the server is in its life. Lower-case strings on the wire."""

    STARTING = "starting"  # sidecar up, the game has not said it is ready
    READY = "ready"  # game ready, no player has connected yet
    ACTIVE = "active"  # a player connected or a match started (count may be back at 0)
    DRAINING = "draining"  # a stop is decided and waits for its grace period
    STOPPING = "stopping"  # the self-stop request is in flight or being retried
    STOPPED = "stopped"  # the platform accepted the stop; waiting for its SIGTERM
    FAILED = "failed"  # the self-stop failed for good; the fallback was applied
    TERMINATING = "terminating"  # SIGTERM/SIGINT received: shutting down, no self-stop


class ReadySource(StrEnum):
    """What made the game ready (status `ready_source`)."""

    API = "api"  # the game called POST /v1/ready: it also reports its players
    PORT = "port"  # the game listens on a game port (SPEC §5): nothing known about players
    AGONES = "agones"  # the Agones SDK's Ready (SPEC §10): player timers wait for its roster


class Change(Enum):
    """What an `on_change` notification means for the runtime."""

    TIMERS = "timers"  # a deadline may have come earlier, or a stop is due: re-plan the timers
    STATUS = "status"  # what status shows changed; every deadline stayed or moved later


_STATUS = Change.STATUS


class StopReason(StrEnum):
    MATCH_ENDED = "match_ended"
    SHUTDOWN_REQUESTED = "shutdown_requested"
    READY_TIMEOUT = "ready_timeout"
    NO_SHOW = "no_show"
    FIRST_PLAYER_TIMEOUT = "first_player_timeout"
    EMPTY_TIMEOUT = "empty_timeout"
    MAX_DURATION = "max_duration"
    UNHEALTHY = "unhealthy"
    GAME_EXITED = "game_exited"
    GAME_CRASHED = "game_crashed"
    NETWORK_IDLE = "network_idle"


@dataclass(frozen=True)
class ReasonRules:
    """What one stop reason means beyond its name: a row of `REASONS`."""

    # Something went wrong: the stop keeps its logs with SIDECAR_ERROR_LOG_STORAGE.
    abnormal: bool = False
    # Only "nobody is here": never while players are connected or a hold is active.
    idle: bool = False
    # A timer: its name in status and metrics (its deadline is `_timer_deadlines`' rule).
    timer: str | None = None
    # A timer's stop detail: formatted with the TimerSettings fields and `_detail_values()`.
    detail: str = ""


# Every stop reason, in one table (issue 16: a new reason is one row plus its trigger). Timers
# come first, in tie order: when two deadlines are exactly equal, the earlier row wins. Failures
# first (their logs are kept with the error storage choice), then the hard cap, then the no-show
# (the match never became playable), then the idle reasons.
REASONS: dict[StopReason, ReasonRules] = {
    StopReason.READY_TIMEOUT: ReasonRules(
        abnormal=True, timer="ready", detail="the game was not ready within {ready_timeout:g}s"
    ),
    StopReason.UNHEALTHY: ReasonRules(
        abnormal=True, timer="health", detail="no heartbeat for {health_timeout:g}s"
    ),
    StopReason.MAX_DURATION: ReasonRules(
        timer="max_duration", detail="the server reached its maximum duration of {max_duration:g}s"
    ),
    StopReason.NO_SHOW: ReasonRules(
        abnormal=True,  # a no-show usually means a connectivity problem worth its logs
        timer="no_show",
        detail="{arrived} of {expected} expected players arrived within {no_show_timeout:g}s "
        "of ready (quorum {quorum})",
    ),
    StopReason.FIRST_PLAYER_TIMEOUT: ReasonRules(
        idle=True,
        timer="first_player",
        detail="no player connected within {first_player_timeout:g}s of ready",
    ),
    StopReason.EMPTY_TIMEOUT: ReasonRules(
        idle=True, timer="empty", detail="the server was empty for {empty_timeout:g}s"
    ),
    StopReason.NETWORK_IDLE: ReasonRules(
        idle=True,
        timer="network_idle",
        detail="less than {network_idle_pps:g} packets/s for {network_idle_timeout:g}s",
    ),
    StopReason.MATCH_ENDED: ReasonRules(),
    StopReason.SHUTDOWN_REQUESTED: ReasonRules(),
    StopReason.GAME_EXITED: ReasonRules(),
    StopReason.GAME_CRASHED: ReasonRules(abnormal=True),
}

# Views of the table, for readers that want one property.
ABNORMAL_REASONS = frozenset(reason for reason, rules in REASONS.items() if rules.abnormal)
IDLE_REASONS = frozenset(reason for reason, rules in REASONS.items() if rules.idle)
TIMER_PRECEDENCE: tuple[StopReason, ...] = tuple(
    reason for reason, rules in REASONS.items() if rules.timer is not None
)
TIMER_NAMES: dict[StopReason, str] = {
    reason: rules.timer for reason, rules in REASONS.items() if rules.timer is not None
}

_PRE_STOP = frozenset({State.STARTING, State.READY, State.ACTIVE})
_STOP_DECIDED = frozenset({State.DRAINING, State.STOPPING, State.STOPPED, State.FAILED})

# Legal transitions; anything else is a bug in this module, not a user error.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.READY, State.ACTIVE, State.DRAINING, State.TERMINATING}),
    State.READY: frozenset({State.ACTIVE, State.DRAINING, State.TERMINATING}),
    State.ACTIVE: frozenset({State.DRAINING, State.TERMINATING}),
    State.DRAINING: frozenset({State.STOPPING, State.TERMINATING}),
    State.STOPPING: frozenset({State.STOPPED, State.FAILED, State.TERMINATING}),
    State.STOPPED: frozenset({State.TERMINATING}),
    State.FAILED: frozenset({State.TERMINATING}),
    State.TERMINATING: frozenset(),
}


# The most players the roster holds, named or anonymous (SPEC §11: documented, at least 10,000).
# Every status, event and metrics scrape carries the ids: unbounded, 50k ids made a 6.2 MB status.
ROSTER_CAP = 10_000


class RosterFull(Exception):
    """A roster change that would exceed ROSTER_CAP, or that a roster limit refused (the API
    answers 422)."""

    def __init__(self, wanted: int, why: str | None = None) -> None:
        super().__init__(
            why
            or f"the roster holds at most {ROSTER_CAP} players; this change would make it {wanted}"
        )
        self.wanted = wanted


class TransitionRefused(Exception):
    """A lifecycle change that no longer applies (the API answers 409)."""

    def __init__(self, action: str, state: State) -> None:
        super().__init__(f"cannot {action}: the server is {state.value}")
        self.action = action
        self.state = state


@dataclass(frozen=True)
class TimerSettings:
    """Timer lengths in seconds; 0 disables a timer. The one definition of the timers: their
    defaults are SPEC §4's, and config.Settings reads them from the environment."""

    ready_timeout: float = 300.0
    first_player_timeout: float = 120.0
    empty_timeout: float = 60.0
    max_duration: float = 0.0
    health_timeout: float = 30.0
    match_end_grace: float = 5.0
    network_idle_timeout: float = 0.0
    network_idle_pps: float = 2.0
    no_show_timeout: float = 60.0  # SPEC §12: Edgegap's guidance gives matched players ~60 s


class UnknownTicket(Exception):
    """A connect naming a ticket the matchmaker did not send (the API answers 422)."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"ticket {ticket_id!r} is not one of this match's tickets")
        self.ticket_id = ticket_id


class QuorumRule(StrEnum):
    """How SIDECAR_MATCH_QUORUM counts."""

    COUNT = "count"  # that many arrivals (capped at the number of tickets)
    ALL = "all"  # every ticket
    TEAMS = "teams"  # at least one arrival in every team (no team data: as a count of 1)


@dataclass(frozen=True)
class Quorum:
    """How many arrivals make the match playable (SPEC §12, `SIDECAR_MATCH_QUORUM`)."""

    rule: QuorumRule = QuorumRule.COUNT
    count: int = 1

    def __str__(self) -> str:
        return str(self.count) if self.rule is QuorumRule.COUNT else self.rule.value

    @property
    def configured(self) -> int | str:
        """As configured, for JSON: the number, or `all` / `teams`."""
        return self.count if self.rule is QuorumRule.COUNT else self.rule.value

    def met(self, expected: ExpectedPlayers, arrived: Collection[str]) -> bool:
        """True once `arrived` (ticket ids) is enough."""
        if self.rule is QuorumRule.TEAMS and expected.teams:
            return all(
                any(ticket in arrived for ticket in team) for team in expected.teams.values()
            )
        if self.rule is QuorumRule.ALL:
            needed = len(expected.tickets)
        else:  # a count, or teams without team data: as `1`
            needed = self.count if self.rule is QuorumRule.COUNT else 1
        return len(arrived) >= min(needed, len(expected.tickets))


@dataclass(frozen=True)
class ExpectedPlayers:
    """The matchmaker's tickets as the lifecycle needs them (SPEC §12): one expected player per
    ticket id, and the teams (team id → ticket ids; empty without team data). Built by
    sidecar.match from the MM_* variables."""

    tickets: tuple[str, ...]
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class StopDecision:
    """Why the server stops, decided once."""

    reason: StopReason
    detail: str
    decided_at: float
    grace: float
    match_result: Any = None
    log_storage_override: str | None = None
    # Run mode: how the game ended, when the stop is about the game's exit.
    exit_code: int | None = None
    signal: str | None = None

    @property
    def abnormal(self) -> bool:
        return self.reason in ABNORMAL_REASONS


@dataclass(frozen=True)
class Trigger:
    """A stop trigger that arrived after the decision: recorded, never acted on."""

    reason: StopReason
    detail: str
    at: float


Listener = Callable[[State, State], None]
ChangeListener = Callable[[Change], None]
ReplanListener = Callable[[], object]
# Another bound on the roster, from an adapter that shows it (the Agones GameServer's 1 MiB):
# given the ids and count a change would leave, a text refuses the change (RosterFull).
RosterLimit = Callable[[list[str], int], str | None]


@dataclass
class _Roster:
    """Connected players: named ids plus anonymous ones (from `PUT /v1/players {count}`)."""

    ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    anonymous: int = 0

    @property
    def count(self) -> int:
        return len(self.ids) + self.anonymous


class Lifecycle:
    """The state machine and its timers. All times come from `clock()` (seconds, monotonic)."""

    def __init__(
        self,
        timers: TimerSettings,
        clock: Callable[[], float],
        *,
        match_id: str | None = None,
        expected: ExpectedPlayers | None = None,
        quorum: Quorum = Quorum(),
    ) -> None:
        self.timers = timers
        self._clock = clock
        self.started_at = clock()
        self.state = State.STARTING
        self.ready_source: ReadySource | None = None
        self.ready_at: float | None = None
        # A game "reports players" once it called ready itself or used a players route; only
        # then do the player timers run (a port-ready game with no integration has no count).
        self.reports_players = False
        self.had_player = False
        self.players_peak = 0
        # SPEC §12: MM_MATCH_ID, else the id given to match start, else None.
        self.match_id: str | None = match_id
        self._matchmaker_match_id = match_id is not None
        self.match_started_at: float | None = None
        # The matchmaker's tickets (None: no match data) and the ones that arrived, each with
        # the first player that brought it; an arrived ticket stays arrived.
        self.expected = expected
        self.quorum = quorum
        self._expected_ids: frozenset[str] = frozenset(expected.tickets if expected else ())
        self._arrivals: dict[str, str] = {}
        self._quorum_met = expected is None or quorum.met(expected, ())
        self._roster = _Roster()
        # Start of the current idle window: moved by ready, a player leaving, activity, hold end.
        self._idle_anchor: float | None = None
        self._hold_until: float | None = None
        self.last_heartbeat: float | None = None
        # Network idle: last time the interfaces carried enough traffic, and the last sample.
        self._network_anchor: float | None = None
        self._network_sample: tuple[float, int] | None = None
        self.decision: StopDecision | None = None
        self._drain_until: float | None = None
        self._stop_released = False
        self.later_triggers: list[Trigger] = []
        self.terminate_signal: str | None = None
        self._listeners: list[Listener] = []
        self._change_listeners: list[ChangeListener] = []
        self._replan_listeners: list[ReplanListener] = []
        self._roster_limits: list[RosterLimit] = []

    # --- observation ---------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call `listener(old, new)` after every state change."""
        self._listeners.append(listener)

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener(change)` after every event that changed something (state, a deadline,
        the roster, what status shows), once per event, after any `subscribe` listeners."""
        self._change_listeners.append(listener)

    def on_replan(self, listener: ReplanListener) -> None:
        """Call `listener()` after the `on_change` listeners whenever the change is
        `Change.TIMERS`: a deadline may have come earlier, so whoever sleeps until
        `next_deadline()` must look again. Kept apart so that the hot path (a heartbeat that
        only pushes its deadline later) calls nobody who has nothing to do."""
        self._replan_listeners.append(listener)

    def limit_roster(self, limit: RosterLimit) -> None:
        """Ask `limit(ids, count)` before a connect or a new roster; a text it returns refuses it
        (`RosterFull` with that text, nothing changed)."""
        self._roster_limits.append(limit)

    def _check_roster_limits(self, ids: list[str], count: int) -> None:
        for limit in self._roster_limits:
            why = limit(ids, count)
            if why is not None:
                raise RosterFull(count, why)

    @property
    def now(self) -> float:
        return self._clock()

    @property
    def player_count(self) -> int:
        return self._roster.count

    @property
    def player_ids(self) -> list[str]:
        return list(self._roster.ids)

    @property
    def stop_decided(self) -> bool:
        return self.decision is not None

    @property
    def hold_active(self) -> bool:
        return self._hold_until is not None and self.now < self._hold_until

    def uptime(self) -> float:
        return self.now - self.started_at

    # --- game events ---------------------------------------------------------------------------
    def ready(self, source: ReadySource = ReadySource.API) -> None:
        """The game is ready (`POST /v1/ready`, or its game port is listening)."""
        if self.state in _STOP_DECIDED or self.state is State.TERMINATING:
            raise TransitionRefused("mark ready", self.state)
        if source is ReadySource.API:
            self.reports_players = True  # may arm the player timers, even on a repeated ready
        if self.ready_at is None:  # repeated ready is fine (200), the first one counts
            self.ready_at = self.now
            self.ready_source = source
            self._idle_anchor = self.now
            if self.state is State.STARTING:
                self._transition(State.READY)
        self._changed(Change.TIMERS)

    def heartbeat(self) -> None:
        """A health ping; the first one arms the health timer."""
        if self.last_heartbeat is None:
            self.last_heartbeat = self._clock()
            self._changed(Change.TIMERS)
            return
        # Once armed, a heartbeat only moves the health deadline later: the runtime finds the new
        # one when it wakes at the old, so games heartbeating many times a second cost it no
        # wake-ups. The measured hot path (docs/benchmarks.md): the STATUS announcement is made
        # inline, with the member looked up once at import.
        self.last_heartbeat = self._clock()
        for listener in self._change_listeners:
            listener(_STATUS)

    def activity(self) -> None:
        """Postpone the idle timers as if a player had just left."""
        self._idle_anchor = self.now
        if self._network_anchor is not None:
            self._network_anchor = self.now
        self._changed(Change.TIMERS)

    def player_connected(self, player_id: str, ticket_id: str | None = None) -> int:
        """Add a player (idempotent per id); `RosterFull` beyond ROSTER_CAP. The player brings
        the ticket it names, or the ticket its id is (SPEC §12); `UnknownTicket` (and no change)
        when it names one that is not expected."""
        if ticket_id is not None and ticket_id not in self._expected_ids:
            raise UnknownTicket(ticket_id)
        self._reports_players()
        roster = self._roster
        if player_id not in roster.ids:
            if roster.count >= ROSTER_CAP:
                raise RosterFull(roster.count + 1)
            if self._roster_limits:
                self._check_roster_limits([*roster.ids, player_id], roster.count + 1)
            roster.ids[player_id] = None
            self._roster_changed(roster.count - 1)
        if self._expected_ids:
            self._arrive(ticket_id or player_id, player_id)
        self._changed(Change.TIMERS)
        return roster.count

    def player_disconnected(self, player_id: str) -> int:
        self._reports_players()
        roster = self._roster
        before = roster.count
        if player_id in roster.ids:
            del roster.ids[player_id]
        elif roster.anonymous > 0:
            # The roster was set by count: this id was one of the anonymous players.
            roster.anonymous -= 1
        if roster.count != before:
            self._roster_changed(before)
        self._changed(Change.TIMERS)
        return roster.count

    def set_players(self, ids: Iterable[str] | None = None, count: int | None = None) -> int:
        """Replace the whole roster: exactly these ids, or `count` anonymous players;
        `RosterFull` (and no change) beyond ROSTER_CAP."""
        self._reports_players()
        before = self._roster.count
        if ids is not None:
            roster = _Roster(ids=dict.fromkeys(ids))
        else:
            roster = _Roster(anonymous=max(0, count or 0))
        if roster.count > ROSTER_CAP:
            raise RosterFull(roster.count)
        if self._roster_limits:
            self._check_roster_limits(list(roster.ids), roster.count)
        self._roster = roster
        self._roster_changed(before)
        if self._expected_ids:
            for player_id in roster.ids:
                self._arrive(player_id, player_id)
        self._changed(Change.TIMERS)
        return self._roster.count

    def hold(self, seconds: float) -> None:
        """Suspend idle stops for `seconds`; 0 ends the hold now (idle windows restart)."""
        now = self.now
        self._hold_until = now + max(0.0, seconds)
        self._changed(Change.TIMERS)  # ending a hold restarts the idle windows: maybe earlier

    def match_started(self, match_id: str | None = None) -> None:
        if self.state not in _PRE_STOP:
            raise TransitionRefused("start a match", self.state)
        if match_id is not None and not self._matchmaker_match_id:
            self.match_id = match_id  # the matchmaker's id, when there is one, stays
        if self.match_started_at is None:
            self.match_started_at = self.now  # the game decided to play: no no-show from now
        if self.state is not State.ACTIVE:
            self._transition(State.ACTIVE)
        self._changed(Change.TIMERS)

    def match_ended(self, result: Any = None, grace: float | None = None) -> bool:
        """Decide a `match_ended` stop. False when a stop was already decided (idempotent)."""
        decided = self._decide(
            StopReason.MATCH_ENDED,
            "the game ended the match",
            grace=self.timers.match_end_grace if grace is None else grace,
            match_result=result,
        )
        self._changed(Change.TIMERS)
        return decided

    def shutdown_requested(
        self, reason: str | None = None, grace: float | None = None, log_storage: str | None = None
    ) -> bool:
        """Decide a `shutdown_requested` stop. False when a stop was already decided."""
        decided = self._decide(
            StopReason.SHUTDOWN_REQUESTED,
            reason or "the game asked to shut down",
            grace=self.timers.match_end_grace if grace is None else grace,
            log_storage_override=log_storage,
        )
        self._changed(Change.TIMERS)
        return decided

    def game_exited(
        self, exit_code: int, signal_name: str | None = None, detail: str | None = None
    ) -> bool:
        """The game process ended. Cuts a running drain short; the first reason stays."""
        crashed = exit_code != 0 or signal_name is not None
        reason = StopReason.GAME_CRASHED if crashed else StopReason.GAME_EXITED
        if detail is None:
            detail = (
                f"the game was killed by {signal_name}"
                if signal_name
                else f"the game exited with code {exit_code}"
            )
        decided = self._decide(
            reason, detail, grace=0.0, exit_code=exit_code, signal_name=signal_name
        )
        if not decided and self.state is State.DRAINING:
            # Nobody is left to drain for: stop now, for the reason already decided.
            self._drain_until = self.now
        self._changed(Change.TIMERS)
        return decided

    def network_sample(self, packets_total: int) -> None:
        """Feed the packet counter of the non-loopback interfaces (network idle timer)."""
        now = self.now
        previous = self._network_sample
        self._network_sample = (now, packets_total)
        if previous is None:
            self._network_anchor = now  # arms the network idle timer
        elif now > previous[0]:
            rate = (packets_total - previous[1]) / (now - previous[0])
            if rate >= self.timers.network_idle_pps:
                self._network_anchor = now
        self._changed(Change.TIMERS)

    def terminating(self, signal_name: str) -> None:
        """The platform is stopping us (SIGTERM/SIGINT): no self-stop from now on."""
        self.terminate_signal = signal_name
        if self.state is not State.TERMINATING:
            self._transition(State.TERMINATING)
        self._changed(Change.TIMERS)

    # --- the runtime's side of the stop --------------------------------------------------------
    def stop_accepted(self) -> None:
        if self.state is State.STOPPING:
            self._transition(State.STOPPED)
            self._changed(Change.STATUS)

    def stop_failed(self) -> None:
        if self.state is State.STOPPING:
            self._transition(State.FAILED)
            self._changed(Change.STATUS)

    def poll(self) -> StopDecision | None:
        """Apply every deadline that has passed. Returns the decision once, when the self-stop
        call should start (state → stopping)."""
        now = self.now
        before = self.state
        released = None
        if self.state in _PRE_STOP:
            due = self._earliest_due_timer(now)
            if due is not None:
                reason, _deadline = due
                self._decide(reason, self._timer_detail(reason), grace=0.0)
        if (
            self.state is State.DRAINING
            and not self._stop_released
            and self._drain_until is not None
            and now >= self._drain_until
        ):
            self._stop_released = True
            self._transition(State.STOPPING)
            released = self.decision
        if self.state is not before:
            self._changed(Change.TIMERS)
        return released

    def next_deadline(self) -> float | None:
        """The next time `poll()` can change something, or None when nothing is pending."""
        if self.state is State.DRAINING and not self._stop_released:
            return self._drain_until
        if self.state not in _PRE_STOP:
            return None
        deadlines = [d for d in self._timer_deadlines().values() if d is not None]
        return min(deadlines) if deadlines else None

    def timers_left(self) -> dict[str, float]:
        """Seconds left on every armed timer (and the drain / hold), for status and metrics."""
        now = self.now
        left: dict[str, float] = {}
        if self.state in _PRE_STOP:
            for reason, deadline in self._timer_deadlines().items():
                if deadline is not None:
                    left[TIMER_NAMES[reason]] = max(0.0, deadline - now)
        if self.state is State.DRAINING and self._drain_until is not None:
            left["drain"] = max(0.0, self._drain_until - now)
        if self.hold_active and self._hold_until is not None:
            left["hold"] = self._hold_until - now
        return left

    def drain_deadline_in(self) -> float | None:
        if self.state is State.DRAINING and self._drain_until is not None:
            return max(0.0, self._drain_until - self.now)
        return None

    # --- the match (SPEC §12) ------------------------------------------------------------------
    def is_expected(self, ticket_id: str) -> bool:
        """Whether `ticket_id` is one of the matchmaker's tickets."""
        return ticket_id in self._expected_ids

    @property
    def expected_count(self) -> int:
        return len(self.expected.tickets) if self.expected is not None else 0

    @property
    def arrived_count(self) -> int:
        return len(self._arrivals)

    @property
    def arrivals(self) -> Mapping[str, str]:
        """Arrived ticket id → the player that brought it first, in arrival order."""
        return self._arrivals

    @property
    def quorum_met(self) -> bool:
        return self._quorum_met

    def missing_tickets(self) -> list[str]:
        """The expected tickets that have not arrived, in the matchmaker's order."""
        if self.expected is None:
            return []
        return [ticket for ticket in self.expected.tickets if ticket not in self._arrivals]

    # --- internals -----------------------------------------------------------------------------
    def _arrive(self, ticket_id: str, player_id: str) -> None:
        if ticket_id in self._expected_ids and ticket_id not in self._arrivals:
            self._arrivals[ticket_id] = player_id
            if not self._quorum_met and self.expected is not None:
                self._quorum_met = self.quorum.met(self.expected, self._arrivals)

    def _reports_players(self) -> None:
        self.reports_players = True

    def _roster_changed(self, before: int) -> None:
        count = self._roster.count
        self.players_peak = max(self.players_peak, count)
        if count > 0:
            self.had_player = True
            if self.state in (State.STARTING, State.READY):
                # A server with players is never stopped for ready_timeout.
                self._transition(State.ACTIVE)
        elif before > 0:
            self._idle_anchor = self.now  # the empty window starts when the last one leaves

    def _idle_window_start(self, anchor: float) -> float:
        """Idle windows restart from the end of a hold (a full window after it)."""
        if self._hold_until is not None and self._hold_until > anchor:
            return self._hold_until
        return anchor

    def _timer_deadlines(self) -> dict[StopReason, float | None]:
        t = self.timers
        deadlines: dict[StopReason, float | None] = dict.fromkeys(TIMER_PRECEDENCE)
        if self.state is State.STARTING and t.ready_timeout > 0:
            deadlines[StopReason.READY_TIMEOUT] = self.started_at + t.ready_timeout
        if self.last_heartbeat is not None and t.health_timeout > 0:
            deadlines[StopReason.UNHEALTHY] = self.last_heartbeat + t.health_timeout
        if t.max_duration > 0:
            deadlines[StopReason.MAX_DURATION] = self.started_at + t.max_duration
        if (
            not self._quorum_met
            and self.match_started_at is None
            and t.no_show_timeout > 0
            and self.ready_at is not None
            and self.reports_players
        ):
            # Counted from ready; a hold postpones it like an idle timer (a full window from
            # the hold's end). Connected players do not: only arrivals count.
            deadlines[StopReason.NO_SHOW] = (
                self._idle_window_start(self.ready_at) + t.no_show_timeout
            )
        nobody_here = self._roster.count == 0
        if nobody_here and self.ready_at is not None and self.reports_players:
            anchor = self._idle_window_start(self._idle_anchor or self.ready_at)
            if not self.had_player and t.first_player_timeout > 0:
                deadlines[StopReason.FIRST_PLAYER_TIMEOUT] = anchor + t.first_player_timeout
            elif self.had_player and t.empty_timeout > 0:
                deadlines[StopReason.EMPTY_TIMEOUT] = anchor + t.empty_timeout
        if (
            nobody_here
            and t.network_idle_timeout > 0
            and self._network_anchor is not None
            and self.state in (State.READY, State.ACTIVE)
        ):
            anchor = max(self._network_anchor, self.ready_at or self._network_anchor)
            deadlines[StopReason.NETWORK_IDLE] = (
                self._idle_window_start(anchor) + t.network_idle_timeout
            )
        return deadlines

    def _earliest_due_timer(self, now: float) -> tuple[StopReason, float] | None:
        best: tuple[StopReason, float] | None = None
        # Dicts keep TIMER_PRECEDENCE order, and `<` keeps the first of equal deadlines.
        for reason, deadline in self._timer_deadlines().items():
            if deadline is None or deadline > now:
                continue
            if best is None or deadline < best[1]:
                best = (reason, deadline)
        return best

    def _timer_detail(self, reason: StopReason) -> str:
        return REASONS[reason].detail.format(**vars(self.timers), **self._detail_values())

    def _detail_values(self) -> dict[str, object]:
        """What timer details may name besides the timer settings."""
        return {
            "expected": self.expected_count,
            "arrived": self.arrived_count,
            "quorum": self.quorum,
        }

    def _decide(
        self,
        reason: StopReason,
        detail: str,
        *,
        grace: float,
        match_result: Any = None,
        log_storage_override: str | None = None,
        exit_code: int | None = None,
        signal_name: str | None = None,
    ) -> bool:
        now = self.now
        if self.decision is not None or self.state is State.TERMINATING:
            self.later_triggers.append(Trigger(reason, detail, now))
            return False
        grace = grace if math.isfinite(grace) and grace > 0 else 0.0
        self.decision = StopDecision(
            reason=reason,
            detail=detail,
            decided_at=now,
            grace=grace,
            match_result=match_result,
            log_storage_override=log_storage_override,
            exit_code=exit_code,
            signal=signal_name,
        )
        self._drain_until = now + grace
        self._transition(State.DRAINING)
        return True

    def _changed(self, change: Change) -> None:
        for listener in self._change_listeners:
            listener(change)
        if change is Change.TIMERS:
            for replan in self._replan_listeners:
                replan()

    def _transition(self, new: State) -> None:
        old = self.state
        if new not in TRANSITIONS[old]:
            raise AssertionError(f"illegal lifecycle transition {old} -> {new}")
        self.state = new
        for listener in self._listeners:
            listener(old, new)
