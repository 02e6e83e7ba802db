"""Listening sockets that never hold more accepted connections than their budget.

The local API's connection cap (`http_server.connection_cap`) closes a connection beyond it, but
only once aiohttp sees it, and asyncio accepts connections well before that: one readable event
on the listening socket accepts up to the listen backlog (128) at once, the accepted sockets
reach the protocol two loop passes later, and the connections the cap closes give their
descriptors back one pass after that. A flood that fills the kernel's queue faster than those
passes run can therefore be accepted several backlogs deep before the cap closes anything, and
run the process out of descriptors — the self-stop then cannot connect ("Too many open files").

So the listening socket counts what it handed out: `BoundedListener.accept` refuses (as if no
connection were waiting) while `budget` accepted sockets are still open. asyncio takes that as
"nothing more to accept now" and asks again on its next pass, by which time the cap has closed
connections; the kernel keeps the rest queued meanwhile. The count is exact — the open sockets
are held weakly and a closed one no longer counts — so a connection that vanishes without its
close being seen here cannot shrink the budget for good.

asyncio calls `accept()` on the very socket object given to `create_server(sock=...)`
(selector_events._accept_connection, unchanged from Python 3.8 to 3.14);
tests/test_api_hardening.py floods a real sidecar to hold it to that.
"""

from __future__ import annotations

import errno
import socket
import weakref
from typing import Any


class ConnectionBudget:
    """How many accepted sockets may be open at once, shared by the listening sockets of one
    server (`localhost` binds two)."""

    def __init__(self, budget: int) -> None:
        if budget < 1:
            raise ValueError(f"a connection budget must be at least 1, not {budget}")
        self.budget = budget
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.refusals = 0  # accept() calls turned away while the budget was spent

    def spent(self) -> bool:
        if len(self._open) < self.budget:
            return False
        # At the budget: forget sockets already closed (their transport may still hold them).
        for sock in list(self._open):
            if sock.fileno() == -1:
                self._open.discard(sock)
        return len(self._open) >= self.budget

    def add(self, sock: socket.socket) -> None:
        self._open.add(sock)

    @property
    def open(self) -> int:
        return sum(1 for sock in list(self._open) if sock.fileno() != -1)


class BoundedListener(socket.socket):
    """A listening socket whose `accept()` says "nothing waiting" while its budget is spent."""

    def __init__(self, *args: Any, budget: ConnectionBudget, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection_budget = budget

    def accept(self) -> tuple[socket.socket, Any]:
        budget = self.connection_budget
        if budget.spent():
            budget.refusals += 1
            raise BlockingIOError(errno.EAGAIN, "the connection budget is spent")
        conn, address = super().accept()
        budget.add(conn)
        return conn, address


def bind_listeners(host: str | None, port: int, budget: ConnectionBudget) -> list[BoundedListener]:
    """Listening sockets for host:port as `loop.create_server(host, port)` makes them (every
    address the name resolves to, SO_REUSEADDR, IPv6 sockets IPv6-only), sharing `budget`.
    With port 0, every address gets the port the first one was given. Raises OSError as
    create_server does (EADDRINUSE, EADDRNOTAVAIL, a name that does not resolve)."""
    infos = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    listeners: list[BoundedListener] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = BoundedListener(family, kind, proto, budget=budget)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(listeners) > 1:
                address = (address[0], listeners[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners
