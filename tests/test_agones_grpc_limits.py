"""The gRPC server's bounds against clients that break the rules (SPEC §10.1, §11): raw HTTP/2
frames from a loopback client (tests/h2_raw.py) at an in-process sidecar. Each attack is run
small, and the bound it meets is asserted on the server's own bookkeeping."""

from __future__ import annotations

import asyncio
import socket
import struct

import h2.errors
import h2.events
import pytest

from sidecar.agones import grpc_server
from sidecar.agones.grpc_server import (
    CONNECTION_MESSAGE_BYTES,
    MAX_MESSAGE_BYTES,
    RESET_BURST,
    SERVER_MESSAGE_BYTES,
)
from tests.conftest import SidecarFactory
from tests.h2_raw import RawH2


@pytest.fixture
async def server(sidecar: SidecarFactory) -> grpc_server.AgonesGrpc:
    handle = await sidecar(
        SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT="0", SIDECAR_AGONES_GRPC_PORT="0"
    )
    grpc = handle.agent.agones_grpc
    assert grpc is not None
    assert grpc._server is not None
    return grpc


def _live(grpc: grpc_server.AgonesGrpc) -> list[grpc_server._Protocol]:
    assert grpc._server is not None
    return list(grpc._server.live)


async def _eventually(condition: object, timeout: float = 5.0) -> None:
    """Yield to the loop until `condition()` holds (the server's own tasks run meanwhile)."""
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def _prefix(length: int) -> bytes:
    return b"\x00" + length.to_bytes(4, "big")


async def test_unfinished_messages_are_bounded_per_connection(
    server: grpc_server.AgonesGrpc,
) -> None:
    """Calls that announce the largest message and never finish it: two fit the connection's
    budget, every other one is answered RESOURCE_EXHAUSTED at once; closing gives it all back."""
    client = await RawH2.connect(server.port or 0)
    calls = [client.call() for _ in range(8)]
    for stream_id in calls:
        client.h2.send_data(stream_id, _prefix(MAX_MESSAGE_BYTES) + b"\x08")
    client.flush()
    fitting = CONNECTION_MESSAGE_BYTES // MAX_MESSAGE_BYTES
    await client.until(lambda: len(client.statuses()) >= len(calls) - fitting)
    assert set(client.statuses().values()) == {"8"}  # RESOURCE_EXHAUSTED
    assert server._server is not None
    messages = server._server.messages
    assert messages.left == SERVER_MESSAGE_BYTES - fitting * MAX_MESSAGE_BYTES
    client.close()
    await _eventually(lambda: messages.left == SERVER_MESSAGE_BYTES)


async def test_calls_beyond_the_stream_limit_are_refused(server: grpc_server.AgonesGrpc) -> None:
    """MAX_CONCURRENT_STREAMS holds even for a client that never acknowledged the setting: the
    calls beyond it are reset with REFUSED_STREAM (which gRPC clients retry)."""
    client = await RawH2.connect(server.port or 0)
    extra = 4
    for _ in range(grpc_server.MAX_CONCURRENT_STREAMS + extra):
        client.call()  # Health calls, left open
    client.h2.ping(b"12345678")
    client.flush()
    await client.until(lambda: any(isinstance(e, h2.events.PingAckReceived) for e in client.events))
    refused = [
        e
        for e in client.events
        if isinstance(e, h2.events.StreamReset)
        and e.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
    ]
    assert len(refused) == extra
    [protocol] = _live(server)
    assert len(protocol.processor.streams) == grpc_server.MAX_CONCURRENT_STREAMS
    client.close()


async def test_reset_calls_are_released(server: grpc_server.AgonesGrpc) -> None:
    """A call reset before its handler ran no longer stays on the connection for good."""
    client = await RawH2.connect(server.port or 0)
    for _ in range(50):
        stream_id = client.call("/agones.dev.sdk.SDK/WatchGameServer")
        client.h2.send_data(stream_id, _prefix(0))
        client.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    client.h2.ping(b"12345678")
    client.flush()
    await client.until(lambda: any(isinstance(e, h2.events.PingAckReceived) for e in client.events))
    [protocol] = _live(server)
    await _eventually(lambda: not protocol.processor.streams)
    assert protocol.handler.check_closed() or not protocol.handler._tasks  # type: ignore[attr-defined]
    client.close()


async def test_rapid_reset_is_disconnected(server: grpc_server.AgonesGrpc) -> None:
    """Opening and resetting calls without end: GOAWAY ENHANCE_YOUR_CALM, then closed; the
    server is left with nothing of that connection."""
    client = await RawH2.connect(server.port or 0)
    for _ in range(RESET_BURST * 5):
        stream_id = client.call()
        client.h2.send_data(stream_id, _prefix(0))
        client.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    client.flush()
    await client.until(lambda: client.goaway() is not None)
    goaway = client.goaway()
    assert goaway is not None
    assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    await _eventually(lambda: not _live(server))
    client.close()


async def test_a_client_that_never_reads_cannot_grow_the_write_buffer(
    server: grpc_server.AgonesGrpc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PINGs sent without end and their ACKs never read: the server stops reading that client
    once its answers pile up, its write buffer stays small, and the stalled connection is
    aborted after WRITE_STALL_TIMEOUT."""
    monkeypatch.setattr(grpc_server, "WRITE_STALL_TIMEOUT", 0.5)
    monkeypatch.setattr(grpc_server, "CONTROL_BURST", 10**9)  # this test is about the buffer
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port or 0))
    sock.setblocking(False)
    _, writer = await asyncio.open_connection(sock=sock)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    ping = struct.pack(">I", 8)[1:] + b"\x06\x00\x00\x00\x00\x00" + b"12345678"
    writer.write(preface)
    chunk = ping * (65536 // len(ping))
    for _ in range(8 * 1024 * 1024 // len(chunk)):  # 8 MB of PINGs: 8 MB of ACKs unbounded
        writer.write(chunk)
    await _eventually(lambda: _live(server))
    [protocol] = _live(server)
    largest = 0

    def aborted() -> bool:
        nonlocal largest
        if protocol not in _live(server):
            return True
        largest = max(largest, protocol.connection._transport.get_write_buffer_size())
        return False

    await _eventually(aborted, timeout=8)
    assert largest <= 1024 * 1024, f"the server buffered {largest} bytes of ACKs"
    writer.transport.abort()


async def test_a_ping_flood_is_disconnected(server: grpc_server.AgonesGrpc) -> None:
    """PINGs by the thousand: GOAWAY ENHANCE_YOUR_CALM once past CONTROL_BURST, then closed,
    having parsed no more than a slice of what was sent."""
    client = await RawH2.connect(server.port or 0)
    for _ in range(grpc_server.CONTROL_BURST * 20):
        client.h2.ping(b"12345678")
    client.flush()
    await client.until(lambda: client.goaway() is not None)
    goaway = client.goaway()
    assert goaway is not None
    assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    acks = sum(isinstance(e, h2.events.PingAckReceived) for e in client.events)
    ping_frame = 9 + 8
    assert acks <= grpc_server.CONTROL_BURST + grpc_server.FEED_SLICE // ping_frame
    client.close()


async def test_a_connection_without_the_http2_preface_is_closed(
    server: grpc_server.AgonesGrpc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket that sends nothing is closed after HANDSHAKE_TIMEOUT; one that completed the
    handshake is not."""
    monkeypatch.setattr(grpc_server, "HANDSHAKE_TIMEOUT", 0.2)
    client = await RawH2.connect(server.port or 0)
    await client.until(
        lambda: any(isinstance(e, h2.events.SettingsAcknowledged) for e in client.events)
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    async with asyncio.timeout(5):
        while await reader.read(1 << 16):
            pass  # the server's SETTINGS, then its GOAWAY, then EOF
    client.h2.ping(b"stillok!")
    client.flush()
    await client.until(lambda: any(isinstance(e, h2.events.PingAckReceived) for e in client.events))
    assert not client.closed
    writer.close()
    client.close()
