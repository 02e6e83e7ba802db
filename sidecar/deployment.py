"""What the platform injected: `ARBITRIUM_*` and `MM_*` variables, parsed without ever failing.

Any variable may be missing or malformed (edgegap-facts §1: the Unity SDK crashes on a missing
ports mapping). Parsing collects a warning per bad variable and carries on. Tokens are never
read here, so nothing built from this module can leak one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Port:
    name: str
    internal: int | None
    external: int | None
    protocol: str | None


@dataclass(frozen=True)
class DeploymentInfo:
    request_id: str | None = None
    public_ip: str | None = None
    ports: tuple[Port, ...] = ()
    location: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    host_id: str | None = None
    vcpu_units: int | None = None
    memory_mb: int | None = None
    matchmaker: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def internal_ports(self) -> frozenset[int]:
        return frozenset(p.internal for p in self.ports if p.internal is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "public_ip": self.public_ip,
            "ports": [
                {
                    "name": p.name,
                    "internal": p.internal,
                    "external": p.external,
                    "protocol": p.protocol,
                }
                for p in self.ports
            ],
            "location": self.location,
            "tags": list(self.tags),
            "host_id": self.host_id,
            "vcpu_units": self.vcpu_units,
            "memory_mb": self.memory_mb,
            "matchmaker": self.matchmaker,
            "warnings": list(self.warnings),
        }

    def summary(self) -> dict[str, Any]:
        """The short form shown in `/v1/status`."""
        return {
            "request_id": self.request_id,
            "public_ip": self.public_ip,
            "ports": [p.external if p.external is not None else p.internal for p in self.ports],
        }


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _json(environ: Mapping[str, str], name: str, warnings: list[str]) -> Any:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        warnings.append(f"{name} is not valid JSON")
        return None


def _ports(environ: Mapping[str, str], warnings: list[str]) -> tuple[Port, ...]:
    mapping = _json(environ, "ARBITRIUM_PORTS_MAPPING", warnings)
    if mapping is None:
        return ()
    ports = mapping.get("ports") if isinstance(mapping, dict) else None
    if not isinstance(ports, dict):
        warnings.append('ARBITRIUM_PORTS_MAPPING has no "ports" object')
        return ()
    parsed: list[Port] = []
    # Keys are port names in newer material and port numbers in older: never trust the key,
    # read the values (edgegap-facts §1).
    for key, entry in ports.items():
        if not isinstance(entry, dict):
            warnings.append(f"ARBITRIUM_PORTS_MAPPING entry {key!r} is not an object")
            continue
        protocol = entry.get("protocol")
        parsed.append(
            Port(
                name=str(entry.get("name") or key),
                internal=_int(entry.get("internal")),
                external=_int(entry.get("external")),
                protocol=str(protocol) if protocol is not None else None,
            )
        )
    return tuple(parsed)


def _matchmaker(environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if "MM_MATCH_ID" in environ:
        data["match_id"] = environ["MM_MATCH_ID"]
    if "MM_MATCH_PROFILE" in environ:
        data["match_profile"] = environ["MM_MATCH_PROFILE"]
    for name in ("MM_TICKET_IDS", "MM_GROUPS", "MM_TEAMS", "MM_EQUALITY", "MM_INTERSECTION"):
        if name in environ:
            value = _json(environ, name, warnings)
            data[name.removeprefix("MM_").lower()] = value if value is not None else environ[name]
    tickets = {
        name.removeprefix("MM_TICKET_"): _json(environ, name, warnings)
        for name in environ
        if name.startswith("MM_TICKET_") and name != "MM_TICKET_IDS"
    }
    if tickets:
        data["tickets"] = tickets
    return data


def parse_deployment(environ: Mapping[str, str]) -> DeploymentInfo:
    warnings: list[str] = []
    location = _json(environ, "ARBITRIUM_DEPLOYMENT_LOCATION", warnings)
    if location is not None and not isinstance(location, dict):
        warnings.append("ARBITRIUM_DEPLOYMENT_LOCATION is not a JSON object")
        location = None
    tags_raw = environ.get("ARBITRIUM_DEPLOYMENT_TAGS", "")
    ports = _ports(environ, warnings)
    matchmaker = _matchmaker(environ, warnings)
    return DeploymentInfo(
        request_id=environ.get("ARBITRIUM_REQUEST_ID") or None,
        public_ip=environ.get("ARBITRIUM_PUBLIC_IP") or None,
        ports=ports,
        location=location,
        tags=tuple(t.strip() for t in tags_raw.split(",") if t.strip()),
        host_id=environ.get("ARBITRIUM_HOST_ID") or None,
        vcpu_units=_int(environ.get("ARBITRIUM_DEPLOYMENT_VCPU_UNITS")),
        memory_mb=_int(environ.get("ARBITRIUM_DEPLOYMENT_MEMORY_MB")),
        matchmaker=matchmaker,
        warnings=tuple(warnings),
    )
