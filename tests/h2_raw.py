"""A raw HTTP/2 client on loopback for the gRPC server's connection rules: frames a real gRPC
client would never send (unfinished messages, resets, floods), built with the h2 library."""

from __future__ import annotations

import asyncio
from typing import Any

import h2.config
import h2.connection
import h2.events


class RawH2:
    """One client connection: `call()` opens a gRPC call, `pump()` reads what the server sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.events: list[Any] = []
        self.closed = False

    @classmethod
    async def connect(cls, port: int, *, handshake: bool = True) -> RawH2:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if handshake:
            client.h2.initiate_connection()
            client.flush()
        return client

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    def call(self, method: str = "/agones.dev.sdk.SDK/Health") -> int:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", "sidecar"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self.flush()
        return stream_id

    async def pump(self, timeout: float = 5.0) -> list[Any]:
        """Wait for the server's next bytes (or EOF: `closed`) and return their events."""
        async with asyncio.timeout(timeout):
            data = await self.reader.read(1 << 20)
        if not data:
            self.closed = True
            return []
        events = self.h2.receive_data(data)
        self.events += events
        self.flush()
        return events

    async def until(self, done: Any, timeout: float = 5.0) -> None:
        """Pump until `done()` holds or the server closes; TimeoutError past `timeout`."""
        async with asyncio.timeout(timeout):
            while not done() and not self.closed:
                await self.pump(timeout)

    def statuses(self) -> dict[int, str]:
        """grpc-status of each call the server ended, by stream id."""
        found: dict[int, str] = {}
        for event in self.events:
            if isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
                headers = dict(event.headers)
                if "grpc-status" in headers:
                    found[event.stream_id] = headers["grpc-status"]
        return found

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None

    def close(self) -> None:
        self.writer.close()
