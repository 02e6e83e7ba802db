"""The fixed catalogue of locations the emulator reports and places deployments in.

A deployment goes to the first location with room (`--location-capacity`: active deployments
per location; unlimited by default); with none left, the deploy answers 503 "Couldn't Allocate
Server", and `GET /v1/locations?app=&version=` leaves out the full ones, as the platform leaves
out the locations without the resources for that app version.
"""

from __future__ import annotations

from typing import Any

LOCATIONS: tuple[dict[str, Any], ...] = (
    {
        "city": "Montreal",
        "country": "Canada",
        "continent": "North America",
        "administrative_division": "Quebec",
        "timezone": "Eastern Time",
        "latitude": 45.508888,
        "longitude": -73.561668,
        "type": "standard",
        "tags": [{"key": "emulator", "value": "local"}],
    },
    {
        "city": "Frankfurt",
        "country": "Germany",
        "continent": "Europe",
        "administrative_division": "Hesse",
        "timezone": "Central European Time",
        "latitude": 50.110924,
        "longitude": 8.682127,
        "type": "standard",
        "tags": [{"key": "emulator", "value": "local"}],
    },
    {
        "city": "Tokyo",
        "country": "Japan",
        "continent": "Asia",
        "administrative_division": "Tokyo",
        "timezone": "Japan Standard Time",
        "latitude": 35.689487,
        "longitude": 139.691706,
        "type": "standard",
        "tags": [{"key": "emulator", "value": "local"}],
    },
)

# Fields of a location as it appears in a deployment's status and ARBITRIUM_DEPLOYMENT_LOCATION.
_DEPLOYMENT_FIELDS = (
    "city",
    "country",
    "continent",
    "administrative_division",
    "timezone",
    "latitude",
    "longitude",
)


def deployment_location(index: int = 0) -> dict[str, Any]:
    """The status-shaped location of catalogue entry `index`."""
    location = LOCATIONS[index]
    return {key: location[key] for key in _DEPLOYMENT_FIELDS}


def full_cities(active_cities: list[str], capacity: int | None) -> set[str]:
    """The cities whose active deployments (one entry each in `active_cities`) fill them."""
    if capacity is None:
        return set()
    return {city for city in set(active_cities) if active_cities.count(city) >= capacity}


def placement(active_cities: list[str], capacity: int | None) -> int | None:
    """The catalogue index a new deployment goes to; None when every location is full."""
    full = full_cities(active_cities, capacity)
    for index, location in enumerate(LOCATIONS):
        if location["city"] not in full:
            return index
    return None


def locations_view(
    location_type: str | None, with_tags: bool, leave_out: set[str] | None = None
) -> dict[str, Any]:
    """`GET /v1/locations`: coordinates as strings, as the reference shows them."""
    result = []
    for location in LOCATIONS:
        if location_type and location["type"] != location_type:
            continue
        if leave_out and location["city"] in leave_out:
            continue
        item = {**location, "latitude": str(location["latitude"])}
        item["longitude"] = str(location["longitude"])
        if not with_tags:
            item.pop("tags")
        result.append(item)
    return {"locations": result, "messages": [""]}
