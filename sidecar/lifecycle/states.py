"""The lifecycle's states: what each means, the legal transitions, and what moves them.

Part of the pure core (sidecar.lifecycle): nothing of ours beyond it, no I/O.
"""

from __future__ import annotations

from enum import Enum, StrEnum


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


# Before a stop is decided (the timers run), and once it is (they no longer do).
PRE_STOP = frozenset({State.STARTING, State.READY, State.ACTIVE})
STOP_DECIDED = frozenset({State.DRAINING, State.STOPPING, State.STOPPED, State.FAILED})

# Legal transitions; anything else is a bug in the state machine, not a user error.
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


class TransitionRefused(Exception):
    """A lifecycle change that no longer applies (the API answers 409)."""

    def __init__(self, action: str, state: State) -> None:
        super().__init__(f"cannot {action}: the server is {state.value}")
        self.action = action
        self.state = state
