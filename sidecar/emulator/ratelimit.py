"""The reference's rate limits: deploy 40/s (v2 and legacy together), status 20/s, list 10/s.

A sliding window of one second per limit: a call beyond it answers 429 with `Retry-After` (the
whole seconds until the oldest call in the window leaves it, at least 1) and the request log
marks it `rate_limited`. It is checked after auth, so refused calls (401) do not count, and
before faults, so a 429 does not use one up. Self-stop, context and the rest have no
documented limit and get none. Off unless `--rate-limits`: a script that polls status in a
tight loop would otherwise start failing the day it upgrades; turn it on to test your own
backoff against real 429s.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

# route name -> (limit group, calls per second)
LIMITS: dict[str, tuple[str, int]] = {
    "deploy": ("deploy", 40),
    "deploy_v1": ("deploy", 40),
    "status": ("status", 20),
    "list_deployments": ("list", 10),
}
_WINDOW_SECONDS = 1.0


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self.refused = 0

    def admit(self, route: str | None) -> int | None:
        """None when a call of `route` may go ahead (and counts), else its Retry-After."""
        if route not in LIMITS:
            return None
        group, limit = LIMITS[route]
        window = self._calls.setdefault(group, deque())
        now = self._clock()
        while window and window[0] <= now - _WINDOW_SECONDS:
            window.popleft()
        if len(window) >= limit:
            self.refused += 1
            return max(1, math.ceil(window[0] + _WINDOW_SECONDS - now))
        window.append(now)
        return None

    @staticmethod
    def limit_of(route: str) -> int:
        return LIMITS[route][1]
