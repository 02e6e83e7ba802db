"""The order of the sidecar's own writes across stdout and stderr: emission order.

A container runtime stores stdout and stderr merged in the order the writes reach the two pipes.
Our records (stdout, :mod:`sidecar.output`) and log lines (stderr, :mod:`sidecar.logs`) are
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
* Only the sidecar's own lines take tickets. The game's relayed output keeps its own order; where
  it falls among our lines depends on when the relay reads it, which no writer can know better.
* Lines that never reach their stream (dropped from a full queue, diverted to the other stream,
  given up at exit) must hand their ticket back (:meth:`Lane.done`), or the other stream would
  wait for them until :data:`WAIT_LIMIT`.
"""

from __future__ import annotations

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
# How often a waiting writer looks again at whether the other stream has stalled: a write that
# blocks says so to nobody.
_RECHECK = 0.02


class WriteOrder:
    """One ticket counter shared by the lanes (streams) whose writes must keep emission order."""

    def __init__(self, stalled_after: float = STALLED_AFTER, wait_limit: float = WAIT_LIMIT):
        self._stalled_after = stalled_after
        self._wait_limit = wait_limit
        self._changed = threading.Condition()  # guards every field below
        self._next_ticket = 0
        self._lanes: list[Lane] = []

    def lane(self, blocked_for: Callable[[], float], is_broken: Callable[[], bool]) -> Lane:
        """A new stream; `blocked_for` says how long its write under way has been waiting (0 when
        none is), `is_broken` whether it has been given up on."""
        lane = Lane(self, blocked_for, is_broken)
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

    def _wait_turn(self, lane: Lane, ticket: int) -> bool:
        deadline = time.monotonic() + self._wait_limit
        with self._changed:
            while True:
                other = self._first_earlier(lane, ticket)
                if other is None:
                    return True
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

    def _done(self, lane: Lane, ticket: int) -> None:
        with self._changed:
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
        self, order: WriteOrder, blocked_for: Callable[[], float], is_broken: Callable[[], bool]
    ) -> None:
        self._order = order
        self._blocked_for = blocked_for
        self._is_broken = is_broken
        self._pending: deque[int] = deque()  # tickets not yet done, oldest first (order's lock)

    def ticket(self) -> int:
        """The next ticket, for a line just queued on this stream."""
        return self._order._take(self)

    def ready(self, ticket: int) -> bool:
        """Whether the line can be written now (never waits)."""
        return self._order._ready(self, ticket)

    def wait_turn(self, ticket: int) -> bool:
        """Wait until every earlier line on the other streams is out; False when it stopped
        waiting early (a stalled or broken stream, or WAIT_LIMIT)."""
        return self._order._wait_turn(self, ticket)

    def done(self, ticket: int) -> None:
        """The line is written, or will never be; idempotent."""
        self._order._done(self, ticket)


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
