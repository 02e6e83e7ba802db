"""The request log: every platform API call that reached the emulator, as sent, with its answer.

Calls to the control API (`/_emulator/...`) are not logged, so reading the log does not change
it. The log is bounded (oldest entries drop first) so a long-running emulator stays small.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from aiohttp import web

from sidecar.emulator.store import format_time, utcnow

_MAX_ENTRIES = 10_000


class RequestLog:
    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=_MAX_ENTRIES)

    def record(self, request: web.BaseRequest, status: int, started: float) -> None:
        self._entries.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "status": status,
                "time": format_time(utcnow()),
                "timestamp": time.time(),
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            }
        )

    def entries(
        self, path_contains: str | None = None, method: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self._entries
            if (path_contains is None or path_contains in entry["path"])
            and (method is None or entry["method"] == method.upper())
        ]

    def clear(self) -> int:
        cleared = len(self._entries)
        self._entries.clear()
        return cleared
