"""The local API's wire rules, shared by its routes (api.py) and its HTTP server (http_server.py).

The error envelope `{"error": {"code", "message"}}` and `ApiError`, strict JSON (`NaN`,
`Infinity`, overflowing numbers and nesting deeper than 64 levels refused before any parser
recurses), and request bodies within their limits: 64 KiB, 10 s to arrive, the shape of their
model (`sidecar/bodies.py`: the pydantic models compiled, so that pydantic is never loaded here).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any, TypeVar

from aiohttp import web

from sidecar.body_check import Body, BodyInvalid
from sidecar.errors import HttpError

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64
BODY_TIMEOUT = 10.0
BodyT = TypeVar("BodyT", bound=Body)

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
    429: "too_many_subscribers",
    500: "internal_error",
    504: "timeout",
}


def error_code(status: int) -> str:
    return _ERROR_CODES.get(status, "error")


class ApiError(HttpError):
    """An error answer of the local API, rendered as SPEC §7's envelope."""

    def __init__(
        self, status: int, message: str, code: str | None = None, *, close: bool = False
    ) -> None:
        super().__init__(status, message)
        self.code = code or error_code(status)
        self.close = close  # end the connection after the answer


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def _body_message(error: BodyInvalid) -> str:
    """The first five errors, worded as pydantic words them (tests/test_models_compiled.py)."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ())) or "body"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if item.get("type") == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


class _NotJson(ValueError):
    """A JSON extension Python's parser accepts and JSON does not."""


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON (send null or a string instead)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as infinity
        raise _NotJson(f"{text[:40]} does not fit a finite number")
    return value


# Strings (skipped whole) and brackets. An unterminated string runs to the end of the text: if
# the closing quote were required, every quote inside it would start a failed match scanning to
# the end, quadratic (a 60 KB body of `\"` held the event loop for tens of seconds).
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit`, found by one
    iterative pass over the text (never recursion), before any parser recurses into it."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case: too few brackets to be that deep
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        first = match.group()[0]
        if first in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif first in b"]}":
            depth -= 1
    return False


# Built once: json.loads with keyword arguments builds a decoder per call (+1.4 us a body).
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: `ApiError` 400 for malformed text, `NaN`, `Infinity` or an overflowing
    number; 422 for nesting deeper than MAX_JSON_DEPTH."""
    if json_depth_exceeds(raw):
        raise ApiError(422, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        # As json.loads does for bytes: UTF-8, -16 or -32 by the first bytes.
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except ValueError as exc:  # also _NotJson, UnicodeDecodeError, an int over 4300 digits
        raise ApiError(400, f"malformed JSON: {exc}") from None
    except RecursionError:  # unreachable after the depth check; kept so it can never be a 500
        raise ApiError(422, f"the JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None


async def read_body(
    request: web.Request,
    model: type[BodyT],
    optional: bool = False,
    timeout_s: float = BODY_TIMEOUT,
) -> BodyT:
    try:
        # A client that sent its headers but trickles (or never sends) the body would hold
        # the connection and this handler for ever.
        async with asyncio.timeout(timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES // 1024} KiB") from None
    except TimeoutError:
        # Closed after the answer: aiohttp would otherwise wait up to 10 s more for the body.
        raise ApiError(408, f"the body did not arrive within {timeout_s:g}s", close=True) from None
    if not raw.strip():
        if not optional:
            raise ApiError(400, "a JSON body is required")
        data: Any = {}  # every field of an optional body has a default
    else:
        data = parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object")
    try:
        body: BodyT = model.validate(data)
    except BodyInvalid as exc:
        raise ApiError(422, _body_message(exc)) from None
    return body
