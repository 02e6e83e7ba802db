"""The lifecycle core: states, timers as deadlines, and the one stop decision. No I/O.

Events come in as method calls on `Lifecycle` (`ready`, `heartbeat`, `player_connected`,
`game_exited`, ...), the clock is injected, and decisions come out:

* `poll()` evaluates every deadline against the clock and returns the `StopDecision` exactly
  once, at the moment the self-stop call should begin (after the drain grace);
* `next_deadline()` tells the runtime when to call `poll()` again, so an idle sidecar sleeps
  instead of polling;
* the lifecycle announces its own changes: `subscribe` listeners hear every state change,
  `on_change` listeners everything that moves the state, a deadline or what the status shows,
  and `on_replan` listeners (the runtime's timer loop) only what may bring a deadline earlier
  (`Change.TIMERS`). No adapter has to remember to wake the timer loop, and one that only
  pushes a deadline later (a repeated heartbeat) does not wake it.

Rules (SPEC §5) that shape the code:

* The first decided reason wins; later triggers are only recorded.
* Idle reasons (first player, empty, network idle) never fire while players are connected or a
  hold is active; when a hold ends the idle windows restart from its end (a full window).
* `max_duration` is a hard cap (SPEC §4): a drain's grace never runs past its deadline. A drain
  it cuts short keeps the decided reason, and `max_duration` is recorded as a later trigger.
* When several deadlines have passed at the same `poll()` (the process was suspended, or two
  timers coincide), the earliest deadline wins; exact ties go by the order of `REASONS`.
* The no-show (SPEC §12) counts arrivals, not players: a matchmaker ticket arrives when a player
  with its id (or naming it) connects, and stays arrived. It runs from ready for a game that
  reports players, until the quorum is met or a match starts; a hold postpones it.

One module per job: `states` (the states and their transitions), `reasons` (every stop reason as
one row of `REASONS`, the timer lengths, the decision), `roster` (players, the matchmaker's
tickets and the quorum), `machine` (the `Lifecycle` that applies them). Everything is importable
from here. The package imports nothing else of ours, nor aiohttp, psutil or pydantic (an
import-linter contract).
"""

from sidecar.lifecycle.machine import ChangeListener, Lifecycle, Listener, ReplanListener
from sidecar.lifecycle.reasons import (
    ABNORMAL_REASONS,
    IDLE_REASONS,
    REASONS,
    TIMER_NAMES,
    TIMER_PRECEDENCE,
    ReasonRules,
    StopDecision,
    StopReason,
    TimerSettings,
    Trigger,
)
from sidecar.lifecycle.roster import (
    ROSTER_CAP,
    ExpectedPlayers,
    Quorum,
    QuorumRule,
    RosterFull,
    RosterLimit,
    UnknownTicket,
)
from sidecar.lifecycle.states import TRANSITIONS, Change, ReadySource, State, TransitionRefused

__all__ = [
    "ABNORMAL_REASONS",
    "IDLE_REASONS",
    "REASONS",
    "ROSTER_CAP",
    "TIMER_NAMES",
    "TIMER_PRECEDENCE",
    "TRANSITIONS",
    "Change",
    "ChangeListener",
    "ExpectedPlayers",
    "Lifecycle",
    "Listener",
    "Quorum",
    "QuorumRule",
    "ReadySource",
    "ReasonRules",
    "ReplanListener",
    "RosterFull",
    "RosterLimit",
    "State",
    "StopDecision",
    "StopReason",
    "TimerSettings",
    "TransitionRefused",
    "Trigger",
    "UnknownTicket",
]
