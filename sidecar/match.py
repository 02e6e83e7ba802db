"""The match the matchmaker made (SPEC §12): its tickets, teams and ids, read from the parsed
`MM_*` variables, and how the match is shown (`GET /v1/match`, a ticket, the stop record).

Pure: no I/O. `build_match` turns `deployment.py`'s parsed matchmaker values into `MatchInfo`,
adding one warning per ticket it skips; arrivals are the lifecycle's (`Lifecycle.arrivals`), so
the documents here take the lifecycle and read them.

Rules from edgegap-matchmaker-and-server-browser.md, part A:
* Without `MM_TICKET_IDS` (or with one that is unusable) there is no match data. Each id listed
  is one expected player, whose details are `MM_TICKET_<id>`; `MM_TICKET_IDS` is not a ticket
  (the prefix trap). A ticket whose variable is missing or malformed is skipped, with one
  warning naming the variable, and the others count.
* `MM_TEAMS` maps a team to group ids in the SDK's mock, but to ticket ids in other material:
  each member is resolved through `MM_GROUPS` when it is a group, else taken as a ticket id.
  Without a usable `MM_TEAMS` the teams come from the tickets' own `team_id`.
* The expansion stage is `MM_EXPANSION` or `MM_EXPANSION_STAGE` (the name is disputed).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.lifecycle import ExpectedPlayers, Lifecycle

# The ticket fields that are text when present (SDK InjectedTicketDTO); `attributes` is an object.
_TEXT_FIELDS = ("team_id", "group_id", "player_ip", "created_at")
# The longest id the local API takes (player, ticket and match ids; sidecar.models uses it).
MAX_ID_CHARS = 128


def usable_id(value: str) -> bool:
    """Whether `value` is an id the local API accepts: 1-128 printable characters. A ticket id
    that is not can never be named by a connect (422), so it can never arrive; a match id that
    is not would be sent on in a header and shown as a metrics label."""
    return 0 < len(value) <= MAX_ID_CHARS and value.isprintable()


@dataclass(frozen=True)
class Ticket:
    """One expected player, as the matchmaker described it."""

    id: str
    team_id: str | None = None
    group_id: str | None = None
    player_ip: str | None = None  # the address the matchmaker saw: a hint, never an identity
    attributes: dict[str, Any] | None = None


@dataclass(frozen=True)
class MatchInfo:
    """What the matchmaker said. `tickets` is None without match data (no `MM_TICKET_IDS`)."""

    match_id: str | None = None
    profile: str | None = None
    expansion: str | None = None
    tickets: Mapping[str, Ticket] | None = None  # in MM_TICKET_IDS order
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # team → ticket ids

    @property
    def has_data(self) -> bool:
        return self.tickets is not None

    def expected(self) -> ExpectedPlayers | None:
        """The tickets and teams as the lifecycle needs them; None without match data."""
        if self.tickets is None:
            return None
        return ExpectedPlayers(tuple(self.tickets), dict(self.teams))

    def team_of(self, ticket: Ticket) -> str | None:
        """The ticket's own team, else the team MM_TEAMS put it in."""
        if ticket.team_id is not None:
            return ticket.team_id
        for team, members in self.teams.items():
            if ticket.id in members:
                return team
        return None


def build_match(
    matchmaker: Mapping[str, Any], given: Collection[str], warnings: list[str]
) -> MatchInfo:
    """`MatchInfo` from `deployment.py`'s parsed matchmaker values. `given` holds the suffix of
    every `MM_TICKET_*` variable that was set (those that were unusable JSON already have their
    warning); one warning is added per other ticket skipped."""
    ids_raw = matchmaker.get("ticket_ids")
    match_id = _text(matchmaker.get("match_id"))
    if match_id is not None and not usable_id(match_id):
        warnings.append(
            f"MM_MATCH_ID is not 1-{MAX_ID_CHARS} printable characters: ignored (the id given "
            "to POST /v1/match/start is used instead)"
        )
        match_id = None
    info = MatchInfo(
        match_id=match_id,
        profile=_text(matchmaker.get("match_profile")),
        expansion=_text(matchmaker.get("expansion")),
    )
    if not isinstance(ids_raw, list):
        return info  # unset, or unusable (deployment.py warned): no match data
    ids = [value for value in ids_raw if isinstance(value, str) and value]
    if len(ids) != len(ids_raw):
        warnings.append(
            f"MM_TICKET_IDS has {len(ids_raw) - len(ids)} entries that are not ticket ids"
        )
    # An id no connect can name would be a player the game can never report: expecting it
    # would end a match that did everything right as a no-show.
    unreachable = [value for value in ids if not usable_id(value)]
    if unreachable:
        ids = [value for value in ids if usable_id(value)]
        warnings.append(
            f"MM_TICKET_IDS has {len(unreachable)} ticket ids that are not 1-{MAX_ID_CHARS} "
            "printable characters (no connect can name them): those tickets are skipped"
        )
    parsed: dict[str, Any] = matchmaker.get("tickets") or {}
    tickets: dict[str, Ticket] = {}
    for ticket_id in dict.fromkeys(ids):
        name = f"MM_TICKET_{ticket_id}"
        if ticket_id == "IDS":
            # Its variable would be the id list itself: no ticket can be given under that name.
            warnings.append(
                'MM_TICKET_IDS lists a ticket id "IDS", whose variable would be the id list '
                "itself: ticket skipped"
            )
            continue
        raw = parsed.get(ticket_id)
        if raw is None:
            if ticket_id not in given:
                warnings.append(f"{name} is not set: ticket skipped")
            continue  # set but unusable: deployment.py already warned about it
        ticket, problem = _ticket(ticket_id, raw)
        if ticket is None:
            warnings.append(f"{name} {problem}: ticket skipped")
            continue
        tickets[ticket_id] = ticket
    teams = _teams(matchmaker.get("teams"), matchmaker.get("groups"), tickets)
    return MatchInfo(info.match_id, info.profile, info.expansion, tickets, teams)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _ticket(ticket_id: str, raw: dict[str, Any]) -> tuple[Ticket | None, str | None]:
    own_id = raw.get("id")
    if own_id is not None and own_id != ticket_id:
        return None, "has an id that is not the one its name and MM_TICKET_IDS give"
    for name in _TEXT_FIELDS:
        if raw.get(name) is not None and not isinstance(raw[name], str):
            return None, f'has a "{name}" that is not text'
    attributes = raw.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        return None, 'has "attributes" that are not an object'
    return (
        Ticket(
            id=ticket_id,
            team_id=raw.get("team_id"),
            group_id=raw.get("group_id"),
            player_ip=raw.get("player_ip"),
            attributes=attributes,
        ),
        None,
    )


def _teams(
    teams_raw: Any, groups_raw: Any, tickets: Mapping[str, Ticket]
) -> dict[str, tuple[str, ...]]:
    """Team → expected ticket ids: from MM_TEAMS (members resolved through MM_GROUPS when they
    are groups), else from the tickets' team_id. Teams with no expected ticket are left out."""
    groups: dict[str, list[str]] = {}
    if isinstance(groups_raw, dict):
        for group, members in groups_raw.items():
            if isinstance(members, list):
                groups[group] = [m for m in members if isinstance(m, str)]
    teams: dict[str, tuple[str, ...]] = {}
    if isinstance(teams_raw, dict):
        for team, members in teams_raw.items():
            if not isinstance(members, list):
                continue
            resolved: list[str] = []
            for member in members:
                if isinstance(member, str):
                    resolved.extend(groups.get(member, [member]))
            kept = tuple(dict.fromkeys(t for t in resolved if t in tickets))
            if kept:
                teams[team] = kept
    if teams:
        return teams
    by_ticket: dict[str, list[str]] = {}
    for ticket in tickets.values():
        if ticket.team_id is not None:
            by_ticket.setdefault(ticket.team_id, []).append(ticket.id)
    return {team: tuple(members) for team, members in by_ticket.items()}


# --- what the API, status and the stop record show ----------------------------------------------
def ticket_document(info: MatchInfo, lifecycle: Lifecycle, ticket_id: str) -> dict[str, Any] | None:
    """One ticket as `GET /v1/match/tickets/{id}` shows it; None when it is not expected."""
    ticket = info.tickets.get(ticket_id) if info.tickets is not None else None
    if ticket is None:
        return None
    player = lifecycle.arrivals.get(ticket_id)
    return {
        "id": ticket.id,
        "team_id": info.team_of(ticket),
        "group_id": ticket.group_id,
        "player_ip": ticket.player_ip,
        "attributes": ticket.attributes,
        "arrived": player is not None,
        "player_id": player,
    }


def match_document(
    info: MatchInfo, lifecycle: Lifecycle, result_delivery: str = "off"
) -> dict[str, Any]:
    """`GET /v1/match` (SPEC §12); without match data, no tickets and no teams."""
    no_show = lifecycle.timers_left().get("no_show")
    tickets = info.tickets or {}
    return {
        "match_id": lifecycle.match_id,
        "profile": info.profile,
        "expansion": info.expansion,
        "expected": lifecycle.expected_count,
        "arrived": lifecycle.arrived_count,
        "quorum": lifecycle.quorum.configured,
        "no_show_deadline_s": round(no_show, 3) if no_show is not None else None,
        "tickets": [ticket_document(info, lifecycle, ticket_id) for ticket_id in tickets],
        "teams": {team: list(members) for team, members in info.teams.items()},
        "result_delivery": result_delivery,
    }


def stop_record_fields(lifecycle: Lifecycle) -> dict[str, Any]:
    """What the `sidecar.stop` record says about the match: `match_id` when there is one, and
    `match` when there is match data."""
    fields: dict[str, Any] = {}
    if lifecycle.match_id is not None:
        fields["match_id"] = lifecycle.match_id
    if lifecycle.expected is not None:
        fields["match"] = {
            "match_id": lifecycle.match_id,
            "expected": lifecycle.expected_count,
            "arrived": lifecycle.arrived_count,
            "missing": lifecycle.missing_tickets(),
            "quorum": lifecycle.quorum.configured,
        }
    return fields
