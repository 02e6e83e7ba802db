"""The GameServer state Agones would show for a lifecycle state (SPEC §10).

starting                          Scheduled   (the game has not said it is ready)
ready                             Ready
active                            Allocated   (a match started, or a player connected)
any of those, while a hold lasts  Reserved    (Agones' Reserve, or POST /v1/hold)
a stop decided (draining ...)     Shutdown    (Unhealthy when the reason is `unhealthy`)
terminating                       Shutdown    (the platform is stopping the deployment)
"""

from __future__ import annotations

from enum import StrEnum

from sidecar.lifecycle import State, StopDecision, StopReason


class GameServerState(StrEnum):
    SCHEDULED = "Scheduled"
    READY = "Ready"
    ALLOCATED = "Allocated"
    RESERVED = "Reserved"
    SHUTDOWN = "Shutdown"
    UNHEALTHY = "Unhealthy"


_BEFORE_STOP = {
    State.STARTING: GameServerState.SCHEDULED,
    State.READY: GameServerState.READY,
    State.ACTIVE: GameServerState.ALLOCATED,
}


def agones_state(state: State, decision: StopDecision | None, hold_active: bool) -> GameServerState:
    if decision is not None:
        if decision.reason is StopReason.UNHEALTHY:
            return GameServerState.UNHEALTHY
        return GameServerState.SHUTDOWN
    before_stop = _BEFORE_STOP.get(state)
    if before_stop is None:
        return GameServerState.SHUTDOWN  # terminating without a decision of ours
    if hold_active:
        return GameServerState.RESERVED
    return before_stop
