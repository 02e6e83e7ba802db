"""What the user sees: the timeline printer and the one-line descriptions of what happened."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TextIO


class Timeline:
    """Prints the demo's events as they happen, stamped relative to the start.

    Bots report from their own threads, so writes are serialised by a lock.
    """

    def __init__(
        self, out: TextIO, *, quiet: bool = False, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._out = out
        self._quiet = quiet
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def event(self, source: str, message: str) -> None:
        self.line(f"{self.elapsed():6.2f}s  {source:<8}  {message}")

    def line(self, text: str) -> None:
        if self._quiet:
            return
        with self._lock:
            print(text, file=self._out, flush=True)


def describe_sidecar(status: dict[str, Any]) -> str:
    """One timeline line for a sidecar status as its event stream sends it."""
    state = str(status.get("state"))
    stop = status.get("stop") or {}
    if state == "ready":
        source = "POST /v1/ready" if status.get("ready_source") == "api" else "its game port"
        return f"ready: the game said so through {source}"
    if state == "active":
        return "active: the match started"
    if state == "draining":
        grace = status.get("drain_deadline_s")
        after = f", self-stop in {grace:g}s" if isinstance(grace, int | float) else ""
        reason, detail = status.get("stop_reason"), status.get("stop_detail")
        return f"draining: stop reason {reason} ({detail}){after}"
    if state == "stopping":
        return "stopping: DELETE $ARBITRIUM_DELETE_URL?container_log_storage=true"
    if state == "stopped":
        attempts = stop.get("attempts")
        retried = (
            f" after {attempts} attempts" if isinstance(attempts, int) and attempts > 1 else ""
        )
        return f"stopped: the platform accepted the self-stop{retried}"
    if state == "failed":
        return f"failed: the self-stop failed ({stop.get('last_error')})"
    if state == "terminating":
        return "terminating: SIGTERM from the platform, forwarded to the game"
    return state


def describe_result(record: dict[str, Any]) -> str:
    """The stop record's reason and match result, in one line."""
    result = record.get("match_result") or {}
    scores = result.get("scores") if isinstance(result, dict) else None
    parts = [f"stop reason {record.get('reason')}"]
    if isinstance(result, dict) and result:
        winner = result.get("winner")
        who = f"winner {winner}" if winner else "no single winner"
        parts.append(f"match over ({result.get('reason')}), {who}")
    if isinstance(scores, dict) and scores:
        parts.append("scores " + ", ".join(f"{player} {score}" for player, score in scores.items()))
    match = record.get("match")
    if isinstance(match, dict):
        missing = ", ".join(str(ticket) for ticket in match.get("missing") or []) or "none"
        parts.append(
            f"tickets arrived {match.get('arrived')} of {match.get('expected')} "
            f"(quorum {match.get('quorum')}), missing {missing}"
        )
    parts.append(f"players peak {record.get('players_peak')}, uptime {record.get('uptime_s')}s")
    return "; ".join(parts)
