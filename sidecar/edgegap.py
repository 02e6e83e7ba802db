"""The self-stop client: `DELETE {ARBITRIUM_DELETE_URL}` and its retry policy (SPEC §6).

    200, 202, other 2xx         accepted
    404, 410                    already gone: as good as accepted
    408, 429, 5xx, network      retried: exponential backoff with jitter (0.5 s doubling, cap
                                30 s), `Retry-After` honoured (seconds or HTTP date), until the
                                retry budget is spent
    anything unexpected         retried the same way (an undecodable answer, a bug in a library)
    400, 401, 403, other 3xx/4xx  permanent failure
    400 to `container_log_storage`  the log choice is dropped, not the stop: retried at once
                                (0.5 s floor, same budget) and every later attempt without the
                                parameter (SPEC §11 Round 2); a 400 without it is permanent

The stop path must never die and never hammer the platform (SPEC §11), so:

* only the status code decides; the decision is taken as soon as the headers arrive. The body of
  a 2xx is never read (a slow or endless body cannot turn an accepted stop into a timeout and a
  second DELETE); an error body is read up to 64 KiB, decoded as UTF-8 whatever its charset says;
* no retry comes sooner than 0.5 s after the previous attempt, whatever `Retry-After` says;
* the backoff is computed without overflow however many attempts a long budget allows;
* every exception an attempt can raise is a retryable failure, never the end of the stop task;
* one attempt is one DELETE on the wire: aiohttp's own silent resend is turned off.

The token goes in the raw `authorization` header and nowhere else: every error text this module
produces is redacted (before it is truncated) by `sidecar.redaction`.
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
from enum import StrEnum

import aiohttp
from yarl import URL

from sidecar.redaction import redact, truncate

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
# The floor under every retry delay: `Retry-After: 0` or a date in the past must not turn a
# platform fault into a retry storm (SPEC §11).
MIN_RETRY_DELAY = 0.5
# Past this many doublings the step is at the cap anyway; stops 2**n from growing unbounded.
_MAX_DOUBLINGS = 16
# How much of an error answer is read, and how much of it an error text keeps.
ERROR_BODY_LIMIT = 64 * 1024
ERROR_TEXT_CHARS = 300
ERROR_BODY_SECONDS = 1.0


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
    # This attempt carried `container_log_storage` and its 400 made the client drop it: true for
    # that one attempt only.
    log_storage_refused: bool = False


@dataclass(frozen=True)
class StopResult:
    outcome: StopOutcome
    attempts: int
    status: int | None
    error: str | None
    log_storage_refused: bool = False  # the platform refused the log choice along the way

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
        # aiohttp resends an idempotent request (DELETE is one) once, at once, when the
        # connection breaks under it, so one attempt could put two DELETEs on the wire
        # milliseconds apart: under the 0.5 s floor and uncounted. Every resend must be this
        # policy's. aiohttp has no public switch (aio-libs/aiohttp#10790); its own test client
        # turns the flag off the same way. Absent before aiohttp 3.11, hence the pin there.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._delete_url = delete_url
        self._token = token
        self._attempt_timeout = attempt_timeout
        self._retry_budget = retry_budget
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._wall_clock = wall_clock
        self._flight: asyncio.Task[StopResult] | None = None
        self._unexpected_logged = False

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
        try:
            url = with_log_storage(self._delete_url, log_storage)
            without_storage = with_log_storage(self._delete_url, None)
        except (ValueError, TypeError) as exc:
            # Settings validate the URL; this is the last line if an embedder passed a bad one.
            return StopResult(StopOutcome.FAILED, 0, None, f"unusable delete URL: {exc}")
        budget_ends = self._clock() + self._retry_budget
        attempt = 0
        # The backoff grows only with the failures the platform gave no Retry-After for: waits
        # it asked for (a 429 storm) are its pacing, not a reason to wait up to 30 s after the
        # next plain 503 (measured by the fleet simulation: up to 30 s late after a storm).
        unpaced_failures = 0
        storage_refused = False
        while True:
            attempt += 1
            carries_storage = log_storage is not None and not storage_refused
            status, error, retry_after = await self._attempt(url)
            outcome = classify(status) if status is not None else None
            # The log choice is optional, the stop is not (SPEC §11 Round 2): a 400 to an
            # attempt that named a storage (an unknown name, or `true` with none configured)
            # says nothing about the stop itself. 401/403 are about the token: still permanent.
            refused_now = carries_storage and status == 400
            if refused_now:
                outcome = None
                storage_refused = True
                url = without_storage
            remaining = budget_ends - self._clock()
            delay = None
            if outcome is None and remaining > 0:
                if refused_now:
                    # Not a platform fault, so the backoff does not grow: the attempt without
                    # the parameter comes as soon as the floor (or a Retry-After) allows.
                    pace = MIN_RETRY_DELAY if retry_after is None else retry_after
                    delay = retry_delay(unpaced_failures, pace, remaining, self._rng)
                else:
                    if retry_after is None:
                        unpaced_failures += 1
                    delay = retry_delay(unpaced_failures, retry_after, remaining, self._rng)
            self._report(on_attempt, AttemptResult(attempt, status, error, delay, refused_now))
            if outcome is not None:
                return StopResult(outcome, attempt, status, error, storage_refused)
            if delay is None:
                return StopResult(
                    StopOutcome.FAILED,
                    attempt,
                    status,
                    f"retry budget of {self._retry_budget:g}s spent; last error: {error}",
                    storage_refused,
                )
            await self._sleep(delay)

    def _report(
        self, on_attempt: Callable[[AttemptResult], None] | None, result: AttemptResult
    ) -> None:
        """Tell the caller about an attempt; a failing observer must not end the stop."""
        if on_attempt is None:
            return
        try:
            on_attempt(result)
        except Exception as exc:  # the stop matters more than its progress report
            self._log_unexpected("reporting a self-stop attempt", exc)

    async def _attempt(self, url: URL) -> tuple[int | None, str | None, float | None]:
        """One DELETE. Returns (status, error text, Retry-After seconds); never raises except
        for cancellation."""
        try:
            async with asyncio.timeout(self._attempt_timeout):
                async with self._session.delete(
                    url,
                    headers={"authorization": self._token},
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    if classify(status) in (StopOutcome.ACCEPTED, StopOutcome.ALREADY_GONE):
                        # Decided by the status alone; the body (possibly slow, huge or
                        # undecodable) is not our business. Leaving the block drops it.
                        return status, None, None
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), self._wall_clock
                    )
                    body = await self._error_body(response, self._body_timeout)
                    error = f"HTTP {status}: {body}" if body else f"HTTP {status}"
                    return status, self._clean(error), retry_after
        except TimeoutError:
            return None, f"no answer within {self._attempt_timeout:g}s", None
        except aiohttp.ClientError as exc:
            return None, self._clean(f"{type(exc).__name__}: {exc}"), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # SPEC §11: whatever went wrong, this attempt failed and the next one may not.
            self._log_unexpected("making a self-stop attempt", exc)
            return None, self._clean(f"unexpected {type(exc).__name__}: {exc}"), None

    @property
    def _body_timeout(self) -> float:
        # Well inside the attempt's own deadline, so a trickling body never turns an answer
        # whose status is known into a timeout.
        return min(ERROR_BODY_SECONDS, self._attempt_timeout / 2)

    @staticmethod
    async def _error_body(response: aiohttp.ClientResponse, within: float) -> str:
        """Up to ERROR_BODY_LIMIT bytes of an error answer, as text for the log.

        Reading it is best effort: the status already decided what happens next, so a body that
        breaks off or trickles past the attempt's deadline only shortens the explanation.
        """
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(within):
                while size < ERROR_BODY_LIMIT:
                    chunk = await response.content.read(ERROR_BODY_LIMIT - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError):
            chunks.append(b" (answer body cut short)")
        # The charset in Content-Type is never trusted (`charset=base64` is not a text codec).
        return b"".join(chunks).decode("utf-8", errors="replace").strip()

    def _clean(self, text: str | None) -> str | None:
        """Redact the whole text first, then shorten it: cut first and a token split by the cut
        would no longer match and leak."""
        if text is None:
            return None
        return truncate(" ".join(redact(text, [self._token]).split()), ERROR_TEXT_CHARS)

    def _log_unexpected(self, what: str, exc: BaseException) -> None:
        """Log the first unexpected failure with its traceback; later ones only as attempts."""
        if self._unexpected_logged:
            return
        self._unexpected_logged = True
        log.error(
            "unexpected error while %s (treated as a failed attempt): %s",
            what,
            self._clean(repr(exc)),
            exc_info=exc,
        )
