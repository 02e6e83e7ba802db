"""Port forwarding from the host into a deployment's network namespace, TCP and UDP: what the
platform's public IP and external port do for a container.

Each forwarder owns a host socket bound to `public_ip:external` (bound by the caller when the
deployment is created, so the port is the deployment's from the first moment) and, for every
client, a socket made inside the namespace and connected to `127.0.0.1:internal` there. TCP
relays each connection both ways until either side closes; UDP keeps one inner socket per
client address (replies go back to that address) and drops it after `UDP_IDLE_SECONDS`
without traffic. `close()` stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import cast

log = logging.getLogger(__name__)

UDP_IDLE_SECONDS = 120.0
_MAX_UDP_CLIENTS = 1024
_CHUNK = 65536

InnerSocket = Callable[[int], Awaitable[socket.socket]]  # socket kind -> socket in the namespace


class TcpForwarder:
    def __init__(self, listener: socket.socket, inner: InnerSocket, internal: int) -> None:
        self._listener = listener
        self._inner = inner
        self._internal = internal
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._listener.setblocking(False)
        self._server = await asyncio.start_server(self._accepted, sock=self._listener)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
        try:
            inner = await self._inner(socket.SOCK_STREAM)
            inner.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(inner, ("127.0.0.1", self._internal))
            except OSError:
                inner.close()
                return  # nothing listens inside: the client sees the connection close
            inner_reader, inner_writer = await asyncio.open_connection(sock=inner)
            try:
                await asyncio.gather(_pipe(reader, inner_writer), _pipe(inner_reader, writer))
            finally:
                inner_writer.close()
        finally:
            writer.close()
            if task is not None:
                self._relays.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._relays):
            task.cancel()
        if self._relays:
            await asyncio.wait(list(self._relays), timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._listener.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class _Inner(asyncio.DatagramProtocol):
    """One client's socket inside the namespace: what the game answers goes back to it."""

    def __init__(self, reply: Callable[[bytes], None]) -> None:
        self._reply = reply
        self.transport: asyncio.DatagramTransport | None = None
        self.last_seen = asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.last_seen = asyncio.get_running_loop().time()
        self._reply(data)

    def error_received(self, exc: Exception) -> None:
        # ECONNREFUSED from the ICMP of a port nobody listens on yet: UDP shrugs it off.
        log.debug("udp forward inner error: %r", exc)


class _Outer(asyncio.DatagramProtocol):
    def __init__(self, forwarder: UdpForwarder) -> None:
        self._forwarder = forwarder

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._forwarder.received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp forward outer error: %r", exc)


class UdpForwarder:
    def __init__(self, bound: socket.socket, inner: InnerSocket, internal: int) -> None:
        self._bound = bound
        self._inner = inner
        self._internal = internal
        self._outer: asyncio.DatagramTransport | None = None
        self._clients: dict[tuple[str, int], _Inner] = {}
        # Datagrams that arrived while a new client's inner socket was being made.
        self._waiting: dict[tuple[str, int], list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._bound.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Outer(self), sock=self._bound)
        self._outer = transport
        self._spawn(self._sweep())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def received(self, data: bytes, client: tuple[str, int]) -> None:
        inner = self._clients.get(client)
        if inner is not None and inner.transport is not None:
            inner.last_seen = asyncio.get_running_loop().time()
            inner.transport.sendto(data)
        elif client in self._waiting:
            self._waiting[client].append(data)
        elif len(self._clients) + len(self._waiting) < _MAX_UDP_CLIENTS:
            self._waiting[client] = [data]
            self._spawn(self._open(client))

    async def _open(self, client: tuple[str, int]) -> None:
        try:
            sock = await self._inner(socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(("127.0.0.1", self._internal))
            loop = asyncio.get_running_loop()
            _, inner = await loop.create_datagram_endpoint(
                lambda: _Inner(lambda data: self._reply(data, client)), sock=sock
            )
        except OSError as exc:
            log.debug("udp forward: cannot reach the deployment: %r", exc)
            self._waiting.pop(client, None)
            return
        self._clients[client] = inner
        for data in self._waiting.pop(client, []):
            assert inner.transport is not None
            inner.transport.sendto(data)

    def _reply(self, data: bytes, client: tuple[str, int]) -> None:
        if self._outer is not None:
            self._outer.sendto(data, client)

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(UDP_IDLE_SECONDS / 4)
            now = loop.time()
            for client, inner in list(self._clients.items()):
                if now - inner.last_seen > UDP_IDLE_SECONDS and inner.transport is not None:
                    inner.transport.close()
                    del self._clients[client]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for inner in self._clients.values():
            if inner.transport is not None:
                inner.transport.close()
        self._clients.clear()
        if self._outer is not None:
            self._outer.close()
        else:
            self._bound.close()
