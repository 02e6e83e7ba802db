"""The stop sequence, from the released decision to what the agent does next (SPEC §6, §11).

    record    the `sidecar.stop` record on stdout, after every byte of the game's output
    refusal   a `sidecar.log_storage_refused` record if the platform refuses the log choice
    dry-run   no delete URL or token (or SIDECAR_DRY_RUN): log the DELETE, count it accepted
    DELETE    edgegap.SelfStopClient and its retry policy; every attempt lands in StopProgress
    outcome   `stopped` or `failed` in the lifecycle, the outcome in StopProgress
    fallback  `after_stop`: finish now, end the game first, or wait for the platform's SIGTERM

The retry policy itself (what is retried, backoff, Retry-After, the budget) is edgegap.py's; this
module decides nothing about HTTP, and opens no session: the DELETE goes out on the agent's one
outbound session (sidecar.outbound), opened at start-up. Its log lines keep the `sidecar` logger
they always had.

The stop record goes out before the first DELETE, so it cannot know that the platform will refuse
its `log_storage` (SPEC §11 Round 2). That comes as a record of its own, written the moment the
400 arrives, so it is in the logs before the next DELETE (the one that may be accepted):
`{"event": "sidecar.log_storage_refused", "reason", "request_id", "log_storage",
"log_storage_refused": true, "attempt", "status", "error"}`. `reason` and `request_id` tie it to
the stop record; merged over it (by `request_id`), the stop record says `log_storage_refused:
true`. A second `sidecar.stop` line, or any event name starting with `sidecar.stop`, would break
readers that take the one (or the last) line naming it, as examples/ci/emulator-ci.sh does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sidecar.config import Settings, StopFailurePolicy
from sidecar.edgegap import AttemptResult, SelfStopClient, StopResult
from sidecar.exit_codes import Ending
from sidecar.game import GameExit
from sidecar.lifecycle import Lifecycle, StopDecision
from sidecar.match import stop_record_fields
from sidecar.outbound import OutboundSession
from sidecar.outcomes import DeliveryOutcome, StopOutcome
from sidecar.output import submit_record, write_record
from sidecar.redaction import redact, redact_url
from sidecar.result import ResultDelivery, idempotency_key, result_body
from sidecar.status import StopProgress

log = logging.getLogger("sidecar")


def after_stop(ok: bool, policy: StopFailurePolicy, *, game_gone: bool) -> Ending | None:
    """What the agent does once the stop is over: finish with this ending, or None to keep
    serving until the platform's SIGTERM. With STOP_FAILED and the game still running, the
    agent ends the game first (when it is ours)."""
    if ok:
        return Ending.STOPPED if game_gone else None
    return Ending.STOP_FAILED if policy is StopFailurePolicy.EXIT else None


class StopSequence:
    """Runs the one self-stop of a sidecar; `on_progress` hears every change to its progress."""

    def __init__(
        self,
        settings: Settings,
        lifecycle: Lifecycle,
        progress: StopProgress,
        *,
        http: OutboundSession,
        request_id: str | None,
        on_progress: Callable[[], None],
        secrets: Sequence[str] = (),
        result: ResultDelivery | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._lifecycle = lifecycle
        self.progress = progress
        self._request_id = request_id
        self._on_progress = on_progress
        self._secrets = list(secrets)
        self._http = http
        self._decision: StopDecision | None = None
        # SPEC §12: the match result's delivery, started at the decision (start_result()).
        self.result = result
        self._wall_clock = wall_clock

    def log_storage_for(self, decision: StopDecision) -> str | None:
        """The `container_log_storage` of this stop: the game's choice, else the error or the
        normal setting."""
        if decision.log_storage_override is not None:
            return decision.log_storage_override
        if decision.abnormal:
            return self._settings.effective_error_log_storage
        return self._settings.log_storage

    def start_result(self, decision: StopDecision) -> None:
        """The stop is decided: start delivering the match result (SPEC §12), during the grace.
        A no-op without SIDECAR_RESULT_URL, and after the first call."""
        if self.result is None or not self.result.enabled:
            return
        lc = self._lifecycle
        # The lifecycle's times are monotonic; the receiver wants wall-clock ones.
        wall_offset = self._wall_clock() - lc.now
        match_id = lc.match_id  # MM_MATCH_ID, else the one given to match start (SPEC §12)
        body = result_body(
            request_id=self._request_id,
            match_id=match_id,
            reason=decision.reason.value,
            detail=decision.detail,
            result=decision.match_result,
            players_peak=lc.players_peak,
            arrived=lc.arrived_count,
            started_at=lc.started_at + wall_offset,
            ended_at=decision.decided_at + wall_offset,
        )
        self.result.start(body, idempotency_key(self._request_id, match_id))

    async def run(self, decision: StopDecision, game_exit: GameExit | None) -> bool:
        """Record, then stop (or only log it in dry-run); True when the platform took it."""
        settings = self._settings
        self._decision = decision
        if self.result is not None and self.result.enabled:
            self.start_result(decision)  # already started at the decision: a no-op
            # SPEC §12: the self-stop waits for the delivery at most this long past the grace,
            # then goes ahead; the delivery goes on without it.
            await self.result.wait(settings.result_wait)
        storage = self.log_storage_for(decision)
        self.progress.log_storage = storage
        # In run mode a game-exit decision is only made after wait() drained the relay, so this
        # record comes after every byte of the game's output. A stdout that is broken or stalled
        # costs at most output.RECORD_TIMEOUT here; the record then goes to stderr (SPEC §11).
        await write_record(self.record(decision, storage, game_exit))
        if settings.effective_dry_run:
            log.warning(
                "dry-run: would send DELETE %s%s (reason %s)",
                redact_url(settings.delete_url) or "<ARBITRIUM_DELETE_URL unset>",
                f"?container_log_storage={storage}" if storage is not None else "",
                decision.reason,
            )
            self.progress.outcome = StopOutcome.DRY_RUN
            self._lifecycle.stop_accepted()
            return True
        assert settings.delete_url is not None
        assert settings.delete_token is not None
        try:
            client = SelfStopClient(
                # Opened at start-up: only a sidecar already shutting down finds it closed, and
                # that, like any failure here, runs the fallback below rather than kill the task.
                self._http.open(),
                settings.delete_url,
                settings.delete_token.get_secret_value(),
                attempt_timeout=settings.stop_attempt_timeout,
                retry_budget=settings.stop_retry_budget,
            )
            result: StopResult = await client.stop(storage, self._on_attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The client treats every attempt's failure as retryable and never raises; if it
            # still did, this is a bug, and the fallback must run rather than the task die with
            # the state stuck at `stopping` (SPEC §11).
            log.error("self-stop client failed: %s", redact(repr(exc), self._secrets), exc_info=exc)
            result = StopResult(StopOutcome.FAILED, self.progress.attempts, None, repr(exc))
        self.progress.outcome = result.outcome
        plural = "" if result.attempts == 1 else "s"
        if result.ok:
            log.info(
                "self-stop %s (HTTP %s after %d attempt%s%s)",
                "accepted" if result.outcome is StopOutcome.ACCEPTED else "found it already gone",
                result.status,
                result.attempts,
                plural,
                ", without the refused container_log_storage" if result.log_storage_refused else "",
            )
            self._lifecycle.stop_accepted()
        else:
            self.progress.last_error = result.error
            log.error(
                "self-stop failed for good after %d attempt%s: %s (SIDECAR_ON_STOP_FAILURE=%s)",
                result.attempts,
                plural,
                result.error,
                settings.on_stop_failure,
            )
            self._lifecycle.stop_failed()
        return result.ok

    def _on_attempt(self, attempt: AttemptResult) -> None:
        progress = self.progress
        progress.attempts = attempt.attempt
        progress.last_status = attempt.status
        progress.last_error = attempt.error
        if attempt.log_storage_refused:
            self._log_storage_refused(attempt)
        elif attempt.retry_in is not None:
            log.warning(
                "self-stop attempt %d: %s; retrying in %.2fs",
                attempt.attempt,
                attempt.error or f"HTTP {attempt.status}",
                attempt.retry_in,
            )
        self._on_progress()

    def _log_storage_refused(self, attempt: AttemptResult) -> None:
        """The platform refused the log choice: the one warning, the status flag, the refusal
        record. Happens at most once per stop (the client drops the parameter for good)."""
        self.progress.log_storage_refused = True
        then = (
            f"retrying without it in {attempt.retry_in:.2f}s"
            if attempt.retry_in is not None
            else "no retry budget left"
        )
        log.warning(
            "self-stop attempt %d: the platform refused container_log_storage=%s (%s); %s, and "
            "every later attempt goes without it: the deployment's default log storage applies",
            attempt.attempt,
            self.progress.log_storage,
            attempt.error or f"HTTP {attempt.status}",
            then,
        )
        # Never waits (a stalled stdout must not hold the stop back); the writer thread has it
        # out long before the next attempt, at least 0.5 s away.
        submit_record(self.refusal_record(attempt))

    def refusal_record(self, attempt: AttemptResult) -> dict[str, Any]:
        """The `sidecar.log_storage_refused` record: which choice, refused by which answer."""
        decision = self._decision
        return {
            "event": "sidecar.log_storage_refused",
            "reason": decision.reason.value if decision is not None else None,
            "request_id": self._request_id,
            "log_storage": self.progress.log_storage,
            "log_storage_refused": True,
            "attempt": attempt.attempt,
            "status": attempt.status,
            "error": attempt.error,
        }

    def record(
        self, decision: StopDecision, storage: str | None, game_exit: GameExit | None
    ) -> dict[str, Any]:
        """The `sidecar.stop` record (SPEC §6)."""
        lc = self._lifecycle
        record: dict[str, Any] = {
            "event": "sidecar.stop",
            "reason": decision.reason.value,
            "detail": decision.detail,
            "match_result": decision.match_result,
            "uptime_s": round(lc.uptime(), 3),
            "players_peak": lc.players_peak,
            "log_storage": storage,
            "dry_run": self._settings.effective_dry_run,
            "request_id": self._request_id,
            "result_delivery": (
                self.result.outcome if self.result is not None else DeliveryOutcome.OFF
            ).value,
        }
        record.update(stop_record_fields(lc))  # match_id, and the match's arrivals (SPEC §12)
        if lc.later_triggers:
            record["later_triggers"] = [t.reason.value for t in lc.later_triggers]
        if game_exit is not None and decision.exit_code is not None:
            record["exit_code"] = game_exit.exit_code
            record["signal"] = game_exit.signal_name
            if game_exit.crashed:
                record["last_lines"] = list(game_exit.tail)
        return record
