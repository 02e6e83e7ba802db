"""Fault injection: the queue of platform misbehaviours the emulator will play back.

A fault targets one kind of call by its route name in app.py (``self_stop``, ``stop``,
``deploy``, ``deploy_v1``, ``status``, ``bulk_stop``, ``container_logs``, ...) and applies
to the next ``count`` calls of that kind: each is delayed by ``delay_seconds`` and then, if
``status`` is set, answered with that status and ``{"message": "Injected fault"}`` (plus
``Retry-After`` when ``retry_after`` is set) instead of being processed. A delay-only fault
lets the call through after the delay, so a client that gave up still sees its stop carried
out, as on a slow platform.

Three optional fields narrow a fault down, so a fleet can be tested against one emulator:

* ``request_id``: only calls about that deployment (routes with a ``{request_id}``) match;
* ``starts_in_seconds``: the fault becomes active that long after it was added (a whole
  timeline of outages can be queued up front, timed by the emulator's clock, not the client's);
* ``duration_seconds``: once active, the fault lasts that long and then lapses, whatever is
  left of its count. With ``count`` null it hits every matching call while it lasts: "an
  outage of 10 s" is ``{"status": 503, "count": null, "duration_seconds": 10}``. A fault with
  neither a count nor a duration lasts until the faults are cleared.

A call takes the oldest fault of its target that is active now and matches it; faults that
are not active yet or are for another deployment do not hold up the others. Normal behaviour
resumes once no fault applies. With none of the three fields set this is the plain queue:
faults for the same target play in the order they were added.

`CURRENT_FAULT` carries the fault applied to the call being handled (set by the fault
middleware, read by the request log), so the log can tell an injected answer from a real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault, applied to the next `count` calls of `target` (None: every call
    while it is active)."""

    target: str = "self_stop"
    status: int | None = 503
    count: int | None = 1
    delay_seconds: float = 0.0
    retry_after: str | None = None
    request_id: str | None = None
    starts_in_seconds: float = 0.0
    duration_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, request_id: str | None) -> bool:
        return self.request_id is None or self.request_id == request_id


@dataclass
class _Pending:
    spec: FaultSpec
    remaining: int | None
    active_from: float
    expires_at: float | None

    def active(self, now: float) -> bool:
        return self.active_from <= now and not self.expired(now)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


# The fault applied to the call being handled: each call runs in its own task, and the record
# middleware resets it before every call (keep-alive calls may share a task's context).
CURRENT_FAULT: ContextVar[FaultSpec | None] = ContextVar("emulator_current_fault", default=None)


class FaultQueue:
    """Pending faults per target, consumed one call at a time. `clock` is monotonic seconds."""

    def __init__(
        self,
        initial: tuple[FaultSpec, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._pending: dict[str, list[_Pending]] = {}
        for spec in initial:
            self.add(spec)

    def add(self, spec: FaultSpec) -> None:
        active_from = self._clock() + spec.starts_in_seconds
        expires_at = None if spec.duration_seconds is None else active_from + spec.duration_seconds
        self._pending.setdefault(spec.target, []).append(
            _Pending(spec, spec.count, active_from, expires_at)
        )

    def take(self, target: str | None, request_id: str | None = None) -> FaultSpec | None:
        """Consume one use of the oldest fault for `target` that applies now to a call about
        `request_id` (None: a call about no deployment), if any."""
        if target is None:
            return None
        queue = self._pending.get(target)
        if not queue:
            return None
        now = self._clock()
        queue[:] = [item for item in queue if not item.expired(now)]
        for item in queue:
            if not item.active(now) or not item.spec.matches(request_id):
                continue
            if item.remaining is not None:
                item.remaining -= 1
                if item.remaining <= 0:
                    queue.remove(item)
            return item.spec
        return None

    def clear(self) -> int:
        cleared = sum(len(queue) for queue in self._pending.values())
        self._pending.clear()
        return cleared

    def pending(self) -> list[dict[str, Any]]:
        """Every fault not yet used up or lapsed, with what is left of it."""
        now = self._clock()
        return [
            {
                **item.spec.to_json(),
                "remaining": item.remaining,
                "active": item.active(now),
                "starts_in": round(max(0.0, item.active_from - now), 3),
                "ends_in": None if item.expires_at is None else round(item.expires_at - now, 3),
            }
            for queue in self._pending.values()
            for item in queue
            if not item.expired(now)
        ]
