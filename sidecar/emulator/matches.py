"""The `MM_*` variables Edgegap's matchmaker injects into the deployment of a match (SPEC §12,
edgegap-matchmaker-and-server-browser.md part A), built from a `POST /_emulator/matches` body.

Shapes, as in the reference's A.2 example (the SDK's mock):

    MM_MATCH_ID        <profile>_<stage>-<ISO timestamp, 7 fractional digits>Z (opaque)
    MM_MATCH_PROFILE   the profile name
    MM_TICKET_IDS      JSON list of ticket ids (20 lowercase alphanumerics when generated)
    MM_TICKET_<id>     {"id", "created_at" (RFC 3339 UTC, microseconds), "player_ip",
                        "group_id", "team_id", "attributes"}
    MM_GROUPS          group id -> ticket ids (one group per ticket unless tickets share one)
    MM_TEAMS           team id -> group ids (the mock's shape); {} without teams
    MM_EQUALITY        attribute -> the string every ticket has for it
    MM_INTERSECTION    attribute -> the strings every ticket's list has in common
    MM_EXPANSION       the expansion stage ("initial")

Equality and intersection are inferred from the attributes (the emulator knows no profile's
rules): a string attribute every ticket shares is an equality; a list-of-strings attribute
every ticket has is an intersection. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sidecar.bounded_json import MAX_DEPTH, read_json

# A ticket id becomes part of a variable name (MM_TICKET_<id>): keep it to a name's characters.
# No '-': /bin/sh (dash), which runs a backed deployment's command, silently drops a variable
# whose name has one, so the game would never see that ticket. The matchmaker's own ids are
# lowercase alphanumerics anyway.
TICKET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,63}$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# The platform caps a user variable at 4 KB (edgegap-facts.md), as EnvVar does for deploys.
MAX_VARIABLE = 4096
MAX_TICKETS = 100
EXPANSION = "initial"
# The variables that hold JSON (besides MM_TICKET_<id>), read by the sidecar with bounded_json.
_JSON_VARIABLES = ("MM_TICKET_IDS", "MM_GROUPS", "MM_TEAMS", "MM_EQUALITY", "MM_INTERSECTION")
_ALPHABET = string.ascii_lowercase + string.digits


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MatchTicket(_Body):
    id: str | None = None
    team: str | None = None
    group: str | None = None
    player_ip: str = Field(default="127.0.0.1", min_length=1, max_length=64)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and (not TICKET_ID.match(value) or value == "IDS"):
            raise ValueError(
                "must be 1-64 letters, digits or '_', starting with a letter or digit (it ends "
                "the variable name MM_TICKET_<id>), and not IDS (MM_TICKET_IDS is the list)"
            )
        return value

    @field_validator("attributes")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        where = _non_finite(value, "attributes")
        if where is not None:
            raise ValueError(
                f"{where} is NaN or Infinity, which is not JSON: the sidecar refuses the "
                "ticket, so the match would have no players"
            )
        return value

    @field_validator("team", "group")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and not LABEL.match(value):
            raise ValueError("must be 1-128 letters, digits, '.', '_', ':' or '-'")
        return value


class MatchBody(_Body):
    """`POST /_emulator/matches`."""

    app: str = Field(min_length=1, max_length=256)
    profile: str = Field(default="default", min_length=1, max_length=128)
    tickets: list[MatchTicket] = Field(min_length=1, max_length=MAX_TICKETS)
    # v2 deploy fields (`application` defaults to `app`, `version` to "latest").
    deploy: dict[str, Any] = Field(default_factory=dict)


class MatchError(ValueError):
    """The body is valid JSON of the right types but not a possible match (400)."""


@dataclass(frozen=True)
class Match:
    match_id: str
    ticket_ids: list[str]
    env: dict[str, str]


def ticket_id() -> str:
    """A ticket id as the matchmaker's mock has them: 20 lowercase alphanumerics."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_match(body: MatchBody, now: datetime | None = None) -> Match:
    """The match's id, ticket ids and `MM_*` variables; MatchError when it cannot be."""
    now = now or datetime.now(UTC)
    ids = [ticket.id or ticket_id() for ticket in body.tickets]
    if len(set(ids)) != len(ids):
        raise MatchError("tickets: two tickets have the same id")
    group_of = [ticket.group or str(uuid.uuid4()) for ticket in body.tickets]
    groups: dict[str, list[str]] = {}
    team_of_group: dict[str, str | None] = {}
    for ticket, tid, group in zip(body.tickets, ids, group_of, strict=True):
        groups.setdefault(group, []).append(tid)
        if team_of_group.setdefault(group, ticket.team) != ticket.team:
            raise MatchError(f"tickets: group {group!r} is split across teams")
    with_team = sum(ticket.team is not None for ticket in body.tickets)
    if 0 < with_team < len(body.tickets):
        raise MatchError("tickets: give a team to every ticket or to none")
    teams: dict[str, list[str]] = {}
    for group, team in team_of_group.items():
        if team is not None:
            teams.setdefault(team, []).append(group)
    # Tickets were made before the match: a few seconds earlier, in order.
    created = [now - timedelta(seconds=len(ids) - index + 1) for index in range(len(ids))]
    match_id = f"{body.profile}_{EXPANSION}-{now.strftime('%Y-%m-%dT%H:%M:%S.%f')}0Z"
    env = {
        "MM_MATCH_ID": match_id,
        "MM_MATCH_PROFILE": body.profile,
        "MM_TICKET_IDS": json.dumps(ids),
    }
    for ticket, tid, group, moment in zip(body.tickets, ids, group_of, created, strict=True):
        env[f"MM_TICKET_{tid}"] = json.dumps(
            {
                "id": tid,
                "created_at": _rfc3339(moment),
                "player_ip": ticket.player_ip,
                "group_id": group,
                "team_id": ticket.team,
                "attributes": ticket.attributes,
            }
        )
    env["MM_GROUPS"] = json.dumps(groups)
    env["MM_TEAMS"] = json.dumps(teams)
    env["MM_EQUALITY"] = json.dumps(_equality(body.tickets))
    env["MM_INTERSECTION"] = json.dumps(_intersection(body.tickets))
    env["MM_EXPANSION"] = EXPANSION
    for name, value in env.items():
        if name in _JSON_VARIABLES or name.startswith("MM_TICKET_"):
            # Read as the sidecar reads it: what it would ignore is refused here, by name.
            read = read_json(value, max_bytes=MAX_VARIABLE, max_depth=MAX_DEPTH)
            if read.problem is not None and "larger than" not in read.problem:
                raise MatchError(f"{name} {read.problem}: the sidecar would ignore it")
        if len(value.encode()) > MAX_VARIABLE:
            raise MatchError(
                f"{name} would be {len(value.encode())} bytes; the platform caps a variable "
                f"at {MAX_VARIABLE}"
            )
    return Match(match_id, ids, env)


def _non_finite(value: Any, where: str) -> str | None:
    """The path of the first NaN or Infinity in a decoded JSON value (pydantic's JSON parser
    takes them; standard JSON and the sidecar do not), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}")
        if found is not None:
            return found
    return None


def _equality(tickets: list[MatchTicket]) -> dict[str, str]:
    first = tickets[0].attributes
    return {
        key: value
        for key, value in first.items()
        if isinstance(value, str)
        and all(ticket.attributes.get(key) == value for ticket in tickets[1:])
    }


def _intersection(tickets: list[MatchTicket]) -> dict[str, list[str]]:
    shared: dict[str, list[str]] = {}
    for key, value in tickets[0].attributes.items():
        if not _strings(value):
            continue
        common = list(dict.fromkeys(value))
        for ticket in tickets[1:]:
            other = ticket.attributes.get(key)
            if not isinstance(other, list) or not _strings(other):
                break
            common = [item for item in common if item in other]
        else:
            shared[key] = common
    return shared


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
