"""The access log of the sidecar's HTTP APIs (SPEC §13): who called what, and why it was refused.

* Every call is one DEBUG line: method, path, status, duration, and the error code on a 4xx.
* A 4xx is one INFO line: method, path, status, the error code and message. Never a body, a
  header value or a token: the path is logged without its query, and the message is the
  sidecar's own (what the envelope says), cut at 200 characters.
* The INFO lines are rate-limited: at most `LIMIT` (10) per `WINDOW` (10 s) — at most about
  2 KiB a second whatever a client floods the API with. The ones over the limit still get their
  DEBUG line; the next INFO line that gets through says how many were left out.

The hot path costs one comparison and a cached level check: a 2xx at the default level (INFO)
formats nothing and reads no clock. `LocalApi._guarded` calls `AccessLog.record`; the Agones
facade can do the same around its handlers (one `AccessLog(logging.getLogger("sidecar.agones.
access"))`), the method and path being all it needs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

LIMIT = 10
WINDOW = 10.0
# Longest path or message written: a 8 KiB request line must not make an 8 KiB log line.
MAX_TEXT = 200

log = logging.getLogger("sidecar.access")


class AccessLog:
    """One API's access log: `enabled_for_all()` says whether every call is logged (DEBUG)."""

    def __init__(
        self,
        logger: logging.Logger = log,
        *,
        limit: int = LIMIT,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.limit = limit
        self.window = window
        self.clock = clock
        self._window_start = -window  # the first 4xx opens a window
        self._logged = 0
        self._suppressed = 0

    def enabled_for_all(self) -> bool:
        """True at DEBUG: then every call is logged, and worth timing."""
        return self.logger.isEnabledFor(logging.DEBUG)

    def record(
        self,
        method: str,
        path: str,
        status: int,
        seconds: float | None,
        code: str | None = None,
        message: str | None = None,
        *,
        refused: bool = False,
    ) -> None:
        """Log one answered call (`seconds` None when it was not timed). `refused` marks an
        answer that refuses the call whatever its status: the Agones facade answers a refused
        SDK call (capacity reached, unknown counter) 500 with code 2, as Agones does."""
        path = _cut(path)
        took = f" {seconds * 1000:.1f}ms" if seconds is not None else ""
        if (400 <= status < 500 or refused) and self._admit():
            left_out = self._take_suppressed()
            self.logger.info(
                "%s %s %s %s: %s%s%s",
                method,
                path,
                status,
                code or "-",
                _cut(message or ""),
                took,
                f" ({left_out} more 4xx answers not logged)" if left_out else "",
            )
        elif self.logger.isEnabledFor(logging.DEBUG):
            error = f" {code}" if code and status >= 400 else ""
            self.logger.debug("%s %s %s%s%s", method, path, status, error, took)

    def _admit(self) -> bool:
        """Whether this 4xx gets its INFO line (LIMIT per WINDOW), counting those left out."""
        now = self.clock()
        if now - self._window_start >= self.window:
            self._window_start = now
            self._logged = 0
        if self._logged < self.limit:
            self._logged += 1
            return True
        self._suppressed += 1
        return False

    def _take_suppressed(self) -> int:
        count, self._suppressed = self._suppressed, 0
        return count


def error_of(body: object) -> tuple[str | None, str | None]:
    """The code and message of an error body, for answers built without an exception (404,
    405): the local API's `{"error": {"code", "message"}}` or the Agones facade's grpc-gateway
    `{"code": N, "message"}`; (None, None) for anything else."""
    if not isinstance(body, bytes):
        return None, None
    try:
        document = json.loads(body)
        error = document.get("error", document) if isinstance(document, dict) else {}
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return None, None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
