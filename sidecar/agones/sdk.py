"""The Agones SDK core (SPEC §10, §10.1), whatever the transport: the SDK's calls on the
GameServer and the lifecycle, and the watch fan-out. The REST facade (app.py, watch.py) is one
adapter over it; a gRPC transport is another, built the same way. No aiohttp here (an
import-linter contract holds it): calls take and return plain values (`Counter`, `ListState`,
ids, counts), refusals are `Refused` (Agones' code 2) or `AgonesError`, and each adapter writes
its own wire format.

Changes announce themselves, as the lifecycle's do: the lifecycle's through `subscribe` and
`on_change` (a roster or hold change through the local API included), the GameServer's own
(labels, counters, lists, capacities) through `GameServer.on_change`. No adapter tells the watch
anything.

The watch: every watcher of every transport is one `Watcher`, a flag and an event, not a queue.
A change wakes each one once the loop pass ends (the changes one call makes are one update);
woken, a watcher's transport sends the GameServer as it is then, so one that does not read gets
only the latest when it catches up. Updates are also spaced so that the watch sends at most
WATCH_BYTES_PER_SECOND of GameServers: a small one is never held back (700 bytes: 40 µs), while
a flood of changes to a 1 MiB one reaches a reader that keeps up as at most 16 updates a second,
the latest each time, not one copy per change. At most MAX_WATCHERS over all transports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable

from sidecar.agones.counters import Counter, ListState
from sidecar.agones.gameserver import CallLater, FacadeOptions, GameServer
from sidecar.agones.proto_json import AgonesError
from sidecar.deployment import DeploymentInfo
from sidecar.lifecycle import Change, Lifecycle, State

MAX_WATCHERS = 64
# Unspaced, a SetLabel flood on a 1.3 MB GameServer pushed 6.5 GB to one watcher in 45 s.
WATCH_BYTES_PER_SECOND = 16 * 1024 * 1024


class Watcher:
    """One watch stream, of any transport: woken when there is a newer GameServer."""

    def __init__(self) -> None:
        self._pending = True  # the current GameServer, at once
        self._ready = asyncio.Event()
        self._ready.set()
        self.ended = False

    def wake(self) -> None:
        self._pending = True
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def updates(self) -> AsyncGenerator[None, None]:
        """Yields each time the transport should send the GameServer as it is now."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._pending:
                self._pending = False
                yield
            if self.ended:
                return


class GameServerWatch:
    """The fan-out: who watches, and when they are woken."""

    def __init__(self, lifecycle: Lifecycle, gameserver: GameServer) -> None:
        self.lifecycle = lifecycle
        self.gameserver = gameserver
        self.watchers: set[Watcher] = set()
        self._sent_version: int | None = None
        self._pending_update: asyncio.Handle | None = None
        self._next_check_at = 0.0  # loop time: spaced after each update by its size
        self._hold_timer: asyncio.TimerHandle | None = None
        self._closed = False

    def changed(self) -> None:
        """Something the GameServer shows may have changed: update the watchers at the end of
        this loop pass, or once the spacing after the last update is over."""
        if self.watchers and self._pending_update is None and not self._closed:
            loop = asyncio.get_running_loop()
            wait = self._next_check_at - loop.time()
            if wait > 0:
                self._pending_update = loop.call_later(wait, self._update)
            else:
                self._pending_update = loop.call_soon(self._update)

    def subscribe(self) -> Watcher:
        """A new watcher, woken at once; AgonesError (429, code 8) beyond MAX_WATCHERS."""
        if len(self.watchers) >= MAX_WATCHERS:
            raise AgonesError(429, 8, f"{MAX_WATCHERS} watchers are already connected")
        watcher = Watcher()
        if self._closed:
            watcher.end()
        if not self.watchers:
            # Nobody was told of changes while nobody watched: the next check compares with now.
            self.gameserver.body()
            self._sent_version = self.gameserver.version
        self.watchers.add(watcher)
        self._plan_hold_end()
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def close(self) -> None:
        """End every stream (shutdown): each transport's handler then returns."""
        self._closed = True
        for watcher in list(self.watchers):
            watcher.end()
        for timer in (self._pending_update, self._hold_timer):
            if timer is not None:
                timer.cancel()

    def _update(self) -> None:
        self._pending_update = None
        body = self.gameserver.body()  # rendered once here, for every transport
        version = self.gameserver.version
        if version != self._sent_version:
            self._sent_version = version
            for watcher in self.watchers:
                watcher.wake()
            loop = asyncio.get_running_loop()
            self._next_check_at = loop.time() + len(body) / WATCH_BYTES_PER_SECOND
        self._plan_hold_end()

    def _plan_hold_end(self) -> None:
        # Nothing announces the end of a hold (Reserved -> back): a check plans one for it.
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        left = self.lifecycle.timers_left().get("hold")
        if left is not None and self.watchers:
            loop = asyncio.get_running_loop()
            # Just after the end: at the exact deadline the hold still counts as active.
            self._hold_timer = loop.call_later(left + 0.001, self.changed)


class AgonesSdk:
    """The calls of Agones' SDK services (sdk.proto, alpha.proto, beta.proto), by their names."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        options: FacadeOptions,
        deployment: DeploymentInfo,
        *,
        wall_clock: Callable[[], float] = time.time,
        call_later: CallLater | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.gameserver = GameServer(
            lifecycle, options, deployment, wall_clock=wall_clock, call_later=call_later
        )
        self.watch = GameServerWatch(lifecycle, self.gameserver)
        lifecycle.subscribe(self._on_transition)
        lifecycle.on_change(self._on_change)
        self.gameserver.on_change(self.watch.changed)

    def close(self) -> None:
        self.watch.close()
        self.gameserver.close()

    def _on_transition(self, old: State, new: State) -> None:
        self.gameserver.on_transition(old, new)
        self.watch.changed()

    def _on_change(self, change: Change) -> None:
        if change is not Change.STATUS:  # a heartbeat changes nothing the GameServer shows
            self.watch.changed()  # cheap: nothing is done without a watcher, and once a pass

    # --- sdk.proto -------------------------------------------------------------------------
    def ready(self) -> None:
        self.gameserver.ready()

    def allocate(self) -> None:
        self.gameserver.allocate()

    def shutdown(self) -> None:
        self.gameserver.shutdown()

    def reserve(self, seconds: int) -> None:
        self.gameserver.reserve(seconds)

    def health(self, pings: int = 1) -> None:
        self.gameserver.health(pings)

    def get_game_server(self) -> bytes:
        """The GameServer as compact proto-JSON, rendered once per change (shared bytes)."""
        return self.gameserver.body()

    def watch_game_server(self) -> Watcher:
        """A watcher; its transport calls `unwatch` when the stream ends."""
        return self.watch.subscribe()

    def unwatch(self, watcher: Watcher) -> None:
        self.watch.unsubscribe(watcher)

    def set_label(self, key: str, value: str) -> None:
        self.gameserver.set_label(key, value)

    def set_annotation(self, key: str, value: str) -> None:
        self.gameserver.set_annotation(key, value)

    # --- alpha.proto: players --------------------------------------------------------------
    def player_connect(self, player_id: str) -> bool:
        return self.gameserver.player_connect(player_id)

    def player_disconnect(self, player_id: str) -> bool:
        return self.gameserver.player_disconnect(player_id)

    def set_player_capacity(self, count: int) -> None:
        self.gameserver.set_player_capacity(count)

    def get_player_capacity(self) -> int:
        return self.gameserver.player_capacity

    def get_player_count(self) -> int:
        return self.lifecycle.player_count

    def is_player_connected(self, player_id: str) -> bool:
        return self.gameserver.is_connected(player_id)

    def get_connected_players(self) -> list[str]:
        return self.lifecycle.player_ids

    # --- beta.proto: counters and lists ----------------------------------------------------
    def get_counter(self, name: str) -> Counter:
        return self.gameserver.get_counter(name)

    def update_counter(
        self, name: str, *, count: int | None, capacity: int | None, diff: int
    ) -> Counter:
        return self.gameserver.update_counter(name, count=count, capacity=capacity, diff=diff)

    def get_list(self, name: str) -> ListState:
        return self.gameserver.get_list(name)

    def update_list(
        self, name: str, mask: list[str], *, capacity: int, values: list[str]
    ) -> ListState:
        return self.gameserver.update_list(name, mask, capacity=capacity, values=values)

    def add_list_value(self, name: str, value: str) -> ListState:
        return self.gameserver.add_list_value(name, value)

    def remove_list_value(self, name: str, value: str) -> ListState:
        return self.gameserver.remove_list_value(name, value)
