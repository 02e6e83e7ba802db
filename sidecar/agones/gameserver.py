"""The GameServer behind the facade: the SDK calls of SPEC §10 applied to the lifecycle, and the
object Agones would show for it.

What lives here and nowhere else: labels and annotations, the alpha player capacity, counters
and the lists other than the players list, the resource version. What is only a view: the state
(state.py, from the lifecycle), the players and the players list (the lifecycle's roster, the
same one `/v1/players` changes), addresses and ports (the platform's variables).

Bounded like a Kubernetes object (SPEC §11): a change the game makes (label, annotation,
player, counter, list, capacity) that would make the compact JSON larger than
MAX_GAMESERVER_BYTES is refused (`Refused`: 500, code 2) and changes nothing, whichever API made
it; a roster change through the local API is refused the same way (`RosterFull`: 422 there), and
so is one that would put more players in the players list than its capacity.
The check renders nothing: the size is kept exact change by change (each change knows the bytes
it adds), and re-learnt from a rendering only after the lifecycle changed the roster. Rendering
happens when someone reads, once per change, and that one rendering is what GET and every
watcher are sent. Lifecycle moves (the state's name, the deletion timestamp, the version's
digits) are never refused, so they may take it a few bytes past the bound.

Calls after a stop is decided (SPEC §10): Ready, Allocate and Reserve change nothing (the SDKs
retry anything but a 200, so they answer 200 `{}`); Shutdown is idempotent; players, counters,
lists, labels and health keep working.

Over 450 lines on purpose: every field of the object, each change to it and the bytes that
change adds stand in one file, so the size the bound checks cannot drift from the rendering
(`_object` renders what the `_*_size` helpers count). What could leave has: the rules of counters
and lists (counters.py), metadata keys (metadata.py), the state mapping (state.py), the calls'
transport-free surface (sdk.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.agones import counters as rules
from sidecar.agones.counters import Counter, ListState, Refused
from sidecar.agones.manifest import PLAYER_ID_MAX, GameServerManifest, HealthSpec
from sidecar.agones.metadata import (
    ANNOTATIONS_MAX_BYTES,
    annotations_size,
    key_problem,
    label_value_problem,
    sdk_key,
)
from sidecar.agones.proto_json import AgonesError, dumps, int64, invalid_argument
from sidecar.agones.state import GameServerState, agones_state
from sidecar.deployment import DeploymentInfo
from sidecar.errors import ConfigError
from sidecar.lifecycle import ROSTER_CAP, Change, Lifecycle, ReadySource, RosterFull, State

# Reserve(0) holds "until the next Ready or Allocate". The lifecycle's hold is a deadline, so an
# open-ended one is ten years (the longest duration a setting may have), not infinity: status
# and metrics show the seconds left as numbers.
OPEN_ENDED_HOLD = 10 * 365 * 86400.0
PLAYERS_LIST_CAPACITY = rules.DEFAULT_CAPACITY  # the players list without a manifest's
SHUTDOWN_DETAIL = "the game called Shutdown() through the Agones SDK"
# Kubernetes keeps an object under etcd's 1.5 MiB request limit; Agones' GameServers live there.
# Unbounded, 152 list values of 300 KB made a 45 MB object re-sent on every change.
MAX_GAMESERVER_BYTES = 1024 * 1024
_VERSION_AT = b'"resource_version":"'


class Cancellable(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Cancellable]


@dataclass(frozen=True)
class FacadeOptions:
    """What the facade takes from the settings (config.Settings' agones_* fields)."""

    players_list: str = "players"
    auto_allocate: bool = True
    manifest: GameServerManifest | None = None
    health_timeout: float = 30.0  # the effective one (the manifest's spec.health applied)


def check_text(value: str, what: str) -> None:
    """Whatever the transport, a string the GameServer keeps must be text it can write out as
    UTF-8: a lone surrogate (a JSON `\\ud800` escape) would break every later rendering."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise invalid_argument(f"{what} is not text: it holds a lone UTF-16 surrogate") from None


def check_player_id(player_id: str) -> None:
    if not 1 <= len(player_id) <= PLAYER_ID_MAX or not player_id.isprintable():
        raise invalid_argument(
            f"playerID must be 1-{PLAYER_ID_MAX} printable characters (the sidecar's roster rule)"
        )


class GameServer:
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
        self.options = options
        self._wall_clock = wall_clock
        self._call_later = call_later
        self.pings = 0  # health pings received, for the record
        manifest = options.manifest
        self.name = deployment.request_id or "local"
        self.uid = deployment.request_id or str(uuid.uuid4())
        self.creation_timestamp = int(wall_clock() - lifecycle.uptime())
        self.deletion_timestamp = 0
        self.address = deployment.public_ip or "127.0.0.1"
        self.ports = [
            {"name": p.name, "port": p.external if p.external is not None else p.internal}
            for p in deployment.ports
            if p.external is not None or p.internal is not None
        ]
        self.labels: dict[str, str] = dict(manifest.labels) if manifest else {}
        self.annotations: dict[str, str] = dict(manifest.annotations) if manifest else {}
        self.health_spec = self._health_spec(manifest, options.health_timeout)
        # Health pings before spec.health's initial delay count from the delay's end (below).
        self._health_delay_until: float | None = None
        if manifest is not None and manifest.health is not None and manifest.health_sets_timer:
            self._health_delay_until = lifecycle.started_at + manifest.health.initial_delay_seconds
        self._delayed_ping: Cancellable | None = None
        self.player_capacity = (manifest.player_capacity if manifest else None) or 0
        self.counters: dict[str, Counter] = dict(manifest.counters) if manifest else {}
        self.lists: dict[str, ListState] = dict(manifest.lists) if manifest else {}
        players = self.lists.pop(options.players_list, None)
        self.players_list_capacity = players.capacity if players else PLAYERS_LIST_CAPACITY
        seeded = (*(players.values if players else ()), *(manifest.player_ids if manifest else ()))
        if seeded:  # checked with the settings (GameServerManifest.roster_problem)
            lifecycle.set_players(ids=list(dict.fromkeys(seeded)))
        # The rendering, once per change: `_content` is the compact JSON with an empty
        # resource_version (what "changed" compares), `_body` the same with the version in.
        self._version = 1
        self._content: bytes | None = None
        self._body = b""
        self._shown_state: GameServerState | None = None
        self._stale = True  # something changed since the last rendering
        # The size of `_content` as it would render now, kept exact change by change so that the
        # bound costs no rendering; None when the lifecycle changed the roster (render to know).
        self._content_size: int | None = None
        self._admitted_roster: tuple[int, int] | None = None  # (count, content size)
        self._change_listeners: list[Callable[[], None]] = []
        size = len(self.body())
        if size > MAX_GAMESERVER_BYTES and manifest is not None:
            raise ConfigError(
                "SIDECAR_AGONES_GAMESERVER",
                f"{manifest.path}: the GameServer it describes would be {size} bytes of JSON, "
                f"more than {MAX_GAMESERVER_BYTES} (1 MiB, a Kubernetes object's limit)",
            )
        lifecycle.on_change(self._lifecycle_changed)
        lifecycle.limit_roster(self._roster_fits)

    @staticmethod
    def _health_spec(manifest: GameServerManifest | None, timeout: float) -> HealthSpec:
        if manifest is not None and manifest.health is not None:
            return manifest.health
        # No spec.health: show the sidecar's own rule in Agones' terms (one period of the
        # whole timeout, armed by the first ping).
        seconds = max(0, round(timeout))
        return HealthSpec(
            disabled=seconds == 0,
            period_seconds=seconds,
            failure_threshold=1 if seconds else 0,
            initial_delay_seconds=0,
        )

    # --- lifecycle calls -----------------------------------------------------------------
    @property
    def _stop_decided(self) -> bool:
        return self.lifecycle.stop_decided or self.lifecycle.state is State.TERMINATING

    def ready(self) -> None:
        if self._stop_decided:
            return
        lifecycle = self.lifecycle
        lifecycle.ready(ReadySource.AGONES)
        self._end_hold()
        if self.options.auto_allocate:
            lifecycle.match_started()

    def allocate(self) -> None:
        if self._stop_decided:
            return
        self._end_hold()
        self.lifecycle.match_started()

    def reserve(self, seconds: int) -> None:
        if self._stop_decided:
            return
        self.lifecycle.hold(float(seconds) if seconds > 0 else OPEN_ENDED_HOLD)

    def shutdown(self) -> None:
        self.lifecycle.shutdown_requested(SHUTDOWN_DETAIL)

    def health(self, pings: int) -> None:
        if pings <= 0:
            return
        self.pings += pings
        lifecycle = self.lifecycle
        lifecycle.heartbeat()
        delay_until = self._health_delay_until
        # Agones starts counting missed pings only after initialDelaySeconds: a ping in the
        # delay counts as if it came at its end.
        if delay_until is not None and lifecycle.now < delay_until and self._delayed_ping is None:
            call_later = self._call_later or asyncio.get_running_loop().call_later
            self._delayed_ping = call_later(delay_until - lifecycle.now, self._ping_after_delay)

    def _ping_after_delay(self) -> None:
        self._health_delay_until = None
        self.lifecycle.heartbeat()

    def close(self) -> None:
        if self._delayed_ping is not None:
            self._delayed_ping.cancel()

    def _end_hold(self) -> None:
        # Only a hold that is on: hold(0) also restarts the idle windows.
        if self.lifecycle.hold_active:
            self.lifecycle.hold(0)

    def on_transition(self, old: State, new: State) -> None:
        if new in (State.STOPPED, State.TERMINATING) and not self.deletion_timestamp:
            # The platform is deleting the deployment: Kubernetes' deletionTimestamp.
            self.deletion_timestamp = int(self._wall_clock())
            self._stale = True
            self._content_size = None

    # --- metadata --------------------------------------------------------------------------
    def set_label(self, key: str, value: str) -> None:
        check_text(key, "key")
        check_text(value, "value")
        full = sdk_key(key)
        problem = key_problem(full) or label_value_problem(value)
        if problem is not None:
            raise invalid_argument(f"invalid label {full!r}: {problem}")
        self._set_text(self.labels, full, value)

    def set_annotation(self, key: str, value: str) -> None:
        check_text(key, "key")
        check_text(value, "value")
        full = sdk_key(key)
        problem = key_problem(full)
        if problem is not None:
            raise invalid_argument(f"invalid annotation {full!r}: {problem}")
        annotations = {**self.annotations, full: value}
        if annotations_size(annotations) > ANNOTATIONS_MAX_BYTES:
            raise invalid_argument(
                f"annotations may hold at most {ANNOTATIONS_MAX_BYTES // 1024} KiB in total"
            )
        self._set_text(self.annotations, full, value)

    # --- players (alpha) -------------------------------------------------------------------
    def player_connect(self, player_id: str) -> bool:
        check_player_id(player_id)
        lifecycle = self.lifecycle
        if player_id in lifecycle.player_ids:
            return False
        if self.player_capacity and lifecycle.player_count >= self.player_capacity:
            raise Refused("players are already at capacity")
        self._connect(player_id)
        return True

    def player_disconnect(self, player_id: str) -> bool:
        if player_id not in self.lifecycle.player_ids:
            return False
        self.lifecycle.player_disconnected(player_id)
        return True

    def _connect(self, player_id: str) -> None:
        try:
            self.lifecycle.player_connected(player_id)
        except RosterFull as exc:
            raise Refused(str(exc)) from None

    def is_connected(self, player_id: str) -> bool:
        return player_id in self.lifecycle.player_ids

    def set_player_capacity(self, count: int) -> None:
        if count < 0:
            raise Refused(f"out of range. Capacity must be >= 0. Found Capacity: {count}")
        delta = _digits(count) - _digits(self.player_capacity)
        self._admit(delta)
        self.player_capacity = count
        self._grew(delta)

    # --- counters and lists (beta) ---------------------------------------------------------
    def get_counter(self, name: str) -> Counter:
        counter = self.counters.get(name)
        if counter is None:
            raise Refused(f"counter not found: {name}")
        return counter

    def update_counter(
        self, name: str, *, count: int | None, capacity: int | None, diff: int
    ) -> Counter:
        updated = rules.update_counter(
            name, self.get_counter(name), count=count, capacity=capacity, diff=diff
        )
        delta = _counter_size(updated) - _counter_size(self.counters[name])
        self._admit(delta)
        self.counters[name] = updated
        self._grew(delta)
        return updated

    def get_list(self, name: str) -> ListState:
        if name == self.options.players_list:
            return ListState(self.players_list_capacity, tuple(self.lifecycle.player_ids))
        found = self.lists.get(name)
        if found is None:
            raise Refused(f"list not found: {name}")
        return found

    def update_list(
        self, name: str, mask: list[str], *, capacity: int, values: list[str]
    ) -> ListState:
        for value in values:
            check_text(value, "a value")
        updated = rules.update_list(self.get_list(name), mask, capacity=capacity, values=values)
        if name != self.options.players_list:
            old = self.lists[name]
            self._set_list(name, updated, _values_size(updated) - _values_size(old))
            return updated
        for value in updated.values:
            check_player_id(value)
        if len(updated.values) > ROSTER_CAP:  # unreachable while lists hold <= 1000 values
            raise Refused(f"the roster holds at most {ROSTER_CAP} players")
        before = self.players_list_capacity
        delta = _digits(updated.capacity) - _digits(before)
        self._admit(delta)
        self.players_list_capacity = updated.capacity
        self._grew(delta)
        if list(updated.values) != self.lifecycle.player_ids:
            try:
                self.lifecycle.set_players(ids=updated.values)  # its size: _roster_fits
            except RosterFull as exc:
                self.players_list_capacity = before  # all or nothing
                self._grew(-delta)
                raise Refused(str(exc)) from None
        return self.get_list(name)

    def add_list_value(self, name: str, value: str) -> ListState:
        check_text(value, "value")
        current = self.get_list(name)
        rules.check_add(name, current.values, current.capacity, value)
        if name == self.options.players_list:
            check_player_id(value)
            self._connect(value)
            return self.get_list(name)
        updated = ListState(current.capacity, (*current.values, value))
        self._set_list(name, updated, _text_size(value) + (1 if current.values else 0))
        return updated

    def remove_list_value(self, name: str, value: str) -> ListState:
        current = self.get_list(name)
        rules.check_remove(name, current.values, value)
        if name == self.options.players_list:
            self.lifecycle.player_disconnected(value)
            return self.get_list(name)
        updated = ListState(current.capacity, tuple(v for v in current.values if v != value))
        self._set_list(name, updated, -_text_size(value) - (1 if updated.values else 0))
        return updated

    # --- the object ------------------------------------------------------------------------
    @property
    def state(self) -> GameServerState:
        lc = self.lifecycle
        return agones_state(lc.state, lc.decision, lc.hold_active)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after each change the GameServer itself holds (labels, annotations,
        capacities, counters, lists); the lifecycle announces the rest."""
        self._change_listeners.append(listener)

    @property
    def version(self) -> int:
        """The resource_version of `body()` (call that first)."""
        return self._version

    def snapshot(self) -> dict[str, Any]:
        """The GameServer as a dict (tests and tools; the routes send `body()`)."""
        gameserver: dict[str, Any] = json.loads(self.body())
        return gameserver

    def body(self) -> bytes:
        """The GameServer as Agones' gateway writes it (compact JSON), rendered once per change
        and shared by GET and every watcher; resource_version moves whenever anything else in it
        changed since the last rendering."""
        state = self.state
        if self._stale or state is not self._shown_state:
            self._keep(self._render(), state)
        return self._body

    def _keep(self, content: bytes, state: GameServerState) -> None:
        self._stale = False
        self._shown_state = state
        self._content_size = len(content)
        if content == self._content:
            return
        if self._content is not None:
            self._version += 1
        self._content = content
        at = content.index(_VERSION_AT) + len(_VERSION_AT)  # the first: name/uid are escaped
        self._body = b"".join((content[:at], str(self._version).encode(), content[at:]))

    def _render(self, ids: list[str] | None = None, count: int | None = None) -> bytes:
        return dumps(self._object(ids, count))

    def size(self) -> int:
        """The size of `body()` as it would render now, without rendering when it is known."""
        if self._content_size is None or self.state is not self._shown_state:
            return len(self.body())
        return self._content_size + _digits(self._version + (1 if self._stale else 0))

    def _known_content_size(self) -> int:
        if self._content_size is None or self.state is not self._shown_state:
            self.body()  # the lifecycle changed the roster or the state: know it again
        assert self._content_size is not None
        return self._content_size

    def _too_big(self, delta: int) -> str | None:
        """Why a change that grows the rendering by `delta` bytes may not be made (a change
        that does not grow it never is)."""
        if delta <= 0:
            return None
        size = self._known_content_size() + delta + _digits(self._version + 1)
        if size <= MAX_GAMESERVER_BYTES:
            return None
        return (
            f"the Agones GameServer would be {size} bytes of JSON, more than "
            f"{MAX_GAMESERVER_BYTES} (1 MiB, a Kubernetes object's limit): the change was not made"
        )

    def _admit(self, delta: int) -> None:
        why = self._too_big(delta)
        if why is not None:
            raise Refused(why)

    def _grew(self, delta: int) -> None:
        """A change of `delta` bytes was made: known without rendering; rendered for a reader."""
        self._stale = True
        if self._content_size is not None:
            self._content_size += delta
        for listener in self._change_listeners:
            listener()

    def _set_text(self, items: dict[str, str], key: str, value: str) -> None:
        """A label or annotation: `"key":"value"` in a JSON object."""
        old = items.get(key)
        if old is not None:
            delta = _text_size(value) - _text_size(old)
        else:
            delta = _text_size(key) + 1 + _text_size(value) + (1 if items else 0)
        self._admit(delta)
        items[key] = value
        self._grew(delta)

    def _set_list(self, name: str, updated: ListState, delta: int) -> None:
        delta += _digits(updated.capacity) - _digits(self.lists[name].capacity)
        self._admit(delta)
        self.lists[name] = updated
        self._grew(delta)

    def _roster_fits(self, ids: list[str], count: int) -> str | None:
        """The lifecycle's roster limits, for any roster change through either API. The players
        list holds the ids, and a list holds at most its capacity (Agones' rule, which
        AddListValue applies): a connect through the local API may not overflow it either, or
        the list would show more values than its capacity and a later UpdateList would cut
        them. Then the size: the ids are shown twice (status.players.ids and the list)."""
        capacity = self.players_list_capacity
        if len(ids) > capacity:
            return (
                f"the Agones players list {self.options.players_list!r} (the roster, "
                f"SIDECAR_AGONES_PLAYERS_LIST) holds at most its capacity, {capacity} players; "
                f"this change would make it {len(ids)} (the game may raise the capacity, up to "
                f"{rules.LIST_MAX_CAPACITY}, with UpdateList)"
            )
        current = self.lifecycle.player_ids
        if len(ids) == len(current) + 1 and ids[:-1] == current:  # one connect
            added = _text_size(ids[-1]) + (1 if current else 0)
        else:
            added = len(dumps(ids)) - len(dumps(current))
        delta = 2 * added + _digits(count) - _digits(self.lifecycle.player_count)
        why = self._too_big(delta)
        if why is None:
            self._admitted_roster = (count, self._known_content_size() + delta)
        return why

    def _lifecycle_changed(self, change: Change) -> None:
        if change is Change.STATUS:
            return  # the heartbeat path: nothing the GameServer shows
        self._stale = True
        admitted, self._admitted_roster = self._admitted_roster, None
        if admitted is not None and admitted[0] == self.lifecycle.player_count:
            self._content_size = admitted[1]  # the roster change _roster_fits measured
        else:
            self._content_size = None  # a player left, a hold...: render when it matters

    def _object(self, ids: list[str] | None, count: int | None) -> dict[str, Any]:
        """The GameServer with an empty resource_version; `ids`/`count` stand for a roster
        the lifecycle is about to take."""
        lc = self.lifecycle
        if ids is None:
            ids = lc.player_ids
        if count is None:
            count = lc.player_count
        health = self.health_spec
        return {
            "object_meta": {
                "name": self.name,
                "namespace": "default",
                "uid": self.uid,
                "resource_version": "",
                "generation": "1",
                "creation_timestamp": int64(self.creation_timestamp),
                "deletion_timestamp": int64(self.deletion_timestamp),
                "annotations": self.annotations,
                "labels": self.labels,
            },
            "spec": {
                "health": {
                    "disabled": health.disabled,
                    "period_seconds": health.period_seconds,
                    "failure_threshold": health.failure_threshold,
                    "initial_delay_seconds": health.initial_delay_seconds,
                }
            },
            "status": {
                "state": self.state.value,
                "address": self.address,
                "addresses": [{"type": "ExternalIP", "address": self.address}],
                "ports": self.ports,
                "players": {
                    "count": int64(count),
                    "capacity": int64(self.player_capacity),
                    "ids": ids,
                },
                "counters": {
                    name: {"count": int64(c.count), "capacity": int64(c.capacity)}
                    for name, c in self.counters.items()
                },
                "lists": {
                    **{
                        name: {"capacity": int64(item.capacity), "values": list(item.values)}
                        for name, item in self.lists.items()
                    },
                    self.options.players_list: {
                        "capacity": int64(self.players_list_capacity),
                        "values": ids,
                    },
                },
            },
        }


def _text_size(text: str) -> int:
    """The bytes of one JSON string as `wire.dumps` writes it."""
    return len(dumps(text))


def _digits(number: int) -> int:
    return len(int64(number))


def _counter_size(counter: Counter) -> int:
    return _digits(counter.count) + _digits(counter.capacity)


def _values_size(item: ListState) -> int:
    return len(dumps(list(item.values)))


def check_manifest_size(manifest: GameServerManifest, players_list: str) -> None:
    """ConfigError when the GameServer `manifest` starts would be over the bound (SPEC §11), so
    that check-config and start-up refuse it before anything is bound. Without the platform's
    variables: the GameServer also checks itself when the facade builds it."""
    from sidecar.lifecycle import TimerSettings

    lifecycle = Lifecycle(TimerSettings(), time.monotonic)
    GameServer(lifecycle, FacadeOptions(players_list, manifest=manifest), DeploymentInfo())


__all__ = ["AgonesError", "FacadeOptions", "GameServer"]
