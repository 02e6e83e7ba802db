"""Counters and lists with Agones' rules (pure: values in, new values or `Refused` out).

The rules and refusal texts are those of Agones' SDK server (pkg/sdkserver, v1.49.0): a count
stays within 0…capacity, a list holds unique values and at most `capacity` of them, a list's
capacity is within 0…1000. Where Agones' cluster SDK server and its local one differ, the
cluster's wins, since that is what a game met in production: a counter update with nothing in
it is refused, lowering a counter's capacity below its count lowers the count, and replacing a
list's values keeps the values it already had in their order and appends the new ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

LIST_MAX_CAPACITY = 1000
DEFAULT_CAPACITY = 1000  # Agones' default for a counter or list declared without one
LIST_FIELDS = frozenset({"name", "capacity", "values"})


class Refused(Exception):
    """An SDK call Agones refuses (the facade answers 500, code 2, with this message)."""


@dataclass(frozen=True)
class Counter:
    count: int
    capacity: int


@dataclass(frozen=True)
class ListState:
    capacity: int
    values: tuple[str, ...]


def update_counter(
    name: str, counter: Counter, *, count: int | None, capacity: int | None, diff: int
) -> Counter:
    """`PATCH /v1beta1/counters/{name}`: set the capacity, then the count, then add `diff`."""
    if count is None and capacity is None and diff == 0:
        raise Refused(f"invalid argument. Malformed CounterUpdateRequest for Counter {name}")
    new_capacity = counter.capacity
    new_count = counter.count
    if capacity is not None:
        if capacity < 0:
            raise Refused(
                "out of range. Capacity must be greater than or equal to 0. "
                f"Found Capacity: {capacity}"
            )
        new_capacity = capacity
        new_count = min(new_count, new_capacity)
    if count is not None:
        _check_count(count, new_capacity)
        new_count = count
    if diff != 0:
        new_count += diff
        _check_count(new_count, new_capacity)
    return Counter(new_count, new_capacity)


def _check_count(count: int, capacity: int) -> None:
    if count < 0 or count > capacity:
        raise Refused(
            "out of range. Count must be within range [0,Capacity]. "
            f"Found Count: {count}, Capacity: {capacity}"
        )


def check_list_capacity(capacity: int) -> None:
    if capacity < 0 or capacity > LIST_MAX_CAPACITY:
        raise Refused(
            f"out of range. Capacity must be within range [0,{LIST_MAX_CAPACITY}]. "
            f"Found Capacity: {capacity}"
        )


def check_add(name: str, values: Sequence[str], capacity: int, value: str) -> None:
    """`:addValue`: refused at capacity or for a value already in the list."""
    if len(values) >= capacity:
        raise Refused(
            "out of range. No available capacity. "
            f"Current Capacity: {capacity}, List Size: {len(values)}"
        )
    if value in values:
        raise Refused(f"already exists. Value: {value} already in List: {name}")


def check_remove(name: str, values: Sequence[str], value: str) -> None:
    if value not in values:
        raise Refused(f"not found. Value: {value} not found in List: {name}")


def update_list(
    current: ListState, mask: Iterable[str], *, capacity: int, values: Sequence[str]
) -> ListState:
    """`PATCH /v1beta1/lists/{name}`: the fields named by `mask` take the request's values (a
    masked field left out of the request takes its default, as Agones documents); values beyond
    the capacity are dropped from the end."""
    paths = list(mask)
    bad = [p for p in paths if p not in LIST_FIELDS]
    if bad:
        raise Refused(
            f"invalid argument. Field Mask Path(s): {bad} are invalid for List. "
            "Use valid field name(s): name, capacity, values"
        )
    check_list_capacity(capacity)
    new_capacity = capacity if "capacity" in paths else current.capacity
    new_values = list(current.values)
    if "values" in paths:
        wanted = dict.fromkeys(values)  # unique, in request order
        new_values = [v for v in current.values if v in wanted]
        kept = set(new_values)
        new_values += [v for v in wanted if v not in kept]
    return ListState(new_capacity, tuple(new_values[:new_capacity]))
