"""Why a server stops: every stop reason as one row of `REASONS`, the timers' lengths, and
the decision the lifecycle takes once.

A new stop reason is a `StopReason` member with its row here, plus its trigger: an adapter that
detects it calls `Lifecycle.stop_for(reason, detail)` (the row's `idle` and `abnormal` then
apply); a timer instead gets its deadline rule in `Lifecycle._timer_deadlines` and its length
here in `TimerSettings` (with its variable in sidecar.config.settings). Part of the pure core: no
I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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
