"""State-change fan-out to Server-Sent Events subscribers (`GET /v1/events`).

Bounds (SPEC §11), so that event clients cannot grow the sidecar's memory:

* at most `MAX_SUBSCRIBERS` (64) at a time; `subscribe` raises `TooManySubscribers` beyond;
* each subscriber queues at most `QUEUE_SIZE` (16) frames. One that falls further behind (it
  does not read, so its handler is stuck writing) is dropped and its `on_overflow` callback
  runs (the API aborts the connection): every event carries the full status, so a client that
  reconnects loses nothing, while one that never reads cannot pin the frames;
* a frame is encoded once per event and shared by every subscriber's queue.

A subscriber that disconnects is removed by `unsubscribe`, which the handler calls when it is
cancelled (the server cancels handlers on disconnect), not at its next keep-alive.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

QUEUE_SIZE = 16
MAX_SUBSCRIBERS = 64
KEEPALIVE_SECONDS = 15.0
KEEPALIVE_FRAME = b": keepalive\n\n"


class TooManySubscribers(Exception):
    """The hub already has MAX_SUBSCRIBERS subscribers (the API answers 429)."""


class Subscription:
    """One subscriber: a bounded queue of encoded frames."""

    def __init__(self, on_overflow: Callable[[], object] | None = None) -> None:
        self._frames: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._on_overflow = on_overflow
        self.ended = False  # no more frames will come (hub closed, or dropped)
        self.overflowed = False

    @property
    def queued(self) -> int:
        return len(self._frames)

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; False when the queue is full (the subscriber is too far behind)."""
        if len(self._frames) >= QUEUE_SIZE:
            return False
        self._frames.append(frame)
        self._ready.set()
        return True

    def end(self) -> None:
        """Deliver what is queued, then stop."""
        self.ended = True
        self._ready.set()

    def overflow(self) -> None:
        """Drop what is queued and stop at once; tell the owner (it closes the connection)."""
        self.overflowed = True
        self.ended = True
        self._frames.clear()
        self._ready.set()
        if self._on_overflow is not None:
            self._on_overflow()

    async def frames(self, keepalive: float = KEEPALIVE_SECONDS) -> AsyncGenerator[bytes, None]:
        """Yield frames until the subscription ends; a comment after `keepalive` seconds of
        silence keeps proxies from timing the stream out."""
        while True:
            if self._frames:
                yield self._frames.popleft()
                continue
            if self.ended:
                return
            self._ready.clear()
            try:
                # asyncio.timeout rather than wait_for: it never swallows a cancellation.
                async with asyncio.timeout(keepalive):
                    await self._ready.wait()
            except TimeoutError:
                yield KEEPALIVE_FRAME


class EventHub:
    def __init__(self, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.max_subscribers = max_subscribers
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self.dropped = 0  # subscribers cut off for falling behind, for the record

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(
        self,
        first: tuple[str, Mapping[str, Any]] | None = None,
        on_overflow: Callable[[], object] | None = None,
    ) -> Subscription:
        """Register a subscriber now (synchronously, so the cap holds however many arrive at
        once); `first` is its first frame. The caller must `unsubscribe` it when done."""
        if len(self._subscriptions) >= self.max_subscribers:
            raise TooManySubscribers(
                f"{self.max_subscribers} event subscribers are already connected; "
                "close one or retry later"
            )
        subscription = Subscription(on_overflow)
        if first is not None:
            subscription.offer(encode(*first))
        if self._closed:
            subscription.end()
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: str, data: Mapping[str, Any]) -> None:
        if not self._subscriptions:
            return
        frame = encode(event, data)
        behind = [s for s in self._subscriptions if not s.offer(frame)]
        for subscription in behind:
            self._subscriptions.discard(subscription)
            self.dropped += 1
            subscription.overflow()

    def close(self) -> None:
        """End every stream (shutdown)."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.end()


def encode(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
