"""The proto3 binary format of the Agones SDK's gRPC messages (SPEC §10.1), by hand.

The messages of sdk.proto, alpha.proto and beta.proto (copied in sidecar/agones/proto/, the
source these descriptions were written from) are described once, below, as data: field number,
name, kind. `encode` and `decode` walk those descriptions; nothing is generated and there is no
`protobuf` runtime (a build-time generator and a 2 MB runtime for ~25 small messages).
tests/test_agones_grpc_wire.py checks both directions against the official `protobuf` package
and classes `grpcio-tools` generates from those .proto files.

What proto3 needs here and nothing more: varints (int64/int32 two's complement on 10 bytes,
bool), length-delimited strings and messages, repeated strings and messages, `map<string, X>`
(repeated entries {1: key, 2: value}), and the well-known `Int64Value` and `FieldMask`, which
are ordinary messages on the wire. Scalars equal to their default are not written (proto3); on
decode a missing scalar is its default, a missing message is None (so a wrapper tells "not
given" from 0), unknown fields are skipped, and any malformed input is `DecodeError`.

Values: a decoded message is a dict by field name. `encode` takes the same dicts, and int64
values as numbers or as the strings proto-JSON spells them (the GameServer's one rendering,
gameserver.py, is JSON: the gRPC transport encodes that, once per version).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Kinds of scalar field.
STRING = "string"
INT64 = "int64"
INT32 = "int32"
BOOL = "bool"

_VARINT = 0
_I64 = 1
_LEN = 2
_I32 = 5
_U64 = (1 << 64) - 1


class DecodeError(ValueError):
    """Bytes that are not the message they should be."""


@dataclass(frozen=True)
class Field:
    number: int
    name: str
    kind: str | Message  # a scalar kind, or a message (the map's value for a map)
    repeated: bool = False
    map: bool = False  # map<string, kind>


@dataclass(frozen=True)
class Message:
    name: str  # the full proto name, for messages and errors
    fields: tuple[Field, ...] = ()
    by_number: dict[int, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_number", {f.number: f for f in self.fields})


def _msg(name: str, *fields: Field) -> Message:
    return Message(name, fields)


# --- the messages (sdk.proto, alpha.proto, beta.proto, google/protobuf) --------------------------
EMPTY = _msg("agones.dev.sdk.Empty")
KEY_VALUE = _msg("agones.dev.sdk.KeyValue", Field(1, "key", STRING), Field(2, "value", STRING))
DURATION = _msg("agones.dev.sdk.Duration", Field(1, "seconds", INT64))

_OBJECT_META = _msg(
    "agones.dev.sdk.GameServer.ObjectMeta",
    Field(1, "name", STRING),
    Field(2, "namespace", STRING),
    Field(3, "uid", STRING),
    Field(4, "resource_version", STRING),
    Field(5, "generation", INT64),
    Field(6, "creation_timestamp", INT64),
    Field(7, "deletion_timestamp", INT64),
    Field(8, "annotations", STRING, map=True),
    Field(9, "labels", STRING, map=True),
)
_HEALTH = _msg(
    "agones.dev.sdk.GameServer.Spec.Health",
    Field(1, "disabled", BOOL),
    Field(2, "period_seconds", INT32),
    Field(3, "failure_threshold", INT32),
    Field(4, "initial_delay_seconds", INT32),
)
_SPEC = _msg("agones.dev.sdk.GameServer.Spec", Field(1, "health", _HEALTH))
_ADDRESS = _msg(
    "agones.dev.sdk.GameServer.Status.Address",
    Field(1, "type", STRING),
    Field(2, "address", STRING),
)
_PORT = _msg(
    "agones.dev.sdk.GameServer.Status.Port", Field(1, "name", STRING), Field(2, "port", INT32)
)
_PLAYER_STATUS = _msg(
    "agones.dev.sdk.GameServer.Status.PlayerStatus",
    Field(1, "count", INT64),
    Field(2, "capacity", INT64),
    Field(3, "ids", STRING, repeated=True),
)
_COUNTER_STATUS = _msg(
    "agones.dev.sdk.GameServer.Status.CounterStatus",
    Field(1, "count", INT64),
    Field(2, "capacity", INT64),
)
_LIST_STATUS = _msg(
    "agones.dev.sdk.GameServer.Status.ListStatus",
    Field(1, "capacity", INT64),
    Field(2, "values", STRING, repeated=True),
)
_STATUS = _msg(
    "agones.dev.sdk.GameServer.Status",
    Field(1, "state", STRING),
    Field(2, "address", STRING),
    Field(3, "ports", _PORT, repeated=True),
    Field(4, "players", _PLAYER_STATUS),
    Field(5, "counters", _COUNTER_STATUS, map=True),
    Field(6, "lists", _LIST_STATUS, map=True),
    Field(7, "addresses", _ADDRESS, repeated=True),
)
GAMESERVER = _msg(
    "agones.dev.sdk.GameServer",
    Field(1, "object_meta", _OBJECT_META),
    Field(2, "spec", _SPEC),
    Field(3, "status", _STATUS),
)

ALPHA_EMPTY = _msg("agones.dev.sdk.alpha.Empty")
COUNT = _msg("agones.dev.sdk.alpha.Count", Field(1, "count", INT64))
BOOL_MESSAGE = _msg("agones.dev.sdk.alpha.Bool", Field(1, "bool", BOOL))
PLAYER_ID = _msg("agones.dev.sdk.alpha.PlayerID", Field(1, "playerID", STRING))
PLAYER_ID_LIST = _msg("agones.dev.sdk.alpha.PlayerIDList", Field(1, "list", STRING, repeated=True))

INT64_VALUE = _msg("google.protobuf.Int64Value", Field(1, "value", INT64))
FIELD_MASK = _msg("google.protobuf.FieldMask", Field(1, "paths", STRING, repeated=True))
COUNTER = _msg(
    "agones.dev.sdk.beta.Counter",
    Field(1, "name", STRING),
    Field(2, "count", INT64),
    Field(3, "capacity", INT64),
)
COUNTER_UPDATE = _msg(
    "agones.dev.sdk.beta.CounterUpdateRequest",
    Field(1, "name", STRING),
    Field(2, "count", INT64_VALUE),
    Field(3, "capacity", INT64_VALUE),
    Field(4, "countDiff", INT64),
)
GET_COUNTER = _msg("agones.dev.sdk.beta.GetCounterRequest", Field(1, "name", STRING))
UPDATE_COUNTER = _msg(
    "agones.dev.sdk.beta.UpdateCounterRequest", Field(1, "counterUpdateRequest", COUNTER_UPDATE)
)
LIST = _msg(
    "agones.dev.sdk.beta.List",
    Field(1, "name", STRING),
    Field(2, "capacity", INT64),
    Field(3, "values", STRING, repeated=True),
)
GET_LIST = _msg("agones.dev.sdk.beta.GetListRequest", Field(1, "name", STRING))
UPDATE_LIST = _msg(
    "agones.dev.sdk.beta.UpdateListRequest",
    Field(1, "list", LIST),
    Field(2, "update_mask", FIELD_MASK),
)
LIST_VALUE_ADD = _msg(
    "agones.dev.sdk.beta.AddListValueRequest", Field(1, "name", STRING), Field(2, "value", STRING)
)
LIST_VALUE_REMOVE = _msg(
    "agones.dev.sdk.beta.RemoveListValueRequest",
    Field(1, "name", STRING),
    Field(2, "value", STRING),
)


# --- encoding -------------------------------------------------------------------------------------
def _varint(value: int, out: bytearray) -> None:
    value &= _U64  # negative int64/int32: two's complement, ten bytes (as protobuf writes them)
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _key(number: int, wire_type: int, out: bytearray) -> None:
    _varint((number << 3) | wire_type, out)


def _length_delimited(number: int, data: bytes, out: bytearray) -> None:
    _key(number, _LEN, out)
    _varint(len(data), out)
    out += data


def _scalar(number: int, kind: str, value: Any, out: bytearray, *, always: bool = False) -> None:
    if kind == STRING:
        if value or always:
            _length_delimited(number, str(value).encode(), out)
        return
    number_value = int(value)  # int64 may come as proto-JSON's string
    if number_value or always:
        _key(number, _VARINT, out)
        _varint(number_value, out)


def _value(number: int, kind: str | Message, value: Any, out: bytearray) -> None:
    if isinstance(kind, Message):
        _length_delimited(number, encode(kind, value), out)
    else:
        _scalar(number, kind, value, out, always=True)


def encode(message: Message, values: Mapping[str, Any] | None) -> bytes:
    """`values` (a dict by field name; missing or None fields are not written) as bytes."""
    out = bytearray()
    if not values:
        return bytes(out)
    for f in message.fields:
        value = values.get(f.name)
        if value is None:
            continue
        if f.map:
            for key, item in value.items():
                entry = bytearray()
                _scalar(1, STRING, key, entry, always=True)
                _value(2, f.kind, item, entry)
                _length_delimited(f.number, bytes(entry), out)
        elif f.repeated:
            for item in value:
                _value(f.number, f.kind, item, out)
        elif isinstance(f.kind, Message):
            _length_delimited(f.number, encode(f.kind, value), out)
        else:
            _scalar(f.number, f.kind, value, out)
    return bytes(out)


# --- decoding -------------------------------------------------------------------------------------
def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if at >= len(data):
            raise DecodeError("truncated varint")
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _U64, at
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _default(f: Field) -> Any:
    if f.map:
        return {}
    if f.repeated:
        return []
    if isinstance(f.kind, Message):
        return None
    return {STRING: "", BOOL: False}.get(f.kind, 0)


def _convert(
    kind: str | Message, wire_type: int, raw: int | bytes, name: str, budget: _Budget
) -> Any:
    if isinstance(kind, Message) or kind == STRING:
        if not isinstance(raw, bytes):
            raise DecodeError(f"{name}: expected length-delimited, got wire type {wire_type}")
        if isinstance(kind, Message):
            return _decode(kind, raw, budget)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise DecodeError(f"{name}: not UTF-8") from None
    if not isinstance(raw, int) or wire_type != _VARINT:
        raise DecodeError(f"{name}: expected a varint, got wire type {wire_type}")
    if kind == BOOL:
        return raw != 0
    return _signed(raw, 32 if kind == INT32 else 64)


# Decoding cost is bounded by the count of fields read, nested ones included, not by bytes: two
# bytes make a field (`08 00`), so a 320 KiB message of them is 160,000 fields, and each costs
# the pure-Python loop below about a microsecond. The largest request an SDK sends is an
# UpdateListRequest with a full list (LIST_MAX_CAPACITY, 1000 values, plus a few fields); 4096
# leaves room for that and keeps any message under a few milliseconds of the event loop.
MAX_FIELDS = 4096


class _Budget:
    """The fields one `decode` may still read, shared by the messages nested in it."""

    __slots__ = ("left",)

    def __init__(self, fields: int) -> None:
        self.left = fields

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise DecodeError("too many fields")


def _fields(data: bytes, budget: _Budget) -> Iterator[tuple[int, int, int, int]]:
    """(number, wire type, value or start, end) for each field in `data`, unknown ones
    included, read one at a time: a varint or fixed-width value is the int itself (end -1), a
    length-delimited one its span in `data`, sliced only by a caller that wants it."""
    at = 0
    end = len(data)
    while at < end:
        budget.spend()
        key, at = _read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire_type == _VARINT:
            value, at = _read_varint(data, at)
            yield number, wire_type, value, -1
        elif wire_type == _LEN:
            length, at = _read_varint(data, at)
            if at + length > end:
                raise DecodeError("truncated length-delimited field")
            yield number, wire_type, at, at + length
            at += length
        elif wire_type in (_I64, _I32):
            size = 8 if wire_type == _I64 else 4
            if at + size > end:
                raise DecodeError("truncated fixed-width field")
            yield number, wire_type, int.from_bytes(data[at : at + size], "little"), -1
            at += size
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")  # groups: not proto3


def _raw(data: bytes, wire_type: int, value: int, stop: int) -> int | bytes:
    return data[value:stop] if wire_type == _LEN else value


def decode(message: Message, data: bytes, *, max_fields: int = MAX_FIELDS) -> dict[str, Any]:
    """A dict with every field of `message`: given ones decoded, the others at their default.
    More than `max_fields` fields in all (nested ones included) is DecodeError."""
    return _decode(message, data, _Budget(max_fields))


def _decode(message: Message, data: bytes, budget: _Budget) -> dict[str, Any]:
    values: dict[str, Any] = {f.name: _default(f) for f in message.fields}
    for number, wire_type, value, stop in _fields(data, budget):
        f = message.by_number.get(number)
        if f is None:
            continue  # an unknown field: skipped, as protobuf does, and never copied
        raw = _raw(data, wire_type, value, stop)
        name = f"{message.name}.{f.name}"
        if f.map:
            if not isinstance(raw, bytes):
                raise DecodeError(f"{name}: a map entry must be length-delimited")
            key, item = "", _default(Field(2, "value", f.kind))
            for entry_number, entry_type, entry_value, entry_stop in _fields(raw, budget):
                if entry_number in (1, 2):
                    entry_raw = _raw(raw, entry_type, entry_value, entry_stop)
                    if entry_number == 1:
                        key = _convert(STRING, entry_type, entry_raw, name, budget)
                    else:
                        item = _convert(f.kind, entry_type, entry_raw, name, budget)
            if item is None:  # a message value left out is its empty message
                item = _decode(f.kind, b"", budget) if isinstance(f.kind, Message) else item
            values[f.name][key] = item
        elif f.repeated:
            values[f.name].append(_convert(f.kind, wire_type, raw, name, budget))
        elif isinstance(f.kind, Message) and values[f.name] is not None and isinstance(raw, bytes):
            # A message given twice is merged (protobuf's rule); these messages have no
            # repeated fields that the sidecar reads twice, so the later fields win.
            merged = _decode(f.kind, raw, budget)
            given = {k for k, _, _, _ in _fields(raw, budget)}
            for sub in f.kind.fields:
                if sub.number in given:
                    values[f.name][sub.name] = merged[sub.name]
        else:
            values[f.name] = _convert(f.kind, wire_type, raw, name, budget)
    return values
