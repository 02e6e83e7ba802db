"""The request log: every platform API call that reached the emulator, as sent, with its answer.

Each entry also says what the emulator did to the call: the `Retry-After` it answered and the
injected fault (if any) that answered or delayed it, so a test can tell a platform fault from a
real answer and check that a client honoured the wait it was given.

Calls to the control API (`/_emulator/...`) are not logged, so reading the log does not change
it. The log is bounded (oldest entries drop first, counted in `dropped`) so a long-running
emulator stays small.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from aiohttp import web

from sidecar.emulator.faults import FaultSpec
from sidecar.emulator.store import format_time, utcnow

_MAX_ENTRIES = 10_000


class RequestLog:
    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self.dropped = 0

    def record(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        started: float,
        fault: FaultSpec | None = None,
    ) -> None:
        if len(self._entries) == self._entries.maxlen:
            self.dropped += 1
        self._entries.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "status": response.status,
                "retry_after": response.headers.get("Retry-After"),
                "fault": None if fault is None else fault.to_json(),
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
        self.dropped = 0
        return cleared
