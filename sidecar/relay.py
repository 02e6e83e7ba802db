"""Output relay: copies one of the game's output pipes to one of our fds, byte for byte.

Owns the pipes the game writes to, the copy loop, and the short tail kept for crash records.

Why this shape
--------------
* Bytes, not text: a game's output is whatever it writes (invalid UTF-8, ANSI colours, binary
  junk). It is copied in large reads (64 KiB), never decoded, scanned or split per line; besides
  the copy, a chunk costs one reference kept for the tail.
* One plain thread per stream doing ``os.read``/``os.write``. Our own stdout may block (a slow log
  collector, a full pipe): that must stall only the copy, never the event loop that serves the
  local API, and the game then sees ordinary pipe backpressure and nothing worse. A thread that
  blocks in a system call releases the GIL, so it costs the loop nothing.
* The game's pipe gets a 1 MiB buffer (``F_SETPIPE_SZ``) so bursts do not stall the game while
  the relay is between reads.
* When the destination is our stdout, chunks go through :class:`sidecar.output.OrderedOutput`,
  which keeps the agent's records out of the middle of the game's lines; elsewhere (stderr, a
  test's pipe) the relay writes the fd itself.
* The relay ends at end-of-file. A last line without a newline is flushed as it is, then given
  one, so that the stop record the agent writes next starts on a line of its own.
* If the game is dead but an orphan it left behind still holds the pipe open, end-of-file never
  comes, so :meth:`OutputRelay.request_drain` makes the thread copy what is already buffered
  (every byte the game wrote before dying) and stop.
* The tail is built only when asked: the thread keeps references to the newest chunks (256 KiB,
  without looking inside them) and :func:`merge_tails` splits and decodes just those. Each chunk
  carries a sequence number shared by the stdout and stderr relays, which orders the two
  streams' lines approximately (to the chunk) in the crash record.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import itertools
import logging
import os
import select
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from sidecar.output import OrderedOutput, write_all

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
PIPE_SIZE = 1 << 20
# Output kept for the tail: ~50 lines unless they average over 5 KiB.
TAIL_BYTES = 1 << 18
# A crash record should explain the crash, not carry a megabyte of one line.
TAIL_LINE_CHARS = 1000


def open_output_pipe() -> tuple[int, int]:
    """A close-on-exec pipe (read end, write end) for one of the game's output streams.

    Both ends are above 2, so handing the write end to the child as fd 1 or 2 is never a
    self-dup2 (which would leave close-on-exec set and close it at exec).
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    read_fd, write_fd = _above_stdio(read_fd), _above_stdio(write_fd)
    with contextlib.suppress(OSError):
        # Best effort: unprivileged users may be capped below 1 MiB; the default 64 KiB works.
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_fd, write_fd


def _above_stdio(fd: int) -> int:
    if fd > 2:
        return fd
    # Our own stdio was closed and the pipe took its number: move it out of the way.
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


class OutputRelay:
    """Copies `source_fd` (closed when done) to `dest_fd` (left open) on a dedicated thread."""

    def __init__(
        self,
        name: str,
        source_fd: int,
        dest_fd: int,
        *,
        sequence: itertools.count[int],
        tail_lines: int = 50,
        output: OrderedOutput | None = None,
    ) -> None:
        """`output`, when given, is the writer for `dest_fd` shared with the agent's records."""
        self.name = name
        self._source_fd = source_fd
        self._dest_fd = dest_fd
        self._sequence = sequence
        self._tail_lines = tail_lines
        self._write: Callable[[bytes], None] = (
            # partial, not a method: one call less per chunk on the hot path.
            output.write_game if output is not None else functools.partial(write_all, dest_fd)
        )
        self._writing_since: float | None = None  # see blocked_for(); read without a lock
        # (sequence number, chunk), newest on the right: the raw material of the tail.
        self._chunks: deque[tuple[int, bytes]] = deque()
        self._chunks_bytes = 0
        self._cut_mid_line = False  # the oldest kept chunk starts inside a line
        self._dest_error: OSError | None = None
        self._draining = False
        self._mid_line = False  # the last byte relayed was not a newline
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._wake_lock = threading.Lock()
        self._finished = False
        self.bytes_relayed = 0
        self._done: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"relay-{name}", daemon=True)

    def start(self) -> asyncio.Future[None]:
        """Start copying; the future completes on the running loop once every byte is out."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._thread.start()
        return self._done

    def request_drain(self) -> None:
        """Copy what is buffered in the pipe now, then stop, even without end-of-file."""
        with self._wake_lock:
            if self._finished:
                return
            self._draining = True
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_write, b"x")

    def tail(self) -> list[tuple[int, str]]:
        """The kept lines, each with the sequence number of the chunk that completed it."""
        lines: list[tuple[int, str]] = []
        partial = b""
        skip_first = self._cut_mid_line  # that line lost its beginning: leave it out
        # A snapshot (list() of a deque is atomic under the GIL): the relay thread may still be
        # appending if it was given up on while stuck writing to a stalled stdout.
        chunks = list(self._chunks)
        for seq, chunk in chunks:
            pieces = (partial + chunk).split(b"\n")
            partial = pieces.pop()
            for piece in pieces:
                if skip_first:
                    skip_first = False
                    continue
                lines.append((seq, _decode_line(piece)))
        if partial and chunks:
            lines.append((chunks[-1][0], _decode_line(partial)))
        return lines[-self._tail_lines :] if self._tail_lines > 0 else []

    def _run(self) -> None:
        try:
            self._copy()
            if self._mid_line and self._dest_error is None:
                # The game's last line had no newline. It is flushed as is; the newline only
                # keeps what we write next (the stop record) off the end of that line.
                self._write_checked(b"\n")
        except OSError as exc:
            # Reading our own pipe should not fail; if it does, treat it as end-of-file so the
            # game's exit is still reported instead of hanging the supervisor.
            log.error("relay of game %s stopped: %s", self.name, exc)
        finally:
            with self._wake_lock:
                self._finished = True
                os.close(self._wake_read)
                os.close(self._wake_write)
            os.close(self._source_fd)
            self._notify_done()

    def _copy(self) -> None:
        source = self._source_fd
        os.set_blocking(source, False)
        poller = select.poll()
        poller.register(source, select.POLLIN)
        poller.register(self._wake_read, select.POLLIN)
        drain_budget: int | None = None
        while True:
            if self._draining and drain_budget is None:
                # What the pipe holds now includes every byte of the (dead) game's output.
                drain_budget = _pipe_pending(source)
                if drain_budget == 0:
                    return
            try:
                chunk = os.read(source, READ_SIZE)
            except BlockingIOError:
                if drain_budget is not None:
                    return
                # Nothing to copy: sleep until data, end-of-file or a drain request.
                poller.poll()
                continue
            if not chunk:
                return
            self._deliver(chunk)
            if drain_budget is not None:
                drain_budget -= len(chunk)
                if drain_budget <= 0:
                    return

    def _deliver(self, chunk: bytes) -> None:
        if self._dest_error is None:
            self._write_checked(chunk)
        self.bytes_relayed += len(chunk)
        self._mid_line = not chunk.endswith(b"\n")
        # Keep the newest TAIL_BYTES (plus one chunk) for the tail; no scanning of the chunk here,
        # lines are only found in what is kept, once, when the tail is asked for.
        self._chunks.append((next(self._sequence), chunk))
        self._chunks_bytes += len(chunk)
        while self._chunks_bytes - len(self._chunks[0][1]) >= TAIL_BYTES:
            _, oldest = self._chunks.popleft()
            self._chunks_bytes -= len(oldest)
            self._cut_mid_line = not oldest.endswith(b"\n")

    def blocked_for(self) -> float:
        """How long the relay's write under way has been waiting (0 when none is): a relay
        blocked for long writes to a stdout or stderr that nobody reads."""
        since = self._writing_since
        return 0.0 if since is None else time.monotonic() - since

    def _write_checked(self, chunk: bytes) -> None:
        self._writing_since = time.monotonic()
        try:
            self._write(chunk)
        except OSError as exc:
            # Our stdout is gone (EPIPE, EIO...). Keep reading so the game never blocks on
            # a full pipe, but stop writing; the tail is still kept for the crash record.
            # (write_all waits for room on a non-blocking fd instead of spinning or dropping.)
            self._dest_error = exc
            log.warning(
                "cannot write game %s to fd %d (%s); discarding further output",
                self.name,
                self._dest_fd,
                exc,
            )
        finally:
            self._writing_since = None

    def _notify_done(self) -> None:
        done = self._done
        if done is None:
            return
        loop = done.get_loop()
        # The loop may already be closed if its owner gave up on us; nothing left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_set_done, done)


def merge_tails(relays: Iterable[OutputRelay], limit: int) -> tuple[str, ...]:
    """The last `limit` lines of several relays, interleaved by arrival (to the chunk)."""
    tagged = [
        (seq, stream_index, line_index, line)
        for stream_index, relay in enumerate(relays)
        for line_index, (seq, line) in enumerate(relay.tail())
    ]
    tagged.sort()
    return tuple(line for *_, line in tagged[-limit:]) if limit > 0 else ()


def _decode_line(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if len(text) > TAIL_LINE_CHARS:
        return text[:TAIL_LINE_CHARS] + "…"
    return text


def _pipe_pending(fd: int) -> int:
    (pending,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))
    return int(pending)


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
