"""Which deployments a filter selects: the bulk-stop `filters` and the list's `query`.

Pure functions over `Deployment` records (no I/O); every filter of a request must match, and
an unknown field or operator is refused (400), so a typo cannot select everything or nothing
silently.

* bulk-stop: `{"field", "values", "filter_type": any|all|not}`;
* `GET /v1/deployments?query=` (the reference's example:
  `{"filters":[{"field":"status","operator":"eq","value":"ready"}]}`): operators `eq`, `neq`,
  `in`, `nin` (a list of values), `contains` (a substring of any of the field's values).
  Statuses compare without their `Status.` prefix and case (`ready` is `Status.READY`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.emulator.errors import PlatformError
from sidecar.emulator.models import Filter
from sidecar.emulator.store import Deployment


def field_values(deployment: Deployment, field: str) -> list[str]:
    """The values of `field` a filter compares against (a list: tags have several)."""
    values: dict[str, list[str]] = {
        "request_id": [deployment.request_id],
        "app_name": [deployment.app_name],
        "application": [deployment.app_name],
        "app_version": [deployment.app_version],
        "version": [deployment.app_version],
        "tags": list(deployment.tags),
        "tag": list(deployment.tags),
        "deployment_tags": list(deployment.tags),
        "status": [str(deployment.status)],
        "current_status": [str(deployment.status)],
        "city": [str(deployment.location["city"])],
        "country": [str(deployment.location["country"])],
        "continent": [str(deployment.location["continent"])],
    }
    if field not in values:
        raise PlatformError(400, f"Unsupported filter field {field!r}")
    return values[field]


def matches_all(deployment: Deployment, filters: Iterable[Filter]) -> bool:
    for item in filters:
        present = set(field_values(deployment, item.field))
        wanted = set(item.values)
        if item.filter_type == "any" and not present & wanted:
            return False
        if item.filter_type == "all" and not wanted <= present:
            return False
        if item.filter_type == "not" and present & wanted:
            return False
    return True


_OPERATORS = ("eq", "neq", "in", "nin", "contains")
_STATUS_FIELDS = ("status", "current_status")


@dataclass(frozen=True)
class QueryFilter:
    field: str
    operator: str
    values: tuple[str, ...]


def parse_query(text: str) -> list[QueryFilter]:
    """The list's `query` parameter; 400 when it is not the documented JSON."""
    try:
        data = json.loads(text)
    except ValueError:
        raise PlatformError(400, 'query must be JSON like {"filters": [...]}') from None
    items = data.get("filters") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise PlatformError(400, "query must be an object with a list of filters")
    filters = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("field"), str):
            raise PlatformError(400, "each query filter needs a field, an operator and a value")
        operator = item.get("operator", "eq")
        if operator not in _OPERATORS:
            raise PlatformError(400, f"Unsupported query operator {operator!r}")
        value = item.get("value")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(one, str | int | float | bool) for one in values):
            raise PlatformError(400, f"query filter on {item['field']!r} needs a value")
        filters.append(QueryFilter(item["field"], operator, tuple(str(one) for one in values)))
    return filters


def _normal(field: str, value: str) -> str:
    if field in _STATUS_FIELDS:
        return value.removeprefix("Status.").lower()
    return value


def query_matches(deployment: Deployment, filters: Iterable[QueryFilter]) -> bool:
    for item in filters:
        present = {_normal(item.field, one) for one in field_values(deployment, item.field)}
        wanted = {_normal(item.field, one) for one in item.values}
        if item.operator in ("eq", "in") and not present & wanted:
            return False
        if item.operator in ("neq", "nin") and present & wanted:
            return False
        if item.operator == "contains" and not any(
            one in value for one in wanted for value in present
        ):
            return False
    return True
