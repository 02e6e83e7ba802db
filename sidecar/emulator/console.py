"""The emulator's console: one line per deployment event, and (`--follow`) its output live.

Events: created, each status, READY or ERROR with why, a stop accepted (who asked, and its
`container_log_storage` choice), a restart (with the exit code that caused it), terminated (why,
and whether the logs were kept). Each line carries the full request id and is flushed on its
own, so a CI log shows the story as it happens. `text` is for people:

    2026-12-07T17:40:01.123Z 42eb6cd4047c status Status.READY: ports open: gameport UDP 7777

`json` is one object per line (`time`, `request_id`, `event`, `message`, and the event's
fields). No token ever appears: every line (and every followed output line) has the
deployment's delete and context tokens, its `SIDECAR_API_TOKEN` and the emulator's
`--api-token` redacted, and text
lines escape control characters, so a game's output cannot forge a line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TextIO

from sidecar.redaction import all_forms, redact_forms


class Deployment(Protocol):
    """What the console reads of a deployment (the store's `Deployment` has it). A protocol, not
    an import: options.py imports this module, and the store imports options."""

    @property
    def request_id(self) -> str: ...
    @property
    def delete_token(self) -> str: ...
    @property
    def context_token(self) -> str: ...
    @property
    def env(self) -> Mapping[str, str]: ...


LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def escape(text: str) -> str:
    """Control characters as `\\xNN` (a tab too): one event is always one line."""
    return text.translate(_CONTROL)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Console:
    def __init__(
        self,
        log_format: LogFormat = "text",
        *,
        follow: bool = False,
        stream: TextIO | None = None,
        secrets: Iterable[str | None] = (),
        clock: Callable[[], str] = _now,
    ) -> None:
        self.log_format = log_format
        self.follow = follow
        self._stream = stream
        self._secrets = [secret for secret in secrets if secret]
        self._clock = clock

    def _forms(self, deployment: Deployment) -> list[str]:
        # The tokens the deployment holds; its sidecar's own too, should its game print it.
        own = [deployment.delete_token, deployment.context_token]
        return all_forms([*self._secrets, *own, deployment.env.get("SIDECAR_API_TOKEN", "")])

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout never stops a deployment

    def notice(self, event: str, message: str, **fields: Any) -> None:
        """A line about the emulator itself (start-up): as given in text, an object in json."""
        if self.log_format == "json":
            record = {"time": self._clock(), "event": event, "message": message, **fields}
            self._write(json.dumps(record, ensure_ascii=False))
        else:
            self._write(escape(message))

    def event(self, deployment: Deployment, event: str, message: str, **fields: Any) -> None:
        forms = self._forms(deployment)
        message = redact_forms(message, forms)
        if self.log_format == "json":
            record = {
                "time": self._clock(),
                "request_id": deployment.request_id,
                "event": event,
                "message": message,
                **{
                    key: redact_forms(value, forms) if isinstance(value, str) else value
                    for key, value in fields.items()
                },
            }
            self._write(json.dumps(record, ensure_ascii=False))
        else:
            self._write(f"{self._clock()} {deployment.request_id} {event}: {escape(message)}")

    def output(self, deployment: Deployment, chunk: bytes) -> None:
        """`--follow`: the deployment's output, line by line, prefixed by its request id."""
        if not self.follow:
            return
        forms = self._forms(deployment)
        text = chunk.decode("utf-8", errors="replace")
        for line in text.splitlines():
            line = redact_forms(line, forms)
            if self.log_format == "json":
                record = {
                    "time": self._clock(),
                    "request_id": deployment.request_id,
                    "event": "output",
                    "line": line,
                }
                self._write(json.dumps(record, ensure_ascii=False))
            else:
                self._write(f"{deployment.request_id} | {escape(line)}")
