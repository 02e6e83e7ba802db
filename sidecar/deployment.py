"""What the platform injected: `ARBITRIUM_*` and `MM_*` variables, parsed without ever failing.

Any variable may be missing or malformed (edgegap-facts §1: the Unity SDK crashes on a missing
ports mapping). Parsing collects one warning per bad variable and carries on: a variable that is
too large, not UTF-8, or (for a JSON one) not JSON within the bounds of `bounded_json` is
ignored as a whole, so the game always starts. A warning names the variable and never quotes its
value (a matchmaker ticket carries player data), and says what became of it: `ignored` (the whole
variable) or `skipped` (some entries). Tokens are never read here, so nothing built
from this module can leak one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.bounded_json import MAX_BYTES, read_json
from sidecar.match import MatchInfo, build_match

# Ports, CPU units and megabytes: 18 digits is far beyond any of them and keeps int() cheap.
_INT_MAX_DIGITS = 18


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
    # The match made of the MM_* values (SPEC §12); `match.has_data` only with MM_TICKET_IDS.
    match: MatchInfo = field(default_factory=MatchInfo)
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
    if isinstance(value, str):
        digits = value.strip().removeprefix("-")
        # ASCII only: str.isdigit() also accepts "²", which int() refuses.
        if digits.isascii() and digits.isdigit() and len(digits) <= _INT_MAX_DIGITS:
            return int(value)
    return None


def _port(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and 0 <= number <= 65535 else None


def _text(environ: Mapping[str, str], name: str, warnings: list[str]) -> str | None:
    """A plain variable, or None when it is unset, empty, too large or not UTF-8."""
    raw = environ.get(name)
    if not raw:
        return None
    problem = _text_problem(raw)
    if problem is not None:
        warnings.append(f"{name} {problem}: ignored")
        return None
    return raw


def _count(environ: Mapping[str, str], name: str, warnings: list[str]) -> int | None:
    """A whole number >= 0 (CPU units, megabytes), or None with one warning when it is not."""
    text = _text(environ, name, warnings)
    if text is None:
        return None
    number = _int(text)
    if number is None or number < 0:
        warnings.append(f"{name} is not a whole number >= 0: ignored")
        return None
    return number


def _text_problem(raw: str) -> str | None:
    if len(raw) > MAX_BYTES:
        return f"is larger than {MAX_BYTES // 1024} KiB"
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError:  # the environment held bytes that are not UTF-8
        return "is not UTF-8 text"
    return f"is larger than {MAX_BYTES // 1024} KiB" if size > MAX_BYTES else None


def _json(
    environ: Mapping[str, str],
    name: str,
    warnings: list[str],
    expected: type[dict[str, Any]] | type[list[Any]] | None = None,
) -> Any:
    """The decoded variable, or None when it is unset or blank, or unusable (one warning)."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    read = read_json(raw)
    problem = read.problem
    if problem is None and expected is not None and not isinstance(read.value, expected):
        problem = "is not a JSON " + ("object" if expected is dict else "array")
    if problem is not None:
        warnings.append(f"{name} {problem}: ignored")
        return None
    return read.value


def _ports(environ: Mapping[str, str], warnings: list[str]) -> tuple[Port, ...]:
    mapping = _json(environ, "ARBITRIUM_PORTS_MAPPING", warnings)
    if mapping is None:
        return ()
    ports = mapping.get("ports") if isinstance(mapping, dict) else None
    if not isinstance(ports, dict):
        warnings.append('ARBITRIUM_PORTS_MAPPING has no "ports" object: ignored')
        return ()
    parsed: list[Port] = []
    skipped = 0
    # Keys are port names in newer material and port numbers in older: never trust the key,
    # read the values (edgegap-facts §1).
    for key, entry in ports.items():
        if not isinstance(entry, dict):
            skipped += 1
            continue
        protocol = entry.get("protocol")
        parsed.append(
            Port(
                name=str(entry.get("name") or key),
                internal=_port(entry.get("internal")),
                external=_port(entry.get("external")),
                protocol=str(protocol) if protocol is not None else None,
            )
        )
    if skipped:
        # One warning for the variable, however many entries are bad, and never a key: they
        # come from the platform's data, not from us.
        warnings.append(
            f"ARBITRIUM_PORTS_MAPPING has {skipped} entries that are not objects: skipped"
        )
    return tuple(parsed)


def _matchmaker(environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in ("MM_MATCH_ID", "MM_MATCH_PROFILE"):
        if name in environ:
            data[name.removeprefix("MM_").lower()] = _text(environ, name, warnings)
    # The expansion stage's name is disputed (matchmaker part A.1): either is read, the first
    # one set wins.
    for name in ("MM_EXPANSION", "MM_EXPANSION_STAGE"):
        if name in environ and data.get("expansion") is None:
            data["expansion"] = _text(environ, name, warnings)
    # A present but unusable variable shows as null: given, and ignored as a whole.
    for name, expected in _MATCHMAKER_JSON.items():
        if name in environ:
            data[name.removeprefix("MM_").lower()] = _json(environ, name, warnings, expected)
    tickets: dict[str, Any] = {}
    for name in environ:
        if name.startswith("MM_TICKET_") and name != "MM_TICKET_IDS":
            ticket = _json(environ, name, warnings, dict)  # a bad ticket is skipped
            if ticket is not None:
                tickets[name.removeprefix("MM_TICKET_")] = ticket
    if tickets:
        data["tickets"] = tickets
    return data


# The matchmaker's JSON variables and the shape each must have (edgegap-matchmaker part A).
_MATCHMAKER_JSON: dict[str, type[dict[str, Any]] | type[list[Any]]] = {
    "MM_TICKET_IDS": list,
    "MM_GROUPS": dict,
    "MM_TEAMS": dict,
    "MM_EQUALITY": dict,
    "MM_INTERSECTION": dict,
}


def parse_deployment(environ: Mapping[str, str]) -> DeploymentInfo:
    warnings: list[str] = []
    location = _json(environ, "ARBITRIUM_DEPLOYMENT_LOCATION", warnings, dict)
    tags_raw = _text(environ, "ARBITRIUM_DEPLOYMENT_TAGS", warnings) or ""
    ports = _ports(environ, warnings)
    matchmaker = _matchmaker(environ, warnings)
    given = {
        name.removeprefix("MM_TICKET_")
        for name in environ
        if name.startswith("MM_TICKET_") and name != "MM_TICKET_IDS"
    }
    match = build_match(matchmaker, given, warnings)
    return DeploymentInfo(
        request_id=_text(environ, "ARBITRIUM_REQUEST_ID", warnings),
        public_ip=_text(environ, "ARBITRIUM_PUBLIC_IP", warnings),
        ports=ports,
        location=location,
        tags=tuple(t.strip() for t in tags_raw.split(",") if t.strip()),
        host_id=_text(environ, "ARBITRIUM_HOST_ID", warnings),
        vcpu_units=_count(environ, "ARBITRIUM_DEPLOYMENT_VCPU_UNITS", warnings),
        memory_mb=_count(environ, "ARBITRIUM_DEPLOYMENT_MEMORY_MB", warnings),
        matchmaker=matchmaker,
        match=match,
        warnings=tuple(warnings),
    )
