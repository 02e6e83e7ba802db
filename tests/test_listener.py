"""The listening socket's connection budget (sidecar/listener.py), on real loopback sockets.

The flood against a whole sidecar is in tests/test_api_hardening.py (TestDescriptors); here each
rule is shown on its own, deterministically: the kernel completes the handshakes, so every
client below is waiting in the listen queue before the first accept()."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
from collections.abc import Iterator

import pytest
from aiohttp import web

from sidecar.http_server import ACCEPT_BURST, ApiRunner
from sidecar.listener import BoundedListener, ConnectionBudget, bind_listeners


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def listening(budget: int) -> BoundedListener:
    [listener] = bind_listeners("127.0.0.1", 0, ConnectionBudget(budget))
    listener.listen(16)
    return listener


def connect(listener: socket.socket, count: int, clients: list[socket.socket]) -> None:
    for _ in range(count):
        clients.append(socket.create_connection(listener.getsockname()[:2], timeout=5))


def test_accept_refuses_while_the_budget_is_spent(clients: list[socket.socket]) -> None:
    listener = listening(3)
    with listener:
        connect(listener, 5, clients)
        accepted = [listener.accept()[0] for _ in range(3)]
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert listener.connection_budget.refusals == 1
        # A connection closed gives its place back; the queued client is accepted next.
        accepted.pop().close()
        accepted.append(listener.accept()[0])
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert listener.connection_budget.open == 3
        for sock in accepted:
            sock.close()


def test_a_socket_dropped_without_close_still_gives_its_place_back(
    clients: list[socket.socket],
) -> None:
    """Nothing relies on seeing close(): a socket that is garbage-collected (the interpreter
    closes its descriptor) no longer counts either."""
    listener = listening(1)
    with listener:
        connect(listener, 2, clients)
        conn = listener.accept()[0]
        with pytest.raises(BlockingIOError):
            listener.accept()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # the point of this test
            del conn
            gc.collect()
        listener.accept()[0].close()


def test_listening_sockets_share_one_budget_and_one_port() -> None:
    """`localhost` resolves to 127.0.0.1 and ::1 here: both sockets, one port, one budget."""
    budget = ConnectionBudget(2)
    listeners = bind_listeners("localhost", 0, budget)
    try:
        assert listeners
        assert {sock.getsockname()[1] for sock in listeners} == {listeners[0].getsockname()[1]}
        assert all(sock.connection_budget is budget for sock in listeners)
    finally:
        for sock in listeners:
            sock.close()


def test_a_port_in_use_raises_like_create_server() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    with taken, pytest.raises(OSError, match="in use"):
        bind_listeners("127.0.0.1", taken.getsockname()[1], ConnectionBudget(1))


def test_a_budget_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionBudget(0)


async def test_the_api_runner_serves_through_bounded_listeners() -> None:
    """ApiRunner.listen: the budget is the cap plus one accept burst, and the server answers."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = ApiRunner(app, max_connections=5, handle_signals=False)
    await runner.setup()
    try:
        port = await runner.listen("127.0.0.1", 0)
        [site] = runner.sites
        sock = site._sock  # type: ignore[attr-defined]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"hi")
        assert sock.getsockname()[1] == port
        assert sock.connection_budget.budget == 5 + ACCEPT_BURST
    finally:
        await runner.cleanup()
