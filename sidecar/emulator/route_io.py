"""HTTP plumbing shared by the platform and control routes: the `{"message"}` error shape,
JSON body parsing into models, and query-string parsing (pages). Bad
input becomes `PlatformError` (4xx), re-exported here for the routes.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from sidecar.emulator.errors import PlatformError
from sidecar.emulator.views import paginate

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def error_response(
    status: int,
    message: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response({"message": message, **(extra or {})}, status=status, headers=headers)


async def parse_body(request: web.Request, model: type[M], *, invalid: int = 400) -> M:
    """The request's JSON body as `model`: 400 if not JSON; `invalid` (400, the reference's
    answer for most routes; 422 where it documents Unprocessable) if it does not fit. Types
    are strict, as JSON has them: `"yes"` or `1` is not a boolean."""
    raw = await request.read()
    try:
        json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise PlatformError(400, "Request body is not valid JSON") from None
    try:
        return model.model_validate_json(raw or b"{}", strict=True)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(part) for part in error["loc"]), "error": error["msg"]}
            for error in exc.errors()
        ]
        raise PlatformError(invalid, "Request body is invalid", {"details": details}) from None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise PlatformError(400, f"Query parameter {name} must be an integer") from None
    if not low <= value <= high:
        raise PlatformError(400, f"Query parameter {name} must be between {low} and {high}")
    return value


MAX_PAGE_SIZE = 1000


def page_of(request: web.Request, items: list[T]) -> tuple[list[T], dict[str, Any]]:
    """The page `?page=&limit=` asks for (default 1 and 10) and its `pagination` object."""
    page = query_int(request, "page", 1, 1, 1_000_000)
    limit = query_int(request, "limit", 10, 1, MAX_PAGE_SIZE)
    return paginate(items, page, limit)


__all__ = [
    "PlatformError",
    "error_response",
    "page_of",
    "parse_body",
    "query_int",
]
