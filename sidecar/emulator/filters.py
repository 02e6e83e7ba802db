"""Which deployments a filter selects: the bulk-stop `filters` of the reference.

Pure functions over `Deployment` records (no I/O). A bulk-stop filter is
`{"field", "values", "filter_type": any|all|not}`; every filter of a request must match.
An unknown field is refused (400), so a typo cannot stop everything or nothing silently.
"""

from __future__ import annotations

from collections.abc import Iterable

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
