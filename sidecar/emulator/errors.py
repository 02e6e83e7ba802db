"""`PlatformError`: a request the emulator refuses, answered in the platform's shape.

Its own module (no imports of ours) so the stores and the manager can raise it as freely as
the routes; `wire.error_response` renders it. Listed in `sidecar/errors.py`'s hierarchy.
"""

from __future__ import annotations

from typing import Any

from sidecar.errors import HttpError


class PlatformError(HttpError):
    """An error answer in the platform's shape: `status` with body
    `{"message": message, **extra}`, and `headers`."""

    def __init__(
        self,
        status: int,
        message: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message)
        self.extra = extra or {}
        self.headers = headers or {}
