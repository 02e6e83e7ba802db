"""The self-stop client: `DELETE {ARBITRIUM_DELETE_URL}` and its retry policy (SPEC §6).

    200, 202, other 2xx         accepted
    404, 410                    already gone: as good as accepted
    408, 429, 5xx, network      retried: exponential backoff with jitter (0.5 s doubling, cap
                                30 s), `Retry-After` honoured (seconds or HTTP date), until the
                                retry budget is spent
    400, 401, 403, other 3xx/4xx  permanent failure

The token goes in the raw `authorization` header and nowhere else: every error text this module
produces passes through `redact()`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum

import aiohttp
from yarl import URL

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0


class StopOutcome(StrEnum):
    ACCEPTED = "accepted"
    ALREADY_GONE = "already_gone"
    FAILED = "failed"


@dataclass(frozen=True)
class AttemptResult:
    """What one DELETE returned (status None = no HTTP answer)."""

    attempt: int
    status: int | None
    error: str | None
    retry_in: float | None  # seconds until the next attempt, None when this was the last


@dataclass(frozen=True)
class StopResult:
    outcome: StopOutcome
    attempts: int
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.outcome is not StopOutcome.FAILED


def classify(status: int) -> StopOutcome | None:
    """Final outcome for an HTTP status, or None when it should be retried."""
    if status in (404, 410):
        return StopOutcome.ALREADY_GONE
    if 200 <= status < 300:
        return StopOutcome.ACCEPTED
    if status in (408, 429) or status >= 500:
        return None
    return StopOutcome.FAILED


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Delay before retry number `attempt` (1-based): 0.5 s doubling, cap 30 s, with jitter.

    "Equal jitter": half the step is fixed, half random, so retries from many servers hitting
    the same platform fault spread out without ever retrying immediately.
    """
    step = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    return float(step / 2 + rng() * step / 2)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    # Imported here: the email package costs ~10 ms of start-up and dates are rare.
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def with_log_storage(url: str, log_storage: str | None) -> URL:
    """The delete URL with `container_log_storage` when a choice is set for this stop."""
    parsed = URL(url)
    if log_storage is None:
        return parsed
    return parsed.update_query(container_log_storage=log_storage)


class SelfStopClient:
    """Calls the self-stop endpoint until it is accepted, fails for good, or the budget ends.

    Single flight: concurrent `stop()` calls share the first call's result.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        delete_url: str,
        token: str,
        *,
        attempt_timeout: float,
        retry_budget: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._delete_url = delete_url
        self._token = token
        self._attempt_timeout = attempt_timeout
        self._retry_budget = retry_budget
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._wall_clock = wall_clock
        self._flight: asyncio.Task[StopResult] | None = None

    def stop(
        self,
        log_storage: str | None,
        on_attempt: Callable[[AttemptResult], None] | None = None,
    ) -> asyncio.Task[StopResult]:
        if self._flight is None:
            self._flight = asyncio.ensure_future(self._run(log_storage, on_attempt))
        return self._flight

    async def _run(
        self, log_storage: str | None, on_attempt: Callable[[AttemptResult], None] | None
    ) -> StopResult:
        url = with_log_storage(self._delete_url, log_storage)
        budget_ends = self._clock() + self._retry_budget
        attempt = 0
        while True:
            attempt += 1
            status, error, retry_after = await self._attempt(url)
            outcome = classify(status) if status is not None else None
            remaining = budget_ends - self._clock()
            if outcome is None and remaining > 0:
                delay = backoff_delay(attempt, self._rng)
                if retry_after is not None:
                    delay = retry_after
                delay = min(delay, remaining)
            else:
                delay = None
            if on_attempt is not None:
                on_attempt(AttemptResult(attempt, status, error, delay))
            if outcome is not None:
                return StopResult(outcome, attempt, status, error)
            if delay is None:
                return StopResult(
                    StopOutcome.FAILED,
                    attempt,
                    status,
                    f"retry budget of {self._retry_budget:g}s spent; last error: {error}",
                )
            await self._sleep(delay)

    async def _attempt(self, url: URL) -> tuple[int | None, str | None, float | None]:
        """One DELETE. Returns (status, error text, Retry-After seconds)."""
        try:
            async with self._session.delete(
                url,
                headers={"authorization": self._token},
                timeout=aiohttp.ClientTimeout(total=self._attempt_timeout),
                allow_redirects=False,
            ) as response:
                body = await response.text(errors="replace")
                retry_after = parse_retry_after(
                    response.headers.get("Retry-After"), self._wall_clock
                )
                error = None
                if classify(response.status) is not StopOutcome.ACCEPTED:
                    error = f"HTTP {response.status}: {body[:300].strip()}"
                return response.status, self._clean(error), retry_after
        except TimeoutError:
            return None, f"no answer within {self._attempt_timeout:g}s", None
        except aiohttp.ClientError as exc:
            return None, self._clean(f"{type(exc).__name__}: {exc}"), None

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else redact(text, [self._token])
