"""The retry policy every platform client shares (SPEC §6, §11), and the loop that applies it.

    delay       `Retry-After` when the answer gave one (seconds or HTTP date, ASCII digits only),
                else exponential backoff with jitter: 0.5 s doubling, cap 30 s
    floor       never under 0.5 s, so `Retry-After: 0` or a past date cannot cause a storm
    budget      a delay is capped at what is left of the budget; once it is spent, no retry
    failures    an attempt that raises is a retryable failure, never the end of the loop
    decision    the caller's: each result is final, or a `Retry` (with its `Retry-After`)

`RetryLoop` owns none of the HTTP: it calls the caller's attempt, asks the caller's decision,
and waits on an injected clock and sleep, so every rule here is tested without waiting. The
self-stop client (edgegap.py) is one user; a match-result delivery client is meant to be the
next. Nothing of ours is imported: the loop is as pure as the lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
# The floor under every retry delay: `Retry-After: 0` or a date in the past must not turn a
# platform fault into a retry storm (SPEC §11).
MIN_RETRY_DELAY = 0.5
# Past this many doublings the step is at the cap anyway; stops 2**n from growing unbounded.
_MAX_DOUBLINGS = 16

R = TypeVar("R")


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Delay before retry number `attempt` (1-based): 0.5 s doubling, cap 30 s, with jitter.

    "Equal jitter": half the step is fixed, half random, so retries from many servers hitting
    the same platform fault spread out without ever retrying immediately.
    """
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    step = min(BACKOFF_CAP, BACKOFF_BASE * 2.0**doublings)
    return float(step / 2 + rng() * step / 2)


def retry_delay(
    attempt: int,
    retry_after: float | None,
    remaining: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """The wait before the next attempt: `Retry-After` when given, else the backoff; capped at
    what is left of the budget, and never under MIN_RETRY_DELAY (SPEC §11).

    The floor wins over the budget cap: with less than 0.5 s of budget left, the one last attempt
    comes 0.5 s later rather than a burst of attempts at the budget's edge.
    """
    delay = backoff_delay(attempt, rng) if retry_after is None else retry_after
    return max(MIN_RETRY_DELAY, min(delay, remaining))


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable.

    Seconds are ASCII digits only: `str.isdigit` also accepts superscripts, which `float`
    rejects, and other scripts' digits, which SPEC §11 rules out.
    The result may be 0 or huge: the caller floors and caps it.
    """
    if not value:
        return None
    value = value.strip(" \t")
    if value.isascii() and value.isdigit():
        seconds = float(value)  # a 400-digit value is inf, not an error; capped by the caller
        return seconds if math.isfinite(seconds) else math.inf
    if not value.isascii():
        return None
    # Imported here: the email package costs ~10 ms of start-up and dates are rare.
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass(frozen=True)
class Retry:
    """The decision to try again."""

    retry_after: float | None = None  # the answer's `Retry-After`, in seconds, when it gave one
    # False for a failure that is not the platform's (an optional part of the request refused):
    # the next attempt comes at the floor and the backoff does not grow for it.
    backoff: bool = True


@dataclass(frozen=True)
class Attempt(Generic[R]):
    """One attempt as the loop saw it."""

    number: int  # 1-based
    result: R | None  # None when the attempt raised
    error: Exception | None  # what it raised: a retryable failure
    retry_in: float | None  # seconds until the next attempt; None when this was the last


@dataclass(frozen=True)
class Ending(Generic[R]):
    """How the loop ended: a final result, or the budget spent (`last` then holds the last
    failure)."""

    last: Attempt[R]
    budget_spent: bool

    @property
    def attempts(self) -> int:
        return self.last.number


class RetryLoop:
    """Attempts until one is final or the budget is spent, waiting as the policy says.

    The backoff grows only with the failures the platform gave no `Retry-After` for: waits it
    asked for (a 429 storm) are its pacing, not a reason to wait up to 30 s after the next plain
    503 (measured by the fleet simulation: up to 30 s late after a storm).
    """

    def __init__(
        self,
        budget: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        on_unexpected: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self._budget = budget
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._on_unexpected = on_unexpected
        self._unexpected_logged = False

    async def run(
        self,
        attempt: Callable[[int], Awaitable[R]],
        decide: Callable[[R], Retry | None],
        on_attempt: Callable[[Attempt[R]], None] | None = None,
    ) -> Ending[R]:
        """Call `attempt(number)` until `decide` calls a result final (None) or the budget is
        spent. `on_attempt` hears every attempt with the delay chosen after it. Only
        cancellation leaves this early: an exception from `attempt` is a failed attempt, one
        from `decide` or `on_attempt` a retry (both reported to `on_unexpected`)."""
        budget_ends = self._clock() + self._budget
        number = 0
        unpaced_failures = 0
        while True:
            number += 1
            result: R | None = None
            error: Exception | None = None
            retry: Retry | None = Retry()
            try:
                answered = await attempt(number)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # SPEC §11: this attempt failed; the next one may not
                self._unexpected("making an attempt", exc)
                error = exc
            else:
                result = answered
                try:
                    retry = decide(answered)
                except Exception as exc:  # a bug in the decision must not end the loop either
                    self._unexpected("deciding on an attempt", exc)
                    error = exc
            remaining = budget_ends - self._clock()
            delay = None
            if retry is not None and remaining > 0:
                if not retry.backoff:
                    floor = MIN_RETRY_DELAY if retry.retry_after is None else retry.retry_after
                    delay = retry_delay(unpaced_failures, floor, remaining, self._rng)
                else:
                    if retry.retry_after is None:
                        unpaced_failures += 1
                    delay = retry_delay(unpaced_failures, retry.retry_after, remaining, self._rng)
            seen = Attempt(number, result, error, delay)
            if on_attempt is not None:
                try:
                    on_attempt(seen)
                except Exception as exc:  # the attempts matter more than their report
                    self._unexpected("reporting an attempt", exc)
            if retry is None:
                return Ending(seen, budget_spent=False)
            if delay is None:
                return Ending(seen, budget_spent=True)
            await self._sleep(delay)

    def _unexpected(self, what: str, exc: Exception) -> None:
        """Hand an unexpected failure to `on_unexpected`; without one, log the first with its
        traceback (SPEC §11: logged once) and later ones only as attempts."""
        if self._on_unexpected is not None:
            self._on_unexpected(what, exc)
        elif not self._unexpected_logged:
            self._unexpected_logged = True
            log.error(
                "unexpected error while %s (treated as a failed attempt): %r",
                what,
                exc,
                exc_info=exc,
            )
