"""JSON the sidecar does not control (platform variables, manifests), read within bounds.

`read_json(text)` returns the value or the reason it cannot be used; it never raises. The
bounds come before the decoder: the text's size in UTF-8 bytes is checked first, then its nesting
depth by a linear scan (strings skipped, escapes respected), so a document nested 100,000 deep
never reaches `json.loads`, whose decoder recurses once per level and would raise
RecursionError. Beyond the JSON grammar it refuses what would break the sidecar's own JSON
later: `NaN`/`Infinity` (and numbers that overflow to them, such as `1e400`), text that is not
UTF-8 (a lone surrogate, raw or as a `\\uD800` escape), and integers longer than Python's
conversion limit (a ValueError inside the decoder, caught like any other).

A reason never quotes the text: a matchmaker ticket may carry player-supplied values.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass
from itertools import accumulate, count
from typing import Any

MAX_DEPTH = 64
MAX_BYTES = 64 * 1024

# A whole string (escapes skipped; an unterminated one runs to the end). The pattern matches at
# every quote and possessive quantifiers forbid backtracking, so `"\"\"\"…` stays linear.
_STRING = re.compile(rb'"(?:[^"\\]++|\\[\s\S])*+(?:"|\\?\Z)')
# Once strings are gone, every byte but the brackets goes (UTF-8 never hides an ASCII byte
# inside a multi-byte character); an opening bracket then counts 2 and a closing one 0, so the
# depth after n brackets is their running sum minus n, computed without a Python-level loop.
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_WEIGHTS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
SURROGATE = re.compile(r"[\ud800-\udfff]")  # a lone one: not text (the manifest reader uses it too)
# Only a `\u` escape can put a surrogate into a decoded string once the text itself has none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class JsonRead:
    """The decoded value, or `problem`: why the text was refused (then `value` is None)."""

    value: Any = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


class _NotJsonValue(ValueError):
    pass


def read_json(text: str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> JsonRead:
    """Decode `text` if it is at most `max_bytes` of UTF-8 and nests at most `max_depth`
    arrays/objects; otherwise say why, as a phrase that follows the name of what was read
    ("is larger than 64 KiB", "nests deeper than 64 levels", "is not valid JSON: …")."""
    # Characters are at least one byte each: a cheap refusal before encoding anything.
    if len(text) > max_bytes:
        return JsonRead(problem=f"is larger than {_size(max_bytes)}")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate: the environment held bytes that are not UTF-8
        return JsonRead(problem="is not UTF-8 text")
    if len(encoded) > max_bytes:
        return JsonRead(problem=f"is larger than {_size(max_bytes)}")
    if nesting_depth(encoded) > max_depth:
        return JsonRead(problem=f"nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotJsonValue as exc:
        return JsonRead(problem=str(exc))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        return JsonRead(problem=f"is not valid JSON: {exc.msg} ({where})")
    except (ValueError, RecursionError) as exc:
        # ValueError: an integer beyond the int/str conversion limit. RecursionError cannot
        # happen below the depth limit; caught so that this function keeps its promise.
        return JsonRead(problem=f"is not valid JSON: {str(exc).split(':')[0]}")
    if _SURROGATE_ESCAPE.search(text) and holds_surrogate(value):
        return JsonRead(problem="holds a lone UTF-16 surrogate escape, which is not text")
    return JsonRead(value=value)


def nesting_depth(encoded: bytes) -> int:
    """How deep arrays and objects nest in UTF-8 JSON text, counted without decoding it (linear
    time). For text that is not JSON it is at least the depth a decoder would reach before
    failing, which is all the limit needs."""
    weights = _STRING.sub(b"", encoded).translate(_WEIGHTS, _NOT_BRACKETS)
    return max(map(operator.sub, accumulate(weights), count(1)), default=0)


def _refuse_constant(name: str) -> Any:
    raise _NotJsonValue(f"holds {name}, which is not JSON")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise _NotJsonValue("holds a number too large for a float")
    return number


def holds_surrogate(value: Any) -> bool:
    """Whether any string in `value` (keys too) holds a lone surrogate: not text, and no
    UTF-8 writer can write it."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _size(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"
