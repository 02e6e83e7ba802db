"""The SSE hub's bounds, without a network: subscriber cap, per-subscriber queue, one encoding
per event, and the end of streams at shutdown."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.events import MAX_SUBSCRIBERS, QUEUE_SIZE, EventHub, TooManySubscribers


class TestEventHub:
    def test_the_cap_holds_and_frees_up(self) -> None:
        """Subscribing past MAX_SUBSCRIBERS raises; unsubscribing frees a place at once."""
        hub = EventHub()
        subscriptions = [hub.subscribe() for _ in range(MAX_SUBSCRIBERS)]
        with pytest.raises(TooManySubscribers, match="64 event subscribers"):
            hub.subscribe()
        hub.unsubscribe(subscriptions.pop())
        hub.subscribe()
        assert hub.subscribers == MAX_SUBSCRIBERS

    def test_a_lagging_subscriber_is_dropped_past_its_queue(self) -> None:
        """A subscriber that takes nothing holds at most QUEUE_SIZE frames; the next event
        drops it and calls its overflow callback once. Others are unaffected."""
        hub = EventHub()
        aborted: list[str] = []
        lagging = hub.subscribe(on_overflow=lambda: aborted.append("abort"))
        healthy = hub.subscribe()
        for n in range(QUEUE_SIZE):
            hub.publish("state", {"n": n})
            assert lagging.queued == n + 1
            healthy._frames.clear()  # a reader that keeps up
        assert aborted == []
        hub.publish("state", {"n": QUEUE_SIZE})
        assert aborted == ["abort"]
        assert (lagging.overflowed, lagging.queued, hub.subscribers, hub.dropped) == (True, 0, 1, 1)
        hub.publish("state", {"n": QUEUE_SIZE + 1})
        assert aborted == ["abort"]

    def test_one_encoding_per_event(self) -> None:
        """Every subscriber queues the same bytes object for an event."""
        hub = EventHub()
        a, b = hub.subscribe(), hub.subscribe()
        hub.publish("state", {"players": list(range(1000))})
        assert a._frames[0] is b._frames[0]

    async def test_streams_deliver_then_end_when_the_hub_closes(self) -> None:
        """After close(), a stream yields what was queued, then ends; a subscriber arriving
        after close gets its first frame and ends too."""
        hub = EventHub()
        subscription = hub.subscribe(first=("state", {"state": "starting"}))
        hub.publish("state", {"state": "ready"})
        hub.close()
        frames = [frame async for frame in subscription.frames()]
        assert len(frames) == 2
        assert b'"state":"starting"' in frames[0]
        assert b'"state":"ready"' in frames[1]
        late = hub.subscribe(first=("state", {"state": "terminating"}))
        assert len([frame async for frame in late.frames()]) == 1

    async def test_keepalive_comments_fill_silence(self) -> None:
        """A quiet stream yields a keepalive comment after the keepalive interval."""
        hub = EventHub()
        subscription = hub.subscribe()
        stream = subscription.frames(keepalive=0.01)
        assert await asyncio.wait_for(anext(stream), 5) == b": keepalive\n\n"
        await stream.aclose()
