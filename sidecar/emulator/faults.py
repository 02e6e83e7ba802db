"""Fault injection: the queue of platform misbehaviours the emulator will play back.

A fault targets one kind of call by its route name in app.py (``self_stop``, ``stop``,
``deploy``, ``deploy_v1``, ``status``, ``bulk_stop``, ``container_logs``, ...) and applies
to the next ``count`` calls of that kind: each is delayed by ``delay_seconds`` and then, if
``status`` is set, answered with that status and ``{"message": "Injected fault"}`` (plus
``Retry-After`` when ``retry_after`` is set) instead of being processed. A delay-only fault
lets the call through after the delay, so a client that gave up still sees its stop carried
out, as on a slow platform.
Faults for the same target queue in the order they were added; normal behaviour resumes once
the queue is empty.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault, applied to the next `count` calls of `target`."""

    target: str = "self_stop"
    status: int | None = 503
    count: int = 1
    delay_seconds: float = 0.0
    retry_after: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    spec: FaultSpec
    remaining: int


class FaultQueue:
    """Pending faults per target, consumed one call at a time."""

    def __init__(self, initial: tuple[FaultSpec, ...] = ()) -> None:
        self._pending: dict[str, deque[_Pending]] = {}
        for spec in initial:
            self.add(spec)

    def add(self, spec: FaultSpec) -> None:
        self._pending.setdefault(spec.target, deque()).append(_Pending(spec, spec.count))

    def take(self, target: str | None) -> FaultSpec | None:
        """Consume one use of the oldest fault for `target`, if any."""
        if target is None:
            return None
        queue = self._pending.get(target)
        if not queue:
            return None
        head = queue[0]
        head.remaining -= 1
        if head.remaining <= 0:
            queue.popleft()
        return head.spec

    def clear(self) -> int:
        cleared = sum(len(queue) for queue in self._pending.values())
        self._pending.clear()
        return cleared

    def pending(self) -> list[dict[str, Any]]:
        return [
            {**item.spec.to_json(), "remaining": item.remaining}
            for queue in self._pending.values()
            for item in queue
        ]
