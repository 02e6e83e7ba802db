"""The order of the sidecar's own writes across stdout and stderr: emission order.

A container runtime stores stdout and stderr merged, in the order it reads the two pipes. Our
records (stdout, :mod:`sidecar.output`) and log lines (stderr, :mod:`sidecar.logs`) are
written by two threads, one per stream, so without a shared order a record emitted after a log
line could overtake it (the stored logs once showed `sidecar.terminate` before "self-stop
accepted").

Why this shape
--------------
* Every line is given a ticket from one counter when it is emitted (queued), and a writer writes
  a line only once every line with an earlier ticket on the *other* stream is out. Each stream's
  own lines keep their queue order, so the merged order is the emission order.
* Two threads, not one: a write to a stderr nobody reads blocks in the kernel, and a single
  writer would then hold every stdout record behind it. Instead a writer stops waiting for the
  other stream once that stream's write under way has been blocked for
  :data:`STALLED_AFTER` (nobody reads it: its order can no longer be seen) or the
  stream is broken. A stalled stream therefore costs the other at most that long, within the
  budgets of the stop path. :data:`WAIT_LIMIT` bounds any wait whatever goes wrong, and lines
  waited for that long are waited for by nobody again.
* Written in order is not yet stored in order: a runtime reads the two pipes separately (a
  goroutine each in containerd's shim, a task each in the emulator), and a line it has not read
  yet from one pipe can be overtaken by a later line of the other. So when the next line goes to
  the other stream than the last one did, it first waits until the reader has taken everything
  in the last one's pipe (FIONREAD), for at most :data:`READ_WAIT` after that write: a reader
  that keeps up costs a wake-up, one that does not read is not waited for.
* Only the sidecar's own lines take tickets. The game's relayed output keeps its own order; where
  it falls among our lines depends on when the relay reads it, which no writer can know better.
* Lines that never reach their stream (dropped from a full queue, diverted to the other stream,
  given up at exit) must hand their ticket back (:meth:`Lane.done`), or the other stream would
  wait for them until :data:`WAIT_LIMIT`.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable

# A write blocked this long means nobody reads that stream. output.py re-exports it and uses it
# for its own stall rules (it imports this module, so the value lives here).
STALLED_AFTER = 0.25
# The longest a line ever waits for the other stream. The longest legitimate wait is a record
# waiting for the game to end its line (0.25 s) whose write then stalls (0.25 s more); past this
# something is wrong, and a line late in the wrong place beats a line lost.
WAIT_LIMIT = 1.0
# How long after a line a switch to the other stream waits for the runtime to read that line's
# pipe. A reader on an idle machine takes it within a millisecond; a busy one (the emulator's
# loop on a loaded machine) within tens.
READ_WAIT = 0.1
# How often a waiting writer looks again at whether the other stream has stalled (a write that
# blocks says so to nobody) or its reader has caught up (a read says so to nobody either).
_RECHECK = 0.02
_READ_RECHECK = 0.001


def _nothing_unread() -> int:
    return 0


def pipe_unread(fd: int) -> Callable[[], int]:
    """How many bytes written to `fd` its reader has not taken yet, when `fd` is a pipe; 0 for
    anything else (a file or a terminal is never behind; /dev/null reads everything)."""
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        is_pipe = False
    if not is_pipe:
        return _nothing_unread

    def unread() -> int:
        try:
            buffer = fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4)
        except OSError:
            return 0  # closed meanwhile: nothing left to wait for
        (count,) = struct.unpack("i", buffer)
        return int(count)

    return unread


class WriteOrder:
    """One ticket counter shared by the lanes (streams) whose writes must keep emission order."""

    def __init__(
        self,
        stalled_after: float = STALLED_AFTER,
        wait_limit: float = WAIT_LIMIT,
        read_wait: float = READ_WAIT,
    ):
        self._stalled_after = stalled_after
        self._wait_limit = wait_limit
        self._read_wait = read_wait
        self._changed = threading.Condition()  # guards every field below
        self._next_ticket = 0
        self._lanes: list[Lane] = []
        self._last_written: Lane | None = None  # the lane of the last line written
        self._last_written_at = 0.0

    def lane(
        self,
        blocked_for: Callable[[], float],
        is_broken: Callable[[], bool],
        unread: Callable[[], int] = _nothing_unread,
    ) -> Lane:
        """A new stream; `blocked_for` says how long its write under way has been waiting (0 when
        none is), `is_broken` whether it has been given up on, `unread` how much of what was
        written its reader has not taken yet (see pipe_unread)."""
        lane = Lane(self, blocked_for, is_broken, unread)
        with self._changed:
            self._lanes.append(lane)
        return lane

    # --- used by Lane, with the lock held where said ------------------------------------------
    def _take(self, lane: Lane) -> int:
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            lane._pending.append(ticket)
            return ticket

    def _first_earlier(self, lane: Lane, ticket: int) -> Lane | None:
        """(Lock held.) Another lane holding an unwritten line emitted before `ticket`."""
        for other in self._lanes:
            if other is not lane and other._pending and other._pending[0] < ticket:
                return other
        return None

    def _gone(self, other: Lane) -> bool:
        """Whether `other` is stalled or broken: its order is no longer worth waiting for."""
        return other._blocked_for() > self._stalled_after or other._is_broken()

    def _ready(self, lane: Lane, ticket: int) -> bool:
        with self._changed:
            other = self._first_earlier(lane, ticket)
            return other is None or self._gone(other)

    def _unread_left(self, lane: Lane) -> float:
        """(Lock held.) How much longer a line on `lane` waits for the reader of the last line
        written, when that went to another stream and is not read yet (0: no wait)."""
        last = self._last_written
        if last is None or last is lane or self._gone(last):
            return 0.0
        left = self._last_written_at + self._read_wait - time.monotonic()
        if left <= 0 or last._unread() == 0:
            return 0.0
        return left

    def _wait_turn(self, lane: Lane, ticket: int) -> bool:
        deadline = time.monotonic() + self._wait_limit
        with self._changed:
            while True:
                other = self._first_earlier(lane, ticket)
                if other is None:
                    unread_left = self._unread_left(lane)
                    if unread_left <= 0:
                        return True
                    self._changed.wait(min(unread_left, _READ_RECHECK))
                    continue
                if self._gone(other):
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    # Its writer neither writes nor stalls (a bug): nobody waits for those lines
                    # again, or every later line would wait WAIT_LIMIT too.
                    while other._pending and other._pending[0] < ticket:
                        other._pending.popleft()
                    self._changed.notify_all()
                    return False
                self._changed.wait(min(left, _RECHECK))

    def _done(self, lane: Lane, ticket: int, written: bool) -> None:
        with self._changed:
            if written:
                self._last_written = lane
                self._last_written_at = time.monotonic()
            pending = lane._pending
            if pending and pending[0] == ticket:
                pending.popleft()
            else:
                try:
                    pending.remove(ticket)
                except ValueError:
                    return  # handed back already (a record given up on twice)
            self._changed.notify_all()


class Lane:
    """One stream's side of a :class:`WriteOrder`.

    A writer calls :meth:`ticket` when a line is queued (under the lock that orders its own
    queue, so tickets follow queue order), :meth:`wait_turn` before writing it, and :meth:`done`
    once it is written or will never be.
    """

    def __init__(
        self,
        order: WriteOrder,
        blocked_for: Callable[[], float],
        is_broken: Callable[[], bool],
        unread: Callable[[], int],
    ) -> None:
        self._order = order
        self._blocked_for = blocked_for
        self._is_broken = is_broken
        self._unread = unread
        self._pending: deque[int] = deque()  # tickets not yet done, oldest first (order's lock)

    def ticket(self) -> int:
        """The next ticket, for a line just queued on this stream."""
        return self._order._take(self)

    def ready(self, ticket: int) -> bool:
        """Whether the line can be written now (never waits)."""
        return self._order._ready(self, ticket)

    def wait_turn(self, ticket: int) -> bool:
        """Wait until every earlier line on the other streams is out (and, when the last line
        written went to another stream, read, up to READ_WAIT); False when it stopped waiting
        for an earlier line early (a stalled or broken stream, or WAIT_LIMIT)."""
        return self._order._wait_turn(self, ticket)

    def done(self, ticket: int, written: bool = True) -> None:
        """The line is written (`written`), or will never be; idempotent."""
        self._order._done(self, ticket, written)


_process_order: WriteOrder | None = None
_process_order_lock = threading.Lock()


def process_order() -> WriteOrder:
    """The order shared by the process's fd 1 and fd 2 writers."""
    global _process_order
    if _process_order is None:
        with _process_order_lock:
            if _process_order is None:
                _process_order = WriteOrder()
    return _process_order
