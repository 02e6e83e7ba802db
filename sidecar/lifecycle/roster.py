"""Who is on the server: the player roster and its bound, and the matchmaker's tickets with the
quorum that makes a match playable (SPEC §12).

Part of the pure core (sidecar.lifecycle): nothing of ours beyond it, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# The most players the roster holds, named or anonymous (SPEC §11: documented, at least 10,000).
# Every status, event and metrics scrape carries the ids: unbounded, 50k ids made a 6.2 MB status.
ROSTER_CAP = 10_000


class RosterFull(Exception):
    """A roster change that would exceed ROSTER_CAP, or that a roster limit refused (the API
    answers 422)."""

    def __init__(self, wanted: int, why: str | None = None) -> None:
        super().__init__(
            why
            or f"the roster holds at most {ROSTER_CAP} players; this change would make it {wanted}"
        )
        self.wanted = wanted


class UnknownTicket(Exception):
    """A connect naming a ticket the matchmaker did not send (the API answers 422)."""

    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"ticket {ticket_id!r} is not one of this match's tickets")
        self.ticket_id = ticket_id


class QuorumRule(StrEnum):
    """How SIDECAR_MATCH_QUORUM counts."""

    COUNT = "count"  # that many arrivals (capped at the number of tickets)
    ALL = "all"  # every ticket
    TEAMS = "teams"  # at least one arrival in every team (no team data: as a count of 1)


@dataclass(frozen=True)
class Quorum:
    """How many arrivals make the match playable (SPEC §12, `SIDECAR_MATCH_QUORUM`)."""

    rule: QuorumRule = QuorumRule.COUNT
    count: int = 1

    def __str__(self) -> str:
        return str(self.count) if self.rule is QuorumRule.COUNT else self.rule.value

    @property
    def configured(self) -> int | str:
        """As configured, for JSON: the number, or `all` / `teams`."""
        return self.count if self.rule is QuorumRule.COUNT else self.rule.value

    def met(self, expected: ExpectedPlayers, arrived: Collection[str]) -> bool:
        """True once `arrived` (ticket ids) is enough."""
        if self.rule is QuorumRule.TEAMS and expected.teams:
            return all(
                any(ticket in arrived for ticket in team) for team in expected.teams.values()
            )
        if self.rule is QuorumRule.ALL:
            needed = len(expected.tickets)
        else:  # a count, or teams without team data: as `1`
            needed = self.count if self.rule is QuorumRule.COUNT else 1
        return len(arrived) >= min(needed, len(expected.tickets))


@dataclass(frozen=True)
class ExpectedPlayers:
    """The matchmaker's tickets as the lifecycle needs them (SPEC §12): one expected player per
    ticket id, and the teams (team id → ticket ids; empty without team data). Built by
    sidecar.match from the MM_* variables."""

    tickets: tuple[str, ...]
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# Another bound on the roster, from an adapter that shows it (the Agones GameServer's 1 MiB):
# given the ids and count a change would leave, a text refuses the change (RosterFull).
RosterLimit = Callable[[list[str], int], str | None]


@dataclass
class Roster:
    """Connected players: named ids plus anonymous ones (from `PUT /v1/players {count}`), and
    the adapters' limits on it (`RosterLimit`)."""

    ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    anonymous: int = 0
    limits: list[RosterLimit] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.ids) + self.anonymous

    def add(self, player_id: str) -> bool:
        """Add a named player; False when it was already here. `RosterFull` (and no change)
        beyond ROSTER_CAP or when a limit refuses it."""
        if player_id in self.ids:
            return False
        if self.count >= ROSTER_CAP:
            raise RosterFull(self.count + 1)
        if self.limits:  # the id list is only built when someone asks (10,000 ids at worst)
            self._check_limits([*self.ids, player_id], self.count + 1)
        self.ids[player_id] = None
        return True

    def remove(self, player_id: str) -> bool:
        """Remove a player; an unknown id set by count is one of the anonymous players."""
        if player_id in self.ids:
            del self.ids[player_id]
            return True
        if self.anonymous > 0:
            self.anonymous -= 1
            return True
        return False

    def replace(self, ids: Iterable[str] | None, count: int | None) -> None:
        """Exactly these ids, or `count` anonymous players; `RosterFull` (and no change) beyond
        ROSTER_CAP or when a limit refuses it."""
        named = dict.fromkeys(ids) if ids is not None else {}
        anonymous = 0 if ids is not None else max(0, count or 0)
        wanted = len(named) + anonymous
        if wanted > ROSTER_CAP:
            raise RosterFull(wanted)
        if self.limits:
            self._check_limits(list(named), wanted)
        self.ids, self.anonymous = named, anonymous

    def _check_limits(self, ids: list[str], count: int) -> None:
        for limit in self.limits:
            why = limit(ids, count)
            if why is not None:
                raise RosterFull(count, why)


class Arrivals:
    """The matchmaker's tickets (None: no match data) and the ones that arrived, each with the
    first player that brought it; an arrived ticket stays arrived (SPEC §12)."""

    def __init__(self, expected: ExpectedPlayers | None, quorum: Quorum) -> None:
        self.expected = expected
        self.quorum = quorum
        self.ticket_ids: frozenset[str] = frozenset(expected.tickets if expected else ())
        self.arrived: dict[str, str] = {}
        self.quorum_met = expected is None or quorum.met(expected, ())

    def arrive(self, ticket_id: str, player_id: str) -> None:
        if ticket_id in self.ticket_ids and ticket_id not in self.arrived:
            self.arrived[ticket_id] = player_id
            if not self.quorum_met and self.expected is not None:
                self.quorum_met = self.quorum.met(self.expected, self.arrived)

    def missing(self) -> list[str]:
        """The expected tickets that have not arrived, in the matchmaker's order."""
        if self.expected is None:
            return []
        return [ticket for ticket in self.expected.tickets if ticket not in self.arrived]
