"""The sidecar's own output: log lines on stderr (text or JSON) and lifecycle records on stdout.

Records (`{"event": "sidecar.stop", ...}`) go to stdout because that is what ends up in the
stored container logs next to the game's own output. They are written with one `os.write` on
fd 1 so they can never interleave with the relay's writes of the game's output.

Every line passes through a redaction filter holding the secrets (delete token, API token):
whatever a library or an exception message contains, a secret never reaches the output.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

LOGGER_NAME = "sidecar"


class RedactingFilter(logging.Filter):
    """Replaces secret values in the fully formatted message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "<redacted>")
        if record.exc_info:
            # Tracebacks are formatted later by the handler; render and redact them now.
            text = logging.Formatter().formatException(record.exc_info)
            for secret in self.secrets:
                text = text.replace(secret, "<redacted>")
            record.exc_info = None
            record.exc_text = None
            redacted = f"{redacted}\n{text}"
        if redacted is not message:
            record.msg = redacted
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + (
            f".{int(record.msecs):03d}Z"
        )


def configure_logging(level: str, fmt: str, secrets: list[str]) -> None:
    """Send every log record (ours and libraries') to stderr, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: far too chatty for a game container.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# How long a record may wait for room on a stalled stdout: the self-stop waits for the record,
# and SPEC §11 allows a broken or stalled stdout to delay it by at most 1 s.
RECORD_WRITE_DEADLINE = 0.75
# A pipe that polls writable takes this much without blocking (Linux: one page).
_WRITE_STEP = 4096

_record_warned = False


def write_record(record: dict[str, Any], fd: int = 1) -> bool:
    """One JSON line on stdout, never blocking for more than RECORD_WRITE_DEADLINE and never
    raising: a closed, broken or stalled stdout must not cost the self-stop (SPEC §11).

    Returns whether the whole record was written. Written in steps that a writable pipe takes
    without blocking, so a reader that stopped reading cannot hold the event loop.
    """
    import select

    data = (json.dumps(record, default=str, separators=(", ", ": ")) + "\n").encode()
    view = memoryview(data)
    deadline = time.monotonic() + RECORD_WRITE_DEADLINE
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"stdout took no output for {RECORD_WRITE_DEADLINE:g}s")
            events = poller.poll(left * 1000)
            if not events:
                continue
            if any(
                mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, mask in events
            ):
                raise BrokenPipeError("stdout is closed or broken")
            try:
                written = os.write(fd, view[:_WRITE_STEP])
            except (InterruptedError, BlockingIOError):
                continue
            view = view[written:]
    except (OSError, ValueError, TimeoutError) as exc:
        _warn_record_lost(record, exc)
        return False
    return True


def _warn_record_lost(record: dict[str, Any], exc: BaseException) -> None:
    """Say once, on stderr, that records cannot reach stdout; the stop goes on regardless."""
    global _record_warned
    if _record_warned:
        return
    _record_warned = True
    logging.getLogger("sidecar").warning(
        "cannot write the %s record to stdout (%s); records are skipped from now on when "
        "stdout does not take them",
        record.get("event", "lifecycle"),
        exc,
    )
