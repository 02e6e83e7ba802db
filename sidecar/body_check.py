"""Request bodies checked at run time without pydantic: the rules, and the few pydantic rules
the local API's bodies use, with pydantic's error types and messages.

Why not pydantic at run time: loading pydantic costs a serving sidecar ~10 MB of RSS (the
pydantic-core library alone ~4.5 MB, then the schema machinery), a fifth of its memory, to check
seven small bodies. The pydantic models in `sidecar/models.py` stay the single source (the
OpenAPI document, the tests); `packaging/gen_bodies.py` compiles them into `sidecar/bodies.py`
(classes built from the nodes below), and the tests hold this module to pydantic: the generated
module must be up to date, and every input of a differential test must get the same value or the
same errors from both.

Inputs are what the strict JSON reader returns (dict, list, str, int, float, bool, None), checked
the way pydantic's lax mode checks Python values. Only the schema features the bodies use are
here; the generator refuses a model that needs another one.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

MAX_RESULT_BYTES = 16 * 1024
_INVALID: Any = object()  # a field that failed: its errors are already recorded

Loc = tuple[str | int, ...]
Errors = list[dict[str, Any]]


# --- the rules, shared with the pydantic models (which import them from here) -----------------
def printable_id(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must contain printable characters only")
    return value


def finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def exactly_one_of_ids_or_count(body: Any) -> Any:
    if (body.player_ids is None) == (body.count is None):
        raise ValueError('give exactly one of "player_ids" or "count"')
    return body


def result_within_limit(body: Any) -> Any:
    if body.result is not None:
        size = len(json.dumps(body.result, separators=(",", ":")).encode())
        if size > MAX_RESULT_BYTES:
            raise ValueError(
                f"result is {size} bytes of JSON; the limit is {MAX_RESULT_BYTES} (16 KiB)"
            )
    return body


# --- the errors -------------------------------------------------------------------------------
class BodyInvalid(ValueError):
    """A body that breaks its model; `errors()` is shaped like pydantic's ValidationError's."""

    def __init__(self, model: str, errors: Errors) -> None:
        super().__init__(f"{len(errors)} validation error(s) for {model}")
        self._errors = errors

    def errors(self) -> Errors:
        return self._errors


def _error(errors: Errors, kind: str, loc: Loc, msg: str) -> Any:
    errors.append({"type": kind, "loc": loc, "msg": msg})
    return _INVALID


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _after(value: Any, functions: Sequence[Callable[[Any], Any]], loc: Loc, errors: Errors) -> Any:
    for function in functions:
        try:
            value = function(value)
        except ValueError as exc:
            return _error(errors, "value_error", loc, f"Value error, {exc}")
    return value


# --- the schema nodes -------------------------------------------------------------------------
class Node(ABC):
    """One schema node: `check` returns the value as pydantic would give it, or records why
    not in `errors` (and returns anything)."""

    @abstractmethod
    def check(self, value: Any, loc: Loc, errors: Errors) -> Any: ...


@dataclass(frozen=True)
class Str(Node):
    min_length: int | None = None
    max_length: int | None = None
    after: tuple[Callable[[Any], Any], ...] = ()

    def check(self, value: Any, loc: Loc, errors: Errors) -> Any:
        if not isinstance(value, str):
            return _error(errors, "string_type", loc, "Input should be a valid string")
        if self.min_length is not None and len(value) < self.min_length:
            return _error(
                errors,
                "string_too_short",
                loc,
                f"String should have at least {_plural(self.min_length, 'character')}",
            )
        if self.max_length is not None and len(value) > self.max_length:
            return _error(
                errors,
                "string_too_long",
                loc,
                f"String should have at most {_plural(self.max_length, 'character')}",
            )
        return _after(value, self.after, loc, errors)


def _bounds(value: float, ge: float | None, le: float | None, loc: Loc, errors: Errors) -> bool:
    # `not (x <= le)` rather than `x > le`: NaN fails the bound, as in pydantic. The upper bound
    # is checked first, as pydantic-core does (2.7 to today): NaN fails both, and is reported as
    # `less_than_equal`.
    if le is not None and not value <= le:
        _error(errors, "less_than_equal", loc, f"Input should be less than or equal to {le}")
        return False
    if ge is not None and not value >= ge:
        _error(errors, "greater_than_equal", loc, f"Input should be greater than or equal to {ge}")
        return False
    return True


# The whitespace pydantic-core trims around a number (Rust's `str::trim`: Unicode White_Space).
# Python's `str.strip()` would also take \x1c-\x1f, which pydantic refuses.
_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_MAX_INT_DIGITS = 4300  # as Python's own int() limit: longer texts are refused before parsing
_INT64 = 2**63


def _plain(text: str) -> str | None:
    """`text` if Python's parsers may read it as pydantic would: ASCII only (Python would also
    take other scripts' digits) and nothing Python alone trims (it would take \x1c-\x1f)."""
    return text if text and text.isascii() and text.strip() == text else None


def _float_text(text: str) -> str | None:
    """The text of a float as pydantic's lax mode reads it. With underscores: single ones
    between characters, removed, and no whitespace around; without: whitespace trimmed."""
    if "_" in text:
        if text.startswith("_") or text.endswith("_") or "__" in text:
            return None
        return _plain(text.replace("_", ""))
    return _plain(text.strip(_WHITESPACE))


def _int_text(text: str) -> str | None:
    """The text of an integer as pydantic's lax mode reads it: whitespace trimmed, a fraction
    of zeros only dropped ("3.00" is 3; not "3." nor ".0"), leading zeros dropped with any
    underscores among them ("0__1" is 1); other underscores as Python's int() takes them."""
    text = text.strip(_WHITESPACE)
    whole, dot, fraction = text.partition(".")
    if dot and (not fraction or fraction.strip("0") or not whole.lstrip("+-")):
        return None
    sign = whole[:1] if whole[:1] in ("+", "-") else ""
    digits = whole[len(sign) :]
    if digits.startswith("0"):
        if digits.endswith("_"):
            return None
        digits = digits.lstrip("0_") or "0"
    if digits.startswith(("+", "-")):  # "0+4": a sign after the zeros
        return None
    return _plain(sign + digits)


@dataclass(frozen=True)
class Float(Node):
    ge: float | None = None
    le: float | None = None
    after: tuple[Callable[[Any], Any], ...] = ()

    def check(self, value: Any, loc: Loc, errors: Errors) -> Any:
        if isinstance(value, float):
            number = value
        elif isinstance(value, int):  # bool too: True is 1.0 in lax mode
            try:
                number = float(value)
            except OverflowError:  # an integer beyond a float's range (10**309)
                return _error(errors, "float_type", loc, "Input should be a valid number")
        elif isinstance(value, str):
            text = _float_text(value)
            try:
                number = float(text) if text else math.nan
            except ValueError:
                text = None
            if not text:
                return _error(
                    errors,
                    "float_parsing",
                    loc,
                    "Input should be a valid number, unable to parse string as a number",
                )
        else:
            return _error(errors, "float_type", loc, "Input should be a valid number")
        if not _bounds(number, self.ge, self.le, loc, errors):
            return _INVALID
        return _after(number, self.after, loc, errors)


def _size_error(errors: Errors, loc: Loc) -> Any:
    return _error(
        errors,
        "int_parsing_size",
        loc,
        "Unable to parse input string as an integer, exceeded maximum size",
    )


@dataclass(frozen=True)
class Int(Node):
    ge: int | None = None
    le: int | None = None
    after: tuple[Callable[[Any], Any], ...] = ()

    def check(self, value: Any, loc: Loc, errors: Errors) -> Any:
        if isinstance(value, int):
            number = int(value)  # bool: True is 1 in lax mode
        elif isinstance(value, float):
            if not math.isfinite(value):
                return _error(errors, "finite_number", loc, "Input should be a finite number")
            if not value.is_integer():
                return _error(
                    errors,
                    "int_from_float",
                    loc,
                    "Input should be a valid integer, got a number with a fractional part",
                )
            if abs(value) >= _INT64:
                return _size_error(errors, loc)
            number = int(value)
        elif isinstance(value, str):
            text = _int_text(value)
            if text and len(text.lstrip("+-").lstrip("0")) > _MAX_INT_DIGITS:
                return _size_error(errors, loc)
            try:
                number = int(text) if text else 0
            except ValueError:
                text = None
            if not text:
                return _error(
                    errors,
                    "int_parsing",
                    loc,
                    "Input should be a valid integer, unable to parse string as an integer",
                )
        else:
            return _error(errors, "int_type", loc, "Input should be a valid integer")
        if not _bounds(number, self.ge, self.le, loc, errors):
            return _INVALID
        return _after(number, self.after, loc, errors)


@dataclass(frozen=True)
class List(Node):
    items: Node
    max_length: int | None = None

    def check(self, value: Any, loc: Loc, errors: Errors) -> Any:
        if not isinstance(value, list | tuple):
            return _error(errors, "list_type", loc, "Input should be a valid list")
        # The length first, as pydantic: a list too long is one error, whatever its items.
        if self.max_length is not None and len(value) > self.max_length:
            return _error(
                errors,
                "too_long",
                loc,
                f"List should have at most {_plural(self.max_length, 'item')} after "
                f"validation, not {len(value)}",
            )
        before = len(errors)
        out = [self.items.check(item, (*loc, i), errors) for i, item in enumerate(value)]
        return _INVALID if len(errors) > before else out


@dataclass(frozen=True)
class AnyValue(Node):
    def check(self, value: Any, loc: Loc, errors: Errors) -> Any:
        return value


@dataclass(frozen=True)
class Nullable(Node):
    inner: Node

    def check(self, value: Any, loc: Loc, errors: Errors) -> Any:
        return None if value is None else self.inner.check(value, loc, errors)


_REQUIRED: Any = object()


@dataclass(frozen=True)
class Field:
    name: str
    node: Node
    default: Any = _REQUIRED


class Body:
    """A checked request body: read-only attributes, one per field of its model."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    AFTER: ClassVar[tuple[Callable[[Any], Any], ...]] = ()  # checks of the whole body
    _NAMES: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._NAMES = frozenset(field.name for field in cls.FIELDS)  # once, not per body

    @classmethod
    def validate(cls, data: dict[str, Any]) -> Any:
        """The body of `data` (a JSON object); BodyInvalid with every error otherwise."""
        errors: Errors = []
        body = object.__new__(cls)
        for field in cls.FIELDS:
            if field.name in data:
                value = field.node.check(data[field.name], (field.name,), errors)
            elif field.default is _REQUIRED:
                value = _error(errors, "missing", (field.name,), "Field required")
            else:
                value = field.default
            object.__setattr__(body, field.name, value)
        names = cls._NAMES
        for key in data:
            if key not in names:
                _error(errors, "extra_forbidden", (key,), "Extra inputs are not permitted")
        if not errors:
            _after(body, cls.AFTER, (), errors)
        if errors:
            raise BodyInvalid(cls.__name__, errors)
        return body

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        values = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.FIELDS)
        return f"{type(self).__name__}({values})"
