"""Proto-JSON the way Agones' REST gateway (grpc-gateway, protojson) speaks it.

Out: proto field names, every field present, int64 values as JSON strings and int32 as numbers
(the caller builds the dicts; `int64` spells the strings). In: a request body is one JSON object
whose known fields are read by `Message.parse` (int64 accepted as a number or a string, `null`
meaning the default, unknown fields ignored as `DiscardUnknown` does); anything else is
INVALID_ARGUMENT.

Errors are `{"code": N, "message": "...", "details": []}` with the HTTP status grpc-gateway
gives the gRPC code (measured against Agones v1.49.0, reference/agones/README.md):

    code 3  INVALID_ARGUMENT   400   malformed JSON, a field of the wrong type, a bad label
    code 5  NOT_FOUND          404   unknown path
    code 12 UNIMPLEMENTED      501   a known path with the wrong method
    code 2  UNKNOWN            500   a refused SDK call (unknown counter, capacity reached...):
                                     the SDK server returns a plain error, which gRPC codes 2
    code 8  RESOURCE_EXHAUSTED 429   too many watchers (the facade's own bound)
    code 4  DEADLINE_EXCEEDED  504   a body that did not arrive in time (the facade's own bound)

`PingScanner` splits a client-streamed `POST /health` body into its JSON objects as the bytes
arrive: `{}{}` is two pings, as the gateway decodes a client stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sidecar.bounded_json import holds_surrogate
from sidecar.errors import HttpError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
EMPTY = b"{}"


class AgonesError(HttpError):
    """An error answer in Agones' shape: HTTP `status`, gRPC `code`, `message`."""

    def __init__(self, status: int, code: int, message: str, *, close: bool = False) -> None:
        super().__init__(status, message)
        self.code = code
        self.close = close  # end the connection after the answer

    def body(self) -> bytes:
        return error_body(self.code, self.message)


def invalid_argument(message: str) -> AgonesError:
    return AgonesError(400, 3, message)


def refused(message: str) -> AgonesError:
    """An SDK call the SDK server refuses (Agones answers these with a plain error: code 2)."""
    return AgonesError(500, 2, message)


NOT_FOUND = AgonesError(404, 5, "Not Found")
METHOD_NOT_ALLOWED = AgonesError(501, 12, "Method Not Allowed")


def error_body(code: int, message: str) -> bytes:
    # backslashreplace: a message quoting a value that is not text still goes out as JSON (the
    # escape it writes for a lone surrogate, `\\ud800`, is JSON's own).
    error = {"code": code, "message": message, "details": []}
    text = json.dumps(error, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace")


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def int64(value: int) -> str:
    """An int64 field as protojson writes it."""
    return str(value)


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity, every string text); INVALID_ARGUMENT when it is not."""
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except RecursionError:  # the C scanner's own depth guard: never a 500
        raise invalid_argument("proto: the JSON is nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError and an int over 4300 digits
        raise invalid_argument(f"proto: syntax error: {exc}") from None
    # A `\ud800` escape without its pair decodes to a string no UTF-8 writer can write: the
    # GameServer holding it could never be sent again (it was a 500 and a traceback).
    if b"\\u" in raw and holds_surrogate(value):
        raise invalid_argument("proto: syntax error: a string holds a lone UTF-16 surrogate")
    return value


class Field(Enum):
    STRING = "string"
    INT64 = "int64"
    WRAPPED_INT64 = "google.protobuf.Int64Value"  # None when absent or null
    STRINGS = "repeated string"


_INT_TEXT = re.compile(r"-?[0-9]{1,19}", re.ASCII)


def _int64(name: str, value: Any) -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else None
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value):
        number = int(value)
    if number is None or not INT64_MIN <= number <= INT64_MAX:
        raise invalid_argument(f"proto: invalid value for int64 field {name}: {_show(value)}")
    return number


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Message:
    """A request message: its fields by JSON name."""

    name: str
    fields: Mapping[str, Field]

    def parse(self, raw: bytes) -> dict[str, Any]:
        """The known fields of a body (an empty body is the empty message)."""
        if not raw.strip():
            data: Any = {}
        else:
            data = parse_json(raw)
        if not isinstance(data, dict):
            raise invalid_argument(f"proto: syntax error: {self.name} must be a JSON object")
        return self.read(data)

    def read(self, data: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, kind in self.fields.items():
            value = data.get(name)
            if kind is Field.STRING:
                if value is not None and not isinstance(value, str):
                    raise invalid_argument(
                        f"proto: invalid value for string field {name}: {_show(value)}"
                    )
                values[name] = value or ""
            elif kind is Field.INT64:
                values[name] = 0 if value is None else _int64(name, value)
            elif kind is Field.WRAPPED_INT64:
                values[name] = None if value is None else _int64(name, value)
            else:
                if value is None:
                    value = []
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise invalid_argument(
                        f"proto: invalid value for repeated string field {name}: {_show(value)}"
                    )
                values[name] = value
        return values


EMPTY_MESSAGE = Message("Empty", {})
KEY_VALUE = Message("KeyValue", {"key": Field.STRING, "value": Field.STRING})
DURATION = Message("Duration", {"seconds": Field.INT64})
PLAYER_ID = Message("PlayerID", {"playerID": Field.STRING})
COUNT = Message("Count", {"count": Field.INT64})
COUNTER_UPDATE = Message(
    "CounterUpdateRequest",
    {
        "count": Field.WRAPPED_INT64,
        "capacity": Field.WRAPPED_INT64,
        "countDiff": Field.INT64,
    },
)
LIST = Message("List", {"capacity": Field.INT64, "values": Field.STRINGS})
LIST_VALUE = Message("ListValue", {"value": Field.STRING})


class PingScanner:
    """Counts the JSON objects of a client-streamed body as its bytes arrive.

    Each complete top-level object is parsed (and must be one: `Empty` is an object); whitespace
    between objects is ignored. `feed` returns how many objects the new bytes completed, or
    raises INVALID_ARGUMENT at the first malformed one (the pings before it count, as they would
    have been sent down the gRPC stream already). One object may not exceed `max_object`."""

    def __init__(self, max_object: int = 64 * 1024) -> None:
        self._max_object = max_object
        self._buffer = bytearray()
        self._scanned = 0  # how far into the buffer the scan has gone
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, data: bytes) -> int:
        self._buffer += data
        pings = 0
        buffer = self._buffer
        i = self._scanned
        while i < len(buffer):
            byte = buffer[i]
            if self._depth == 0:
                if byte in b" \t\r\n":
                    i += 1
                    continue
                if byte != 0x7B:  # "{"
                    raise invalid_argument(
                        "proto: syntax error: each health ping must be a JSON object"
                    )
                del buffer[:i]
                i = 0
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif byte == 0x5C:  # backslash
                    self._escaped = True
                elif byte == 0x22:  # quote
                    self._in_string = False
            elif byte == 0x22:
                self._in_string = True
            elif byte in b"{[":
                self._depth += 1
            elif byte in b"}]":
                self._depth -= 1
                if self._depth == 0:
                    obj = parse_json(bytes(buffer[: i + 1]))
                    if not isinstance(obj, dict):
                        raise invalid_argument("proto: syntax error: a ping must be an object")
                    pings += 1
                    del buffer[: i + 1]
                    i = 0
                    continue
                if self._depth < 0:
                    raise invalid_argument("proto: syntax error: unbalanced brackets")
            i += 1
        self._scanned = i
        if self._depth > 0 and len(buffer) > self._max_object:
            raise invalid_argument(
                f"proto: a health ping is larger than {self._max_object // 1024} KiB"
            )
        return pings

    def close(self) -> None:
        """The body ended: a started object that never closed is malformed."""
        if self._depth != 0 or self._buffer.strip():
            raise invalid_argument("proto: syntax error: unexpected end of JSON input")
