"""The sidecar's own log lines on stderr (text or JSON). Lifecycle records go to stdout through
:mod:`sidecar.output`.

Every line passes through a redaction filter holding the secrets (delete token, API token):
whatever a library or an exception message contains, a secret never reaches the output.

Why this shape
--------------
* Log calls never write: they put the formatted line on a bounded queue that one daemon thread
  writes to fd 2. A stderr nobody reads (a stalled log collector, a full pipe) would otherwise
  block the event loop on the first log call, and with it the self-stop and signal handling
  (SPEC §11). When the queue is full, lines are dropped and counted; the count is written as
  soon as stderr takes output again. A broken stderr is given up on silently (there is nowhere
  left to say it).
* Log lines keep their emission order with the records on stdout (:mod:`sidecar.write_order`):
  a line waits for the records emitted before it, unless stdout is stalled or broken. Lines
  ready together go out in one write.
* Text lines escape control characters in the values interpolated into a message: a shutdown
  `reason` or a player id with a newline in it cannot forge a log line (SPEC §11). JSON lines are
  escaped by the encoder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import threading
import time
from collections import deque
from typing import Any

from sidecar.redaction import all_forms, redact_forms
from sidecar.write_order import WriteOrder, pipe_unread, process_order

# Lines waiting for stderr; past this, a stalled stderr costs dropped lines, never a blocked loop.
MAX_QUEUED_LINES = 10_000
# Lines that are ready together are written together, up to this many bytes a write: a write
# to a pipe up to PIPE_BUF is atomic, so the game's stderr, relayed to the same pipe by another
# thread, cannot land inside one of our lines (a longer line is written alone, as before).
MAX_WRITE_BYTES = select.PIPE_BUF


class RedactingFilter(logging.Filter):
    """Replaces every form of the secrets (raw and URL-encoded) in the fully formatted message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]
        self._forms = all_forms(self.secrets)  # once: this runs for every log line

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._forms:
            return True
        message = record.getMessage()
        redacted = redact_forms(message, self._forms)
        if record.exc_info:
            # Tracebacks are formatted later by the handler; render and redact them now.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
            redacted = f"{redacted}\n{redact_forms(text, self._forms)}"
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def escape_control(text: str) -> str:
    """`text` with every control character written as an escape (\\n, \\t, \\x1b, ...)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class _Escaped:
    """An interpolated value whose str() and repr() have their control characters escaped."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return escape_control(str(self.value))

    def __repr__(self) -> str:
        return escape_control(repr(self.value))


class EscapingFilter(logging.Filter):
    """Text format only: wraps every interpolated value that holds a control character.

    The message template is ours and is left as it is; tracebacks (multi-line on purpose) are
    kept too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_escape_arg(arg) for arg in args)
        elif isinstance(args, dict):
            record.args = {key: _escape_arg(value) for key, value in args.items()}
        return True


def _escape_arg(arg: object) -> object:
    if isinstance(arg, (int, float)):
        return arg
    try:
        text = arg if isinstance(arg, str) else str(arg)
    except Exception:  # a value whose str() fails is logging's problem, reported as usual
        return arg
    return _Escaped(arg) if _CONTROL.search(text) else arg


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + (
            f".{int(record.msecs):03d}Z"
        )


class StderrWriter:
    """The one thread that writes log lines to fd 2, fed by a bounded buffer.

    When the buffer is full the *oldest* line goes: the newest lines are the ones that explain
    why the deployment stopped. `order`, when given, is shared with the stdout records' writer
    (see sidecar.write_order).
    """

    def __init__(
        self, fd: int = 2, max_queued: int = MAX_QUEUED_LINES, order: WriteOrder | None = None
    ) -> None:
        self.fd = fd
        self._lines: deque[tuple[int, bytes]] = deque()  # (ticket, line), oldest first
        self._max_queued = max_queued
        self._changed = threading.Condition()  # guards every field below
        self._dropped = 0
        self._writing = False
        self._broken = False
        # When the write under way started (None: none is); read without the lock.
        self._writing_since: float | None = None
        self._lane = (order or WriteOrder()).lane(
            self.blocked_for, lambda: self._broken, pipe_unread(fd)
        )
        self._thread = threading.Thread(target=self._run, name="stderr-log", daemon=True)
        self._thread.start()

    def blocked_for(self) -> float:
        """How long the write under way has been waiting for stderr (0 when none is)."""
        since = self._writing_since
        return 0.0 if since is None else time.monotonic() - since

    def put(self, line: bytes) -> None:
        """Queue one line; never blocks on stderr, never raises."""
        with self._changed:
            if self._broken:
                return
            if len(self._lines) >= self._max_queued:
                dropped, _ = self._lines.popleft()
                self._lane.done(dropped, written=False)
                self._dropped += 1
            # Under the queue's lock, so that tickets follow queue order.
            self._lines.append((self._lane.ticket(), line))
            self._changed.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the queued lines to be written; True if they all were."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (self._lines or self._writing) and not self._broken:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._lines:
                    self._changed.wait()
                first, _ = self._lines[0]
                self._writing = True
            # Not under the queue's lock: put() never waits for this.
            self._lane.wait_turn(first)
            with self._changed:
                tickets, data = self._take_ready(first)
                dropped, self._dropped = self._dropped, 0
            if dropped:
                notice = f"(stderr was not being read: {dropped} log lines were dropped)\n"
                data = notice.encode() + data
            broken = bool(data) and not self._write(data)
            for ticket in tickets:
                self._lane.done(ticket, written=not broken)
            with self._changed:
                self._writing = False
                if broken:
                    self._broken = True
                    for ticket, _ in self._lines:
                        self._lane.done(ticket, written=False)
                    self._lines.clear()
                self._changed.notify_all()

    def _take_ready(self, first: int) -> tuple[list[int], bytes]:
        """(Lock held.) Line `first`, whose wait is over, and the lines right behind it whose
        turn has come too (no record emitted between them), up to MAX_WRITE_BYTES; nothing when
        `first` was dropped meanwhile (the next line has not waited yet)."""
        tickets: list[int] = []
        parts: list[bytes] = []
        size = 0
        while self._lines:
            ticket, line = self._lines[0]
            if not parts:
                if ticket != first:
                    break
            elif size + len(line) > MAX_WRITE_BYTES or not self._lane.ready(ticket):
                break
            self._lines.popleft()
            tickets.append(ticket)
            parts.append(line)
            size += len(line)
        return tickets, b"".join(parts)

    def _write(self, data: bytes) -> bool:
        self._writing_since = time.monotonic()
        try:
            return self._write_all(data)
        finally:
            self._writing_since = None

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[os.write(self.fd, view) :]
                except BlockingIOError:
                    # A shared open file someone set O_NONBLOCK: wait for room, keep the flag.
                    poller = select.poll()
                    poller.register(self.fd, select.POLLOUT)
                    poller.poll()
        except OSError:
            return False  # stderr is gone; there is nowhere left to say so
        return True


class QueuedStderrHandler(logging.Handler):
    """Formats on the caller's thread (redacted, escaped) and hands the line to StderrWriter."""

    def __init__(self, writer: StderrWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self.writer.put(line.encode("utf-8", "backslashreplace"))


_writer: StderrWriter | None = None


def configure_logging(level: str, fmt: str, secrets: list[str]) -> None:
    """Send every log record (ours and libraries') to stderr, redacted, without ever blocking."""
    global _writer
    if _writer is None:
        _writer = StderrWriter(order=process_order())
    # A failing handler prints its own traceback to stderr; with stderr broken that is noise at
    # best, and it must never raise into the caller.
    logging.raiseExceptions = False
    handler = QueuedStderrHandler(_writer)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if fmt != "json":
        handler.addFilter(EscapingFilter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request: far too chatty for a game container.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def write_stderr_line(line: bytes) -> None:
    """A ready-made line (a record stdout would not take) on stderr, in order with the log
    lines; never blocks. Without configure_logging (an embedder), it goes through logging."""
    if _writer is not None:
        _writer.put(line if line.endswith(b"\n") else line + b"\n")
    else:
        logging.getLogger("sidecar.output").warning("%s", line.decode(errors="replace").rstrip())


def flush_logs(timeout: float) -> bool:
    """At exit: wait up to `timeout` s for the queued log lines to reach stderr."""
    return _writer.flush(timeout) if _writer is not None else True
