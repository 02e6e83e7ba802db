"""The request log: every platform API call that reached the emulator, as sent, with its answer.

Each entry also says what the emulator did to the call: the `Retry-After` it answered and the
injected fault (if any) that answered or delayed it, so a test can tell a platform fault from a
real answer and check that a client honoured the wait it was given.

Tokens are redacted (`authorization: token <redacted>`, a raw delete or context token as
`<redacted>`) unless the emulator runs with `show_tokens`, so a CI job may print the log; each
entry's `authorized` says whether the call passed the platform's token check (null for calls
no route answered), and `rate_limited` whether a rate limit answered it 429.

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
REDACTED = "<redacted>"
# Set by the auth middleware on every call a named route answers: did it pass the token check?
AUTHORIZED_KEY = web.RequestKey("emulator_authorized", bool)
# Set by the rate-limit middleware on a call it answered 429.
RATE_LIMITED_KEY = web.RequestKey("emulator_rate_limited", bool)


def redacted_headers(request: web.BaseRequest) -> dict[str, str]:
    """The request's headers with the token of `authorization` replaced (its scheme kept)."""
    headers = dict(request.headers)
    for name, value in headers.items():
        if name.lower() == "authorization" and value:
            scheme, sep, _ = value.partition(" ")
            keep_scheme = sep and scheme.lower() == "token"
            headers[name] = f"{scheme} {REDACTED}" if keep_scheme else REDACTED
    return headers


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
        *,
        show_tokens: bool = False,
    ) -> None:
        if len(self._entries) == self._entries.maxlen:
            self.dropped += 1
        self._entries.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers) if show_tokens else redacted_headers(request),
                "authorized": request.get(AUTHORIZED_KEY),
                "rate_limited": request.get(RATE_LIMITED_KEY, False),
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
