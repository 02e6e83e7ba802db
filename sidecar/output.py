"""Our stdout: the one place where the game's relayed output and the sidecar's records meet.

Owns every write to fd 1 in run and serve mode: the stdout relay thread writes the game's chunks
through :class:`OrderedOutput`, and lifecycle records (`{"event": "sidecar.stop", ...}`) are
handed to it by the agent. Both go out under one lock, so they never interleave.

Why this shape
--------------
* Records are written by a small daemon thread, never on the event loop: our stdout may be
  broken (EPIPE), closed, or stalled (a log collector that stops reading). The agent awaits a
  record for at most :data:`RECORD_TIMEOUT` and then carries on with the self-stop whatever
  happened (SPEC §11); a record that could not be written goes to stderr instead, on a line of
  its own (one warning says why).
  Signal handlers use :func:`submit_record`, which never waits.
* The hand-off to the thread is a bounded queue, not the lock: the relay thread may hold the
  lock for as long as a write to a stalled stdout blocks, and the loop must never wait on it.
* Records keep their emission order with the log lines on stderr (:mod:`sidecar.write_order`):
  a record waits for the log lines emitted before it, unless stderr is stalled or broken, so
  the stored logs never show a record before the line that led to it. Records queued together
  with no log line between them still go out together, after one wait for the game's line end.
* A record stands on a line of its own (SPEC §11): when the game's output last ended mid-line,
  the relay writes up to and including the next newline of its next chunk, then the records,
  then the rest. If no newline comes within :data:`LINE_END_WAIT`, the writer ends the line
  itself. Only while a record waits does the relay look inside a chunk; otherwise a chunk costs
  one lock round trip on top of the copy.
* O_NONBLOCK on fd 1 is never changed: the flag lives on the open file description, which may be
  shared with other processes. A non-blocking fd that is full is waited on with poll() instead.
* If fd 1 (or 0, 2) is closed when the sidecar starts, the next file we open would take its
  number and our records would be written into it (an epoll fd, a socket).
  :func:`reserve_stdio` parks /dev/null there first; records then go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.logs import write_stderr_line

# STALLED_AFTER is shared with the stderr writer's order; re-exported for the supervisor.
from sidecar.write_order import STALLED_AFTER as STALLED_AFTER
from sidecar.write_order import Lane, WriteOrder, pipe_unread, process_order

log = logging.getLogger(__name__)

# How long the agent waits for a record before it carries on without it; includes the wait for
# the game's line to end. SPEC §11 allows the stop to be delayed by at most 1 s.
RECORD_TIMEOUT = 0.75
# How long a record waits for the game to finish the line it is in the middle of (SPEC §11).
LINE_END_WAIT = 0.25
# STALLED_AFTER (imported above): a write to our stdout that has not returned after this long
# means nobody is reading it: a record is then sent to stderr at once, and a game's exit stops
# waiting for its output (SPEC §11 allows a stalled stdout to delay the self-stop by 1 s at most).
# Records are a handful per run; more queued than this means stdout is stuck.
MAX_QUEUED_RECORDS = 64


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of `data` to `fd`, waiting for room when it is non-blocking.

    Raises OSError when the fd is gone (EPIPE, EBADF, EIO...).
    """
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            # Someone sharing our open file set O_NONBLOCK: wait for room; never clear the flag.
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll()
            continue
        view = view[written:]


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON line; ASCII-only, so no byte of it can end the line early.

    NaN and infinities are not JSON: written as strings, so a parser still reads the line.
    """
    try:
        text = json.dumps(dict(record), default=str, separators=(", ", ": "), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(dict(record)), default=str, separators=(", ", ": "))
    return (text + "\n").encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


class _Record:
    __slots__ = ("abandoned", "data", "on_done", "ticket")

    def __init__(self, data: bytes, on_done: Callable[[bool], None] | None) -> None:
        self.data = data
        self.on_done = on_done
        self.ticket: int | None = None  # its place in the emission order (None: a flush marker)
        # Set when the agent gave up waiting and logged the record to stderr instead: if it has
        # not been written by then, it is skipped rather than shown twice.
        self.abandoned = False


class OrderedOutput:
    """Ordered writes to `fd`: the game's chunks (relay thread) and our records (any thread).

    `order`, when given, is shared with the stderr log writer (see sidecar.write_order); by
    default the records only keep their order among themselves.
    """

    def __init__(
        self,
        fd: int,
        *,
        line_end_wait: float = LINE_END_WAIT,
        max_queued: int = MAX_QUEUED_RECORDS,
        unusable: OSError | None = None,
        order: WriteOrder | None = None,
    ) -> None:
        self.fd = fd
        self._line_end_wait = line_end_wait
        self._lock = threading.Lock()  # held for every write to fd
        self._line_ended = threading.Condition(self._lock)
        self._mid_line = False  # the last byte written to fd was not a newline (under the lock)
        self._waiting: deque[_Record] = deque()  # taken by the writer, not yet written (lock)
        # Records handed to the writer thread, oldest first; a deque rather than a Queue so
        # that the writer can look at the next record before taking it.
        self._queued: deque[_Record] = deque()
        self._queue_changed = threading.Condition()  # guards _queued; never held on I/O
        self._max_queued = max_queued
        # Once fd fails, records are no longer tried (a broken pipe does not heal; a closed fd's
        # number may belong to another file by now).
        self._error = unusable
        self._thread: threading.Thread | None = None
        # When the write under way started (None: no write under way); read without the lock.
        self._writing_since: float | None = None
        self._start_lock = threading.Lock()  # only guards starting the thread; never held on I/O
        self._lane: Lane = (order or WriteOrder()).lane(
            self.blocked_for, lambda: self._error is not None, pipe_unread(fd)
        )

    def blocked_for(self) -> float:
        """How long the write under way has been waiting for stdout (0 when none is)."""
        since = self._writing_since
        return 0.0 if since is None else time.monotonic() - since

    def _write(self, data: bytes | memoryview) -> None:
        """Every write to fd (with the lock held), timed so a stall can be seen from outside."""
        self._writing_since = time.monotonic()
        try:
            write_all(self.fd, data)
        finally:
            self._writing_since = None

    # --- the game's side: the relay thread -----------------------------------------------------
    def write_game(self, chunk: bytes) -> None:
        """Write a (non-empty) chunk of the game's output; raises OSError when fd is gone."""
        with self._lock:
            if self._waiting:
                self._write_around_records(chunk)
                return
            self._write(chunk)
            self._mid_line = not chunk.endswith(b"\n")

    def _write_around_records(self, chunk: bytes) -> None:
        if self._mid_line:
            end = chunk.find(b"\n") + 1
            if not end:
                # The line goes on; the writer ends it if it goes on for too long.
                self._write(chunk)
                return
            self._write(memoryview(chunk)[:end])
            self._mid_line = False
        else:
            end = 0
        self._flush_waiting()
        self._line_ended.notify_all()
        if end < len(chunk):
            self._write(memoryview(chunk)[end:])
            self._mid_line = not chunk.endswith(b"\n")

    # --- records -------------------------------------------------------------------------------
    async def write_record(self, record: Mapping[str, Any], wait: float = RECORD_TIMEOUT) -> bool:
        """Write `record` as one line; True once written. Never raises, waits at most `wait` s.

        When it cannot be written in time the record goes to stderr instead and is skipped here.
        """
        loop = asyncio.get_running_loop()
        written: asyncio.Future[bool] = loop.create_future()

        def on_done(ok: bool) -> None:
            # The loop may be closed by the time a stuck write finishes: nobody left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_result, written, ok)

        item = self._submit(record, on_done)
        if item is None:
            return False
        if self.blocked_for() > STALLED_AFTER:
            # Nobody is reading stdout: waiting would only delay the stop.
            self._divert(item, f"stdout has not taken output for {self.blocked_for():.2g}s")
            return False
        try:
            async with asyncio.timeout(wait):
                return await written
        except TimeoutError:
            self._divert(item, f"stdout did not take a record within {wait:.2g}s (stalled?)")
            return False

    def submit_record(self, record: Mapping[str, Any]) -> None:
        """Queue `record` without waiting (for signal handlers). Never raises."""
        self._submit(record, None)

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` for the records queued so far; True if they are all out.

        At exit: records still queued when the time is up go to stderr, so a stalled stdout
        costs the stored logs no record.
        """
        if self._thread is None:
            return True
        done = threading.Event()
        with self._queue_changed:
            # A marker, not a record: it takes no ticket and no room (exit must not be refused).
            self._queued.append(_Record(b"", lambda ok: done.set()))
            self._queue_changed.notify_all()
        if done.wait(timeout):
            return True
        with self._queue_changed:
            left = list(self._queued)
            self._queued.clear()
        for item in left:
            self._divert(item, "stdout did not take the last records before exit")
        return False

    def _submit(
        self, record: Mapping[str, Any], on_done: Callable[[bool], None] | None
    ) -> _Record | None:
        try:
            item = _Record(encode_record(record), on_done)
        except Exception as exc:  # a record must never take its caller down
            log.error("cannot encode the %r record: %r", record.get("event"), exc)
            return None
        try:
            self._ensure_thread()
        except RuntimeError as exc:  # no thread can be started (interpreter shutting down)
            _to_stderr(item, repr(exc))
            return None
        with self._queue_changed:
            if len(self._queued) < self._max_queued:
                # Under the queue's lock, so that tickets follow queue order.
                item.ticket = self._lane.ticket()
                self._queued.append(item)
                self._queue_changed.notify_all()
                return item
        _to_stderr(item, "too many records queued")
        return None

    def _divert(self, item: _Record, reason: str) -> None:
        """Give up on writing `item` here: it goes to stderr, and its place in the order is
        handed back so that no log line waits for it."""
        item.abandoned = True
        if item.ticket is not None:
            self._lane.done(item.ticket, written=False)
        _to_stderr(item, reason)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="stdout-records", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                continue
            with self._lock:
                self._waiting.extend(batch)
                deadline = time.monotonic() + self._line_end_wait
                # The relay flushes the records itself as soon as the game's line ends.
                while self._waiting and self._mid_line and self._error is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._line_ended.wait(left)
                if not self._waiting:
                    continue
                if self._mid_line and self._error is None:
                    # The game did not end its line in time: end it for it, so that the record
                    # stands on a line of its own.
                    try:
                        self._write(b"\n")
                        self._mid_line = False
                    except OSError as exc:
                        self._error = exc
                self._flush_waiting()

    def _next_batch(self) -> list[_Record]:
        """The next record once the log lines emitted before it are out, with the records
        queued right behind it (no log line emitted between them); empty if flush() took it."""
        with self._queue_changed:
            while not self._queued:
                self._queue_changed.wait()
            first = self._queued[0]
        if first.ticket is not None:
            # Not under any lock of ours: the relay and the loop never wait for this.
            self._lane.wait_turn(first.ticket)
        with self._queue_changed:
            if not self._queued or self._queued[0] is not first:
                return []  # flush() gave up on it meanwhile and sent it to stderr
            batch = [self._queued.popleft()]
            while self._queued and (
                self._queued[0].ticket is None or self._lane.ready(self._queued[0].ticket)
            ):
                batch.append(self._queued.popleft())
        return batch

    def _flush_waiting(self) -> None:
        """Write the waiting records (called with the lock held, not mid-line)."""
        while self._waiting:
            item = self._waiting.popleft()
            wanted = bool(item.data) and not item.abandoned
            if wanted and self._error is None:
                try:
                    self._write(item.data)
                except OSError as exc:
                    self._error = exc
            if item.ticket is not None:
                # Before anyone hears of it: a log line emitted once the record is out must not
                # wait for it.
                self._lane.done(item.ticket, written=wanted and self._error is None)
            if wanted and self._error is not None:
                _to_stderr(item, f"cannot write to stdout ({self._error})")
            elif item.on_done is not None:
                item.on_done(True)


_warned = False
_warned_lock = threading.Lock()


def _to_stderr(item: _Record, reason: str) -> None:
    """The stderr log is the stored logs' other half: the record goes there, on a line of its
    own so that a one-object-per-line parser still finds it; the reason is said once."""
    global _warned
    if item.data:
        with _warned_lock:
            first, _warned = not _warned, True
        if first:
            log.warning(
                "%s: records are written to stderr instead, each on a line of its own", reason
            )
        write_stderr_line(item.data)
    if item.on_done is not None:
        item.on_done(False)


def _set_result(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


# --- the process's stdout ------------------------------------------------------------------------
_stdout: OrderedOutput | None = None
_stdout_lock = threading.Lock()
_stdout_closed_at_start = False


def reserve_stdio() -> None:
    """Park /dev/null on any of fds 0-2 that is closed; call before anything opens a file."""
    global _stdout_closed_at_start
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd, inheritable=True)
            os.close(null)
        else:
            os.set_inheritable(fd, True)
        if fd == 1:
            _stdout_closed_at_start = True


def stdout_output() -> OrderedOutput:
    """The process's one OrderedOutput for fd 1."""
    global _stdout
    if _stdout is None:
        with _stdout_lock:
            if _stdout is None:
                closed = (
                    OSError(errno.EBADF, "stdout was closed when the sidecar started")
                    if _stdout_closed_at_start
                    else None
                )
                _stdout = OrderedOutput(1, unusable=closed, order=process_order())
    return _stdout


async def write_record(record: Mapping[str, Any], wait: float = RECORD_TIMEOUT) -> bool:
    """Write one record line to stdout, waiting at most `wait` seconds; never raises."""
    return await stdout_output().write_record(record, wait)


def submit_record(record: Mapping[str, Any]) -> None:
    """Queue one record line for stdout without waiting; never raises."""
    stdout_output().submit_record(record)


def flush_records(timeout: float) -> bool:
    """At exit: wait up to `timeout` for the queued records to reach stdout."""
    return _stdout.flush(timeout) if _stdout is not None else True
