"""State-change fan-out to Server-Sent Events subscribers (`GET /v1/events`).

Each subscriber owns a small bounded queue. A subscriber that stops reading loses its oldest
events rather than growing memory or slowing the publisher: the newest state is what matters,
and every event carries the full status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

QUEUE_SIZE = 64
_CLOSED: dict[str, Any] = {}


class EventHub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()  # drop the oldest: the newest status supersedes it
            queue.put_nowait((event, data))

    def close(self) -> None:
        """End every stream (shutdown)."""
        self._closed = True
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(("", _CLOSED))

    async def subscribe(
        self, first: tuple[str, dict[str, Any]] | None = None, keepalive: float = 15.0
    ) -> AsyncIterator[bytes]:
        """Yield encoded SSE frames until the hub closes; comments keep proxies from timing out."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(QUEUE_SIZE)
        if first is not None:
            queue.put_nowait(first)
        if self._closed:
            queue.put_nowait(("", _CLOSED))
        self._queues.add(queue)
        try:
            while True:
                try:
                    # asyncio.timeout rather than wait_for: it never swallows a cancellation.
                    async with asyncio.timeout(keepalive):
                        event, data = await queue.get()
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if data is _CLOSED:
                    return
                yield encode(event, data)
        finally:
            self._queues.discard(queue)


def encode(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
