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

What each answer means is decided here (`classify`, `_OneStop.decide`); when and how often to
try again is sidecar.retry's `RetryLoop`, the policy every platform client shares.

The token goes in the raw `authorization` header and nowhere else: every error text this module
produces is redacted (before it is truncated) by `sidecar.redaction`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

# The one stop-outcome enum (status shows it too), importable from here as it always was.
from sidecar.outcomes import StopOutcome as StopOutcome
from sidecar.redaction import redact, truncate

# The policy lives in sidecar.retry (shared by every platform client); these names stay
# importable from here, where the self-stop's callers and tests have always found them.
from sidecar.retry import BACKOFF_BASE as BACKOFF_BASE
from sidecar.retry import BACKOFF_CAP as BACKOFF_CAP
from sidecar.retry import MIN_RETRY_DELAY as MIN_RETRY_DELAY
from sidecar.retry import Attempt, Retry, RetryLoop
from sidecar.retry import backoff_delay as backoff_delay
from sidecar.retry import parse_retry_after as parse_retry_after
from sidecar.retry import retry_delay as retry_delay

log = logging.getLogger(__name__)

# How much of an error answer is read, and how much of it an error text keeps.
ERROR_BODY_LIMIT = 64 * 1024
ERROR_TEXT_CHARS = 300
ERROR_BODY_SECONDS = 1.0


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
        # The agent's outbound session (sidecar.outbound): it never resends a request on its
        # own, so every DELETE on the wire is one of this policy's attempts.
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
            stop = _OneStop(self, log_storage)
        except (ValueError, TypeError) as exc:
            # Settings validate the URL; this is the last line if an embedder passed a bad one.
            return StopResult(StopOutcome.FAILED, 0, None, f"unusable delete URL: {exc}")
        loop = RetryLoop(
            self._retry_budget,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
            on_unexpected=self._log_unexpected,
        )
        ending = await loop.run(
            stop.attempt, stop.decide, lambda seen: stop.report(seen, on_attempt)
        )
        last = stop.answer_of(ending.last)
        if ending.budget_spent:
            return StopResult(
                StopOutcome.FAILED,
                ending.attempts,
                last.status,
                f"retry budget of {self._retry_budget:g}s spent; last error: {last.error}",
                stop.storage_refused,
            )
        assert last.status is not None  # only an answer with a final status ends the loop
        outcome = classify(last.status) or StopOutcome.FAILED
        return StopResult(outcome, ending.attempts, last.status, last.error, stop.storage_refused)

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

    async def _attempt(self, url: URL) -> _Answer:
        """One DELETE: its status (None: no HTTP answer), error text and Retry-After seconds.
        Never raises except for cancellation."""
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
                        return _Answer(status, None, None)
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), self._wall_clock
                    )
                    body = await self._error_body(response, self._body_timeout)
                    error = f"HTTP {status}: {body}" if body else f"HTTP {status}"
                    return _Answer(status, self._clean(error), retry_after)
        except TimeoutError:
            return _Answer(None, f"no answer within {self._attempt_timeout:g}s", None)
        except aiohttp.ClientError as exc:
            return _Answer(None, self._clean(f"{type(exc).__name__}: {exc}"), None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # SPEC §11: whatever went wrong, this attempt failed and the next one may not.
            self._log_unexpected("making a self-stop attempt", exc)
            return _Answer(None, self._clean(f"unexpected {type(exc).__name__}: {exc}"), None)

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


@dataclass(frozen=True)
class _Answer:
    """What one DELETE got: the status (None: no HTTP answer), the error text, Retry-After."""

    status: int | None
    error: str | None
    retry_after: float | None


class _OneStop:
    """One stop's attempts, decisions and reports for the retry loop; it owns the one thing
    that changes between attempts: whether the log choice is still sent."""

    def __init__(self, client: SelfStopClient, log_storage: str | None) -> None:
        self._client = client
        self._url = with_log_storage(client._delete_url, log_storage)
        self._without_storage = with_log_storage(client._delete_url, None)
        self._carries_storage = log_storage is not None
        self.storage_refused = False
        self._refused_on: int | None = None  # the attempt whose 400 refused the log choice
        self._number = 0

    async def attempt(self, number: int) -> _Answer:
        self._number = number
        return await self._client._attempt(self._url)

    def decide(self, answer: _Answer) -> Retry | None:
        """SPEC §6 by status alone, plus the one exception of §11 Round 2."""
        if self._carries_storage and answer.status == 400:
            # The log choice is optional, the stop is not: a 400 to an attempt that named a
            # storage (an unknown name, or `true` with none configured) says nothing about the
            # stop itself. 401/403 are about the token: still permanent. Not a platform fault,
            # so the backoff does not grow: the attempt without the parameter comes as soon as
            # the floor (or a Retry-After) allows. It and every later attempt go without it.
            self._carries_storage = False
            self.storage_refused = True
            self._refused_on = self._number
            self._url = self._without_storage
            return Retry(answer.retry_after, backoff=False)
        if answer.status is not None and classify(answer.status) is not None:
            return None
        return Retry(answer.retry_after)

    def answer_of(self, seen: Attempt[_Answer]) -> _Answer:
        if seen.result is not None:
            return seen.result
        # Only if the loop's own guard caught something _attempt let through.
        error = f"unexpected {type(seen.error).__name__}: {seen.error}"
        return _Answer(None, self._client._clean(error), None)

    def report(
        self, seen: Attempt[_Answer], on_attempt: Callable[[AttemptResult], None] | None
    ) -> None:
        answer = self.answer_of(seen)
        refused = seen.number == self._refused_on
        result = AttemptResult(seen.number, answer.status, answer.error, seen.retry_in, refused)
        self._client._report(on_attempt, result)
