"""The lifecycle's state machine: game events in, the one stop decision and deadlines out.

The rules it applies are described in the package docstring (sidecar.lifecycle); its tables live
beside it: the states and transitions (`states`), the stop reasons and timer lengths (`reasons`),
the roster and the matchmaker's arrivals (`roster`). A timer's deadline is its rule in
`_timer_deadlines`. No I/O: the clock is injected.

Over 450 lines on purpose: one class, the only one that holds the lifecycle's mutable state;
everything that is a table or a value has moved out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sidecar.lifecycle.reasons import (
    REASONS,
    TIMER_NAMES,
    TIMER_PRECEDENCE,
    StopDecision,
    StopReason,
    TimerSettings,
    Trigger,
)
from sidecar.lifecycle.roster import (
    Arrivals,
    ExpectedPlayers,
    Quorum,
    Roster,
    RosterLimit,
    UnknownTicket,
)
from sidecar.lifecycle.states import (
    PRE_STOP,
    STOP_DECIDED,
    TRANSITIONS,
    Change,
    ReadySource,
    State,
    TransitionRefused,
)

# Looked up once: the heartbeat hot path announces it inline (docs/benchmarks.md).
_STATUS = Change.STATUS
# SIDECAR_MATCH_QUORUM's default (frozen, so one instance serves every lifecycle).
_DEFAULT_QUORUM = Quorum()

Listener = Callable[[State, State], None]
ChangeListener = Callable[[Change], None]
ReplanListener = Callable[[], object]


class Lifecycle:
    """The state machine and its timers. All times come from `clock()` (seconds, monotonic)."""

    def __init__(
        self,
        timers: TimerSettings,
        clock: Callable[[], float],
        *,
        match_id: str | None = None,
        expected: ExpectedPlayers | None = None,
        quorum: Quorum = _DEFAULT_QUORUM,
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
        self.expected = expected
        self.quorum = quorum
        self._match = Arrivals(expected, quorum)
        self._roster = Roster()
        # Start of the current idle window: moved by ready, a player leaving, activity, hold end.
        self._idle_anchor: float | None = None
        self._hold_until: float | None = None
        self.last_heartbeat: float | None = None
        # Network idle: last time the interfaces carried enough traffic, and the last sample.
        self._network_anchor: float | None = None
        self._network_sample: tuple[float, int] | None = None
        self.decision: StopDecision | None = None
        self._drain_until: float | None = None
        # The max-duration deadline, when it cut the drain's grace short (see `_decide`).
        self._drain_cut_at: float | None = None
        self._stop_released = False
        self.later_triggers: list[Trigger] = []
        self.terminate_signal: str | None = None
        self._listeners: list[Listener] = []
        self._change_listeners: list[ChangeListener] = []
        self._replan_listeners: list[ReplanListener] = []

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
        self._roster.limits.append(limit)

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
        if self.state in STOP_DECIDED or self.state is State.TERMINATING:
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
        if ticket_id is not None and ticket_id not in self._match.ticket_ids:
            raise UnknownTicket(ticket_id)
        self._reports_players()
        if self._roster.add(player_id):
            self._roster_changed(self._roster.count - 1)
        if self._match.ticket_ids:
            self._match.arrive(ticket_id or player_id, player_id)
        self._changed(Change.TIMERS)
        return self._roster.count

    def player_disconnected(self, player_id: str) -> int:
        self._reports_players()
        if self._roster.remove(player_id):
            self._roster_changed(self._roster.count + 1)
        self._changed(Change.TIMERS)
        return self._roster.count

    def set_players(self, ids: Iterable[str] | None = None, count: int | None = None) -> int:
        """Replace the whole roster: exactly these ids, or `count` anonymous players;
        `RosterFull` (and no change) beyond ROSTER_CAP."""
        self._reports_players()
        before = self._roster.count
        self._roster.replace(ids, count)
        self._roster_changed(before)
        if self._match.ticket_ids:
            for player_id in self._roster.ids:
                self._match.arrive(player_id, player_id)
        self._changed(Change.TIMERS)
        return self._roster.count

    def hold(self, seconds: float) -> None:
        """Suspend idle stops for `seconds`; 0 ends the hold now (idle windows restart)."""
        now = self.now
        self._hold_until = now + max(0.0, seconds)
        self._changed(Change.TIMERS)  # ending a hold restarts the idle windows: maybe earlier

    def match_started(self, match_id: str | None = None) -> None:
        if self.state not in PRE_STOP:
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

    def stop_for(self, reason: StopReason, detail: str) -> bool:
        """A stop an adapter detected (a watcher, a platform call), decided by its row of
        `REASONS` like the built-in triggers: an idle reason only while nobody is here and no
        hold is active (else False, nothing recorded: idleness is a state, not an event, so the
        adapter reports it again while it lasts). False when a stop was already decided."""
        if REASONS[reason].idle and (self._roster.count > 0 or self.hold_active):
            return False
        decided = self._decide(reason, detail, grace=0.0)
        self._changed(Change.TIMERS)
        return decided

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
        if self.state in PRE_STOP:
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
            cut_at = self._drain_cut_at
            if cut_at is not None and now >= cut_at:
                reason = StopReason.MAX_DURATION
                self.later_triggers.append(Trigger(reason, self._timer_detail(reason), now))
            self._transition(State.STOPPING)
            released = self.decision
        if self.state is not before:
            self._changed(Change.TIMERS)
        return released

    def next_deadline(self) -> float | None:
        """The next time `poll()` can change something, or None when nothing is pending."""
        if self.state is State.DRAINING and not self._stop_released:
            return self._drain_until
        if self.state not in PRE_STOP:
            return None
        deadlines = [d for d in self._timer_deadlines().values() if d is not None]
        return min(deadlines) if deadlines else None

    def timers_left(self) -> dict[str, float]:
        """Seconds left on every armed timer (and the drain / hold), for status and metrics."""
        now = self.now
        left: dict[str, float] = {}
        if self.state in PRE_STOP:
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
        return ticket_id in self._match.ticket_ids

    @property
    def expected_count(self) -> int:
        return len(self.expected.tickets) if self.expected is not None else 0

    @property
    def arrived_count(self) -> int:
        return len(self._match.arrived)

    @property
    def arrivals(self) -> Mapping[str, str]:
        """Arrived ticket id → the player that brought it first, in arrival order."""
        return self._match.arrived

    @property
    def quorum_met(self) -> bool:
        return self._match.quorum_met

    def missing_tickets(self) -> list[str]:
        """The expected tickets that have not arrived, in the matchmaker's order."""
        return self._match.missing()

    # --- internals -----------------------------------------------------------------------------

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
        deadlines[StopReason.MAX_DURATION] = self._max_duration_deadline()
        if (
            not self._match.quorum_met
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

    def _max_duration_deadline(self) -> float | None:
        if self.timers.max_duration > 0:
            return self.started_at + self.timers.max_duration
        return None

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
        # SIDECAR_MAX_DURATION is a hard cap whatever the players (SPEC §4), so whatever the
        # grace too: a drain that would outlast it ends at its deadline (`poll()` then records
        # `max_duration` as a later trigger; the first reason stays, as for a game exit).
        cap = self._max_duration_deadline()
        if cap is not None and reason is not StopReason.MAX_DURATION and now + grace > cap:
            grace = max(0.0, cap - now)
            self._drain_cut_at = cap
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
