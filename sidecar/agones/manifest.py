"""SIDECAR_AGONES_GAMESERVER: the GameServer manifest an Agones user already has (SPEC §10).

Read once, when the settings load; a file that cannot be used raises ValueError with the field
and the problem, which config.py turns into exit 2 naming the variable.

What is read, in Kubernetes' camelCase spelling (the way `kubectl` and Agones' local
`sdk-server --file` take it):

    metadata.labels, metadata.annotations   the initial object_meta (Kubernetes' key rules)
    spec.health                             disabled, periodSeconds, failureThreshold,
                                            initialDelaySeconds (Agones' defaults 5, 3, 5)
    spec.players.initialCapacity            the alpha player capacity
    spec.counters, spec.lists               {name: {count, capacity}}, {name: {capacity, values}}
    status.counters, status.lists,          as Agones' local mode reads them; an entry here
    status.players {capacity, ids}          wins over the spec's of the same name

A Fleet or GameServerSet manifest works too: its `spec.template` is the GameServer. Every other
field is ignored, as Kubernetes ignores unknown fields, but the file must look like Agones': a
`kind` other than those three, an `apiVersion` outside `agones.dev/`, or none of the top-level
fields at all is refused (another file named by mistake). Keys of what is read are strings: an
unquoted YAML `1:`, `true:` or `null:` is refused rather than spelled as text. JSON is told
from YAML as Kubernetes' decoder does (JSON starts with `{`); YAML is parsed with PyYAML,
imported only for a YAML file. How the file is read, and the bounds on it (a regular file of
at most 1 MiB, 64 levels), are manifest_file.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.agones.counters import DEFAULT_CAPACITY, LIST_MAX_CAPACITY, Counter, ListState
from sidecar.agones.manifest_file import read_document
from sidecar.agones.metadata import ANNOTATIONS_MAX_BYTES, annotations_size, key_problem
from sidecar.agones.metadata import label_value_problem as _label_value_problem

PLAYER_ID_MAX = 128  # the local API's rule (SPEC §7): one roster, one rule
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class HealthSpec:
    """`spec.health`, with Agones' defaults for the fields a manifest leaves out."""

    disabled: bool = False
    period_seconds: int = 5
    failure_threshold: int = 3
    initial_delay_seconds: int = 5

    @property
    def timeout(self) -> float:
        """The heartbeat silence Agones tolerates: 0 (off) when disabled."""
        return 0.0 if self.disabled else float(self.period_seconds * self.failure_threshold)


@dataclass(frozen=True, eq=False)
class GameServerManifest:
    path: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    health: HealthSpec | None = None
    # Whether spec.health sets the health timer (SPEC §10: unless SIDECAR_HEALTH_TIMEOUT is set).
    health_sets_timer: bool = True
    player_capacity: int | None = None
    player_ids: tuple[str, ...] = ()
    counters: Mapping[str, Counter] = field(default_factory=dict)
    lists: Mapping[str, ListState] = field(default_factory=dict)

    def __str__(self) -> str:  # check-config shows the file
        return self.path

    def without_health_timer(self) -> GameServerManifest:
        return replace(self, health_sets_timer=False)

    def roster_problem(self, players_list: str) -> str | None:
        """Why the players this manifest seeds cannot be the sidecar's roster (the list named
        `players_list` and status.players.ids: ids of 1-128 printable characters, at most the
        list's capacity of them, as a list holds), or None."""
        players = self.lists.get(players_list)
        capacity = players.capacity if players else DEFAULT_CAPACITY
        ids = dict.fromkeys((*(players.values if players else ()), *self.player_ids))
        if len(ids) > capacity:
            return (
                f"{len(ids)} players (list {players_list!r} and status.players.ids) is more "
                f"than the capacity of the list {players_list!r}, {capacity}: that list is the "
                "roster (SIDECAR_AGONES_PLAYERS_LIST)"
            )
        for player_id in ids:
            if not 1 <= len(player_id) <= PLAYER_ID_MAX or not player_id.isprintable():
                return (
                    f"player id {player_id[:40]!r} (list {players_list!r} or status.players.ids)"
                    f" must be 1-{PLAYER_ID_MAX} printable characters"
                )
        return None


def load_manifest(path: str) -> GameServerManifest:
    """Read and check the file at `path`; ValueError says what is wrong with it."""
    document = read_document(path)
    try:
        return _manifest(path, document)
    except _Invalid as exc:
        raise ValueError(f"{path}: {exc}") from None


class _Invalid(Exception):
    pass


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(f"{where} must be an object, got {_kind(value)}")
    for key in value:
        # YAML reads `1:`, `true:` or `null:` as a number, a boolean or null, which Kubernetes
        # turns into text of its own spelling (`yes:` becomes "true"), so that two keys may
        # collide: refused, since quoting the key says what is meant.
        if not isinstance(key, str):
            raise _Invalid(
                f"{where} has a key that is {_kind(key)}, not a string: quote it in YAML "
                '(e.g. "1", "true")'
            )
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def _whole(value: Any, where: str, *, maximum: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise _Invalid(f"{where} must be a whole number from 0 to {maximum}, got {_kind(value)}")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, item in _object(value, where).items():
        if not isinstance(item, str):
            raise _Invalid(f"{where}.{key} must be a string, got {_kind(item)} (quote it in YAML)")
        problem = key_problem(key)
        if problem is not None:
            raise _Invalid(f"{where}: key {key[:60]!r}: {problem}")
        result[key] = item
    return result


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"{where} must be a list of strings")
    if len(set(value)) != len(value):
        raise _Invalid(f"{where} holds the same value twice (Kubernetes keeps it as a set)")
    return tuple(value)


def _counters(value: Any, where: str) -> dict[str, Counter]:
    counters: dict[str, Counter] = {}
    for name, entry in _object(value, where).items():
        entry = _object(entry, f"{where}.{name}")
        count = _whole(entry.get("count", 0), f"{where}.{name}.count")
        capacity = _whole(entry.get("capacity", DEFAULT_CAPACITY), f"{where}.{name}.capacity")
        if count > capacity:
            raise _Invalid(f"{where}.{name}: count {count} is above its capacity {capacity}")
        counters[name] = Counter(count, capacity)
    return counters


def _lists(value: Any, where: str) -> dict[str, ListState]:
    lists: dict[str, ListState] = {}
    for name, entry in _object(value, where).items():
        entry = _object(entry, f"{where}.{name}")
        capacity = _whole(
            entry.get("capacity", DEFAULT_CAPACITY),
            f"{where}.{name}.capacity",
            maximum=LIST_MAX_CAPACITY,
        )
        values = _strings(entry.get("values"), f"{where}.{name}.values")
        if len(values) > capacity:
            raise _Invalid(f"{where}.{name}: {len(values)} values is more than its capacity")
        lists[name] = ListState(capacity, values)
    return lists


def _health(value: Any) -> HealthSpec:
    health = _object(value, "spec.health")
    disabled = health.get("disabled", False)
    if not isinstance(disabled, bool):
        raise _Invalid(f"spec.health.disabled must be true or false, got {_kind(disabled)}")
    defaults = HealthSpec()
    return HealthSpec(
        disabled=disabled,
        period_seconds=_whole(
            health.get("periodSeconds", defaults.period_seconds),
            "spec.health.periodSeconds",
            maximum=INT32_MAX,
        ),
        failure_threshold=_whole(
            health.get("failureThreshold", defaults.failure_threshold),
            "spec.health.failureThreshold",
            maximum=INT32_MAX,
        ),
        initial_delay_seconds=_whole(
            health.get("initialDelaySeconds", defaults.initial_delay_seconds),
            "spec.health.initialDelaySeconds",
            maximum=INT32_MAX,
        ),
    )


KINDS = ("GameServer", "Fleet", "GameServerSet")
TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def _manifest(path: str, document: Any) -> GameServerManifest:
    root = _object(document, "the manifest")
    if not root:
        raise _Invalid("the manifest is empty")
    # Any mapping used to pass as an empty GameServer: another file named by mistake (a
    # docker-compose.yml, a Deployment) would start the game with none of its settings.
    kind = root.get("kind")
    if kind is not None and kind not in KINDS:
        raise _Invalid(f"kind must be {', '.join(KINDS)}, got {_kind(kind)}")
    api_version = root.get("apiVersion")
    if api_version is not None and not str(api_version).startswith("agones.dev/"):
        raise _Invalid(f"apiVersion must be Agones' (agones.dev/v1), got {_kind(api_version)}")
    if not TOP_LEVEL & root.keys():
        raise _Invalid(
            "the manifest has none of apiVersion, kind, metadata, spec, status: "
            "it is not a GameServer"
        )
    if root.get("kind") in ("Fleet", "GameServerSet"):
        # A fleet's GameServers are made from its template.
        root = _object(_object(root.get("spec"), "spec").get("template"), "spec.template")
    metadata = _object(root.get("metadata"), "metadata")
    spec = _object(root.get("spec"), "spec")
    status = _object(root.get("status"), "status")
    labels = _string_map(metadata.get("labels"), "metadata.labels")
    for key, label in labels.items():
        problem = _label_value_problem(label)
        if problem is not None:
            raise _Invalid(f"metadata.labels.{key}: {problem}")
    annotations = _string_map(metadata.get("annotations"), "metadata.annotations")
    if annotations_size(annotations) > ANNOTATIONS_MAX_BYTES:
        raise _Invalid(f"metadata.annotations: more than {ANNOTATIONS_MAX_BYTES // 1024} KiB")
    players = _object(spec.get("players"), "spec.players")
    status_players = _object(status.get("players"), "status.players")
    capacity: int | None = None
    if "initialCapacity" in players:
        capacity = _whole(players["initialCapacity"], "spec.players.initialCapacity")
    if "capacity" in status_players:
        capacity = _whole(status_players["capacity"], "status.players.capacity")
    return GameServerManifest(
        path=path,
        labels=labels,
        annotations=annotations,
        health=_health(spec["health"]) if spec.get("health") is not None else None,
        player_capacity=capacity,
        player_ids=_strings(status_players.get("ids"), "status.players.ids"),
        counters={
            **_counters(spec.get("counters"), "spec.counters"),
            **_counters(status.get("counters"), "status.counters"),
        },
        lists={
            **_lists(spec.get("lists"), "spec.lists"),
            **_lists(status.get("lists"), "status.lists"),
        },
    )
