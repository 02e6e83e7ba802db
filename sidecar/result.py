"""The match-result delivery: `POST {SIDECAR_RESULT_URL}` once a stop is decided (SPEC §12).

    2xx                         delivered (the body is never read)
    408, 429, 5xx, network      retried with sidecar.retry's rules (backoff, `Retry-After`, the
                                0.5 s floor) until SIDECAR_RESULT_BUDGET is spent
    timeout                     one attempt: SIDECAR_STOP_ATTEMPT_TIMEOUT; then retried
    anything unexpected         retried the same way
    any other answer            failed for good (3xx, 4xx but 408/429)

Exactly one accepted delivery per deployment: the delivery is single flight (`start()` twice is
the first call's task), it ends at the first 2xx, and every attempt carries the same
`Idempotency-Key: <request_id>:<match_id or "none">`, so a receiver that answered an attempt the
sidecar never heard back from (a timeout, a reset) can take the retry for the same result.

When it happens is the stop sequence's business (stop.py): it starts at the decision, during the
drain grace, and the self-stop waits for it at most SIDECAR_RESULT_WAIT past the grace; it keeps
trying after that until delivered, failed, or the process ends (`close()`, in the agent's
shutdown, where no step waits for it). Its POSTs go out on the agent's one outbound session
(sidecar.outbound), which has no pool limit: a delivery never holds the self-stop's DELETE up.

The token goes in the `Authorization` header and nowhere else; neither it nor the URL (which may
carry credentials in its userinfo or query) appears in any text this module produces: every
error text is redacted, then truncated, and the URL is only ever shown through `redact_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from sidecar.outbound import OutboundSession
from sidecar.outcomes import DeliveryOutcome
from sidecar.redaction import redact, redact_url, truncate
from sidecar.retry import Retry, RetryLoop, parse_retry_after
from sidecar.status import DeliveryProgress

log = logging.getLogger("sidecar")

# An answer body is read at most this far (and ignored): the status alone decides.
BODY_LIMIT = 64 * 1024
ERROR_TEXT_CHARS = 300


def rfc3339(unix_seconds: float) -> str:
    """`2026-12-07T18:30:00.123Z`: UTC, millisecond precision."""
    when = datetime.fromtimestamp(unix_seconds, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def result_body(
    *,
    request_id: str | None,
    match_id: str | None,
    reason: str,
    detail: str,
    result: Any,
    players_peak: int,
    arrived: int,
    started_at: float,
    ended_at: float,
) -> dict[str, Any]:
    """The delivered JSON (SPEC §12); times are Unix seconds, written as RFC 3339 UTC."""
    return {
        "request_id": request_id,
        "match_id": match_id,
        "reason": reason,
        "detail": detail,
        "result": result,
        "players_peak": players_peak,
        "arrived": arrived,
        "started_at": rfc3339(started_at),
        "ended_at": rfc3339(ended_at),
    }


# What an Idempotency-Key carries as it is: printable ASCII but `%`, which starts an escape.
_KEY_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def idempotency_key(request_id: str | None, match_id: str | None) -> str:
    """The same on every attempt, so one result is taken once however often it is sent.

    Always a valid header value: anything outside printable ASCII in the ids (a line break, a
    control character, non-ASCII, even a lone surrogate from an undecodable variable) is
    percent-encoded as UTF-8, deterministically, so every attempt still carries the same key;
    an id without such characters is sent unchanged."""
    return f"{_key_part(request_id)}:{_key_part(match_id)}"


def _key_part(value: str | None) -> str:
    if not value:
        return "none"
    return quote(value, safe=_KEY_SAFE, errors="surrogatepass")


def retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


@dataclass(frozen=True)
class _Answer:
    """What one POST got: the status (None: no HTTP answer), the error text, Retry-After."""

    status: int | None
    error: str | None
    retry_after: float | None


class ResultDelivery:
    """Delivers one result, once, on the agent's outbound session. Owns its task.

    `on_progress` hears every change to `progress` (status shows it)."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        *,
        attempt_timeout: float,
        budget: float,
        on_progress: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        wall_clock: Callable[[], float] = time.time,
        http: OutboundSession,
    ) -> None:
        self._url = url
        self._token = token
        self._attempt_timeout = attempt_timeout
        self._budget = budget
        self._on_progress = on_progress
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._wall_clock = wall_clock
        self._http = http
        self._task: asyncio.Task[DeliveryOutcome] | None = None
        self._started = False  # once: not even close() makes room for a second delivery
        self._unexpected_logged = False
        self.progress = DeliveryProgress(outcome=DeliveryOutcome.OFF if url is None else None)
        # Everything that could show the URL's credentials or the token in an error text.
        self._secrets = [s for s in (token, url, *_url_secrets(url)) if s]

    @property
    def enabled(self) -> bool:
        return self._url is not None

    @property
    def outcome(self) -> DeliveryOutcome:
        """What the stop record says: off, pending (started or not yet), delivered, failed."""
        return self.progress.outcome or DeliveryOutcome.PENDING

    def start(self, body: dict[str, Any], key: str) -> None:
        """Begin delivering `body` (no-op when off, or when already started: single flight)."""
        if self._url is None or self._started:
            return
        self._started = True
        self.progress.outcome = DeliveryOutcome.PENDING
        self._task = asyncio.ensure_future(self._run(self._url, body, key))
        self._notify()

    async def wait(self, within: float) -> DeliveryOutcome:
        """The outcome once the delivery has ended, or as it stands after `within` seconds
        (it goes on in the background: waiting never cancels it)."""
        task = self._task
        if task is not None and not task.done() and within > 0:
            await asyncio.wait([task], timeout=within)
        return self.outcome

    async def close(self, within: float = 1.0) -> None:
        """The process is ending: stop trying (an attempt in flight is abandoned). A delivery
        still pending stays `pending`. The session is the agent's, closed after this."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(within):
                    await task

    # --- the attempts --------------------------------------------------------------------------
    async def _run(self, url: str, body: dict[str, Any], key: str) -> DeliveryOutcome:
        try:
            return await self._deliver(url, body, key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # RetryLoop never raises; if something still did, the result is lost, not the agent.
            self._failed(f"unexpected {type(exc).__name__}: {exc}", 0)
            return DeliveryOutcome.FAILED

    async def _deliver(self, url: str, body: dict[str, Any], key: str) -> DeliveryOutcome:
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        target = URL(url)
        loop = RetryLoop(
            self._budget,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
            on_unexpected=self._log_unexpected,
        )

        async def attempt(number: int) -> _Answer:
            return await self._attempt(target, data, headers)

        def decide(answer: _Answer) -> Retry | None:
            if answer.status is not None and not retryable(answer.status):
                return None
            return Retry(answer.retry_after)

        def report(seen: Any) -> None:
            answer = seen.result or _Answer(None, self._clean(repr(seen.error)), None)
            self.progress.attempts = seen.number
            self.progress.last_status = answer.status
            self.progress.last_error = answer.error
            if seen.retry_in is not None:
                log.warning(
                    "match result attempt %d: %s; retrying in %.2fs",
                    seen.number,
                    answer.error or f"HTTP {answer.status}",
                    seen.retry_in,
                )
            self._notify()

        ending = await loop.run(attempt, decide, report)
        last = ending.last.result
        status = last.status if last is not None else None
        if not ending.budget_spent and status is not None and 200 <= status < 300:
            self.progress.outcome = DeliveryOutcome.DELIVERED
            self.progress.last_error = None
            log.info(
                "match result delivered to %s (HTTP %s after %d attempt%s)",
                redact_url(url),
                status,
                ending.attempts,
                "" if ending.attempts == 1 else "s",
            )
            self._notify()
            return DeliveryOutcome.DELIVERED
        error = self.progress.last_error or (f"HTTP {status}" if status else "no answer")
        if ending.budget_spent:
            error = f"retry budget of {self._budget:g}s spent; last error: {error}"
        self._failed(error, ending.attempts)
        return DeliveryOutcome.FAILED

    def _failed(self, error: str, attempts: int) -> None:
        self.progress.outcome = DeliveryOutcome.FAILED
        self.progress.last_error = self._clean(error)
        log.error(
            "match result not delivered to %s after %d attempt%s: %s (the stop record keeps it)",
            redact_url(self._url),
            attempts,
            "" if attempts == 1 else "s",
            self.progress.last_error,
        )
        self._notify()

    async def _attempt(self, url: URL, data: bytes, headers: dict[str, str]) -> _Answer:
        """One POST. Never raises except for cancellation."""
        try:
            async with asyncio.timeout(self._attempt_timeout):
                async with self._http.open().post(
                    url, data=data, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    if 200 <= status < 300:
                        # Delivered: the body (slow, huge, odd) is not our business.
                        return _Answer(status, None, None)
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    await self._drain(response)
                    return _Answer(status, f"HTTP {status}", retry_after)
        except TimeoutError:
            return _Answer(None, f"no answer within {self._attempt_timeout:g}s", None)
        except aiohttp.ClientError as exc:
            return _Answer(None, self._clean(f"{type(exc).__name__}: {exc}"), None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # SPEC §11: this attempt failed; the next one may not
            self._log_unexpected("making a match result attempt", exc)
            return _Answer(None, self._clean(f"unexpected {type(exc).__name__}: {exc}"), None)

    async def _drain(self, response: aiohttp.ClientResponse) -> None:
        """Read at most BODY_LIMIT bytes of an error answer, within half the attempt's time,
        and ignore them: the status decided already; a body that trickles or breaks off only
        ends the reading."""
        size = 0
        with contextlib.suppress(TimeoutError, aiohttp.ClientError, ValueError, OSError):
            async with asyncio.timeout(min(1.0, self._attempt_timeout / 2)):
                while size < BODY_LIMIT:
                    chunk = await response.content.read(BODY_LIMIT - size)
                    if not chunk:
                        return
                    size += len(chunk)

    def _clean(self, text: str) -> str:
        """Redact the whole text first, then shorten it (a cut token would no longer match)."""
        return truncate(" ".join(redact(text, self._secrets).split()), ERROR_TEXT_CHARS)

    def _log_unexpected(self, what: str, exc: BaseException) -> None:
        """Log the first unexpected failure (SPEC §11: logged once); later ones show only in the
        attempt warnings and the delivery's last error."""
        if self._unexpected_logged:
            return
        self._unexpected_logged = True
        log.error(
            "unexpected error while %s (treated as a failed attempt): %s",
            what,
            self._clean(repr(exc)),
        )

    def _notify(self) -> None:
        try:
            self._on_progress()
        except Exception as exc:  # the delivery matters more than its progress report
            self._log_unexpected("reporting match result progress", exc)


def _url_secrets(url: str | None) -> list[str]:
    """The parts of a URL where credentials hide: the userinfo and the query."""
    if not url:
        return []
    try:
        parsed = URL(url)
    except ValueError:
        return []
    parts = [parsed.raw_user, parsed.raw_password, parsed.user, parsed.password]
    if parsed.raw_query_string:
        parts += [parsed.raw_query_string, parsed.query_string]
        parts += [value for value in parsed.query.values()]
    # Very short parts (`?a=1`) would redact half of every log line; a credential is not that.
    return [part for part in parts if part and len(part) >= 4]
