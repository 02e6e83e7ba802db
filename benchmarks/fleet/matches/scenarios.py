"""What the match simulation plays: the matches (2 teams of 2 tickets), who of their players
shows up, the two sidecar configurations compared (the no-show rule on, or off and the player
timers left to catch it), the stop each combination must end in, when that stop is due, and
when the match could no longer be played. Pure: no I/O.

Timers run at `scale` times their real length (0.1 by default: 60 s become 6 s) so a fleet
fits in minutes; every figure in seconds is in simulated seconds unless a column says it is
scaled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.fleet.scenarios import ROOT

GAME = ROOT / "benchmarks" / "games" / "match_game.py"
TEAMS = ("blue", "red")
PER_TEAM = 2


@dataclass(frozen=True)
class Timings:
    """The real lengths the simulation scales down: the sidecar's defaults, and a lobby that
    gives up after two minutes."""

    scale: float = 0.1
    no_show: float = 60.0  # SIDECAR_NO_SHOW_TIMEOUT (Edgegap's guidance for matched players)
    first_player: float = 120.0  # SIDECAR_FIRST_PLAYER_TIMEOUT
    empty: float = 60.0  # SIDECAR_EMPTY_TIMEOUT
    grace: float = 5.0  # SIDECAR_MATCH_END_GRACE
    result_wait: float = 10.0  # SIDECAR_RESULT_WAIT
    patience: float = 120.0  # how long the players of a half-empty lobby wait before leaving
    play: float = 30.0  # a (short) match

    def s(self, name: str) -> float:
        """The simulated length of a real one, in seconds."""
        return round(float(getattr(self, name)) * self.scale, 3)


@dataclass(frozen=True)
class Scenario:
    name: str
    describe: str
    missing: tuple[tuple[str, int], ...]  # (team, how many of its tickets never connect)
    reason_with_rule: str
    reason_without_rule: str

    def arriving(self, tickets: dict[str, list[str]]) -> list[str]:
        """The tickets whose players connect, from team -> ticket ids."""
        gone = dict(self.missing)
        return [t for team, ids in tickets.items() for t in ids[gone.get(team, 0) :]]

    @property
    def playable(self) -> bool:
        """Every team has someone: the match can be played (short-handed or not)."""
        gone = dict(self.missing)
        return all(gone.get(team, 0) < PER_TEAM for team in TEAMS)


SCENARIOS = [
    Scenario("full", "all 4 players come", (), "match_ended", "match_ended"),
    Scenario(
        "one_missing",
        "3 of 4 come (one red never does)",
        (("red", 1),),
        "match_ended",
        "match_ended",
    ),
    Scenario(
        "team_missing",
        "red never comes (2 of 4; the blue pair waits, gives up, leaves)",
        (("red", PER_TEAM),),
        "no_show",
        "empty_timeout",
    ),
    Scenario(
        "nobody",
        "nobody comes (0 of 4)",
        (("blue", PER_TEAM), ("red", PER_TEAM)),
        "no_show",
        "first_player_timeout",
    ),
]


@dataclass(frozen=True)
class Rule:
    name: str
    describe: str
    on: bool


RULES = [
    Rule("no-show rule", "SIDECAR_NO_SHOW_TIMEOUT=60s (scaled), SIDECAR_MATCH_QUORUM=teams", True),
    Rule("player timers only", "SIDECAR_NO_SHOW_TIMEOUT=0: first-player and empty timers", False),
]


def assignment(index: int) -> tuple[Scenario, Rule]:
    """Round-robin: every scenario under both rules in every block of eight launches, so both
    configurations meet the same machine load and the same result outages."""
    return SCENARIOS[index % len(SCENARIOS)], RULES[(index // len(SCENARIOS)) % len(RULES)]


def expected_reason(scenario: Scenario, rule: Rule) -> str:
    return scenario.reason_with_rule if rule.on else scenario.reason_without_rule


def tickets_of(index: int) -> dict[str, list[str]]:
    """team -> ticket ids, unique in the fleet (ids become MM_TICKET_<id> variable names)."""
    return {team: [f"m{index:04d}{team}{n}" for n in range(PER_TEAM)] for team in TEAMS}


def sidecar_env(timings: Timings, rule: Rule, result_url: str, result_token: str) -> dict[str, str]:
    """What every sidecar of the fleet gets; the rule decides the no-show settings."""
    env = {
        "SIDECAR_PORT": "0",
        "SIDECAR_LOG_STORAGE": "true",
        "SIDECAR_LOG_LEVEL": "info",
        "SIDECAR_READY_TIMEOUT": "60s",
        "SIDECAR_FIRST_PLAYER_TIMEOUT": f"{timings.s('first_player'):g}s",
        "SIDECAR_EMPTY_TIMEOUT": f"{timings.s('empty'):g}s",
        "SIDECAR_MATCH_END_GRACE": f"{timings.s('grace'):g}s",
        "SIDECAR_RESULT_URL": result_url,
        "SIDECAR_RESULT_TOKEN": result_token,
        "SIDECAR_RESULT_WAIT": f"{timings.s('result_wait'):g}s",
        "SIDECAR_STOP_RETRY_BUDGET": "3m",
        "SIDECAR_TERM_GRACE": "2s",
    }
    if rule.on:
        env["SIDECAR_NO_SHOW_TIMEOUT"] = f"{timings.s('no_show'):g}s"
        env["SIDECAR_MATCH_QUORUM"] = "teams"
    else:
        env["SIDECAR_NO_SHOW_TIMEOUT"] = "0"
    return env


def game_env(timings: Timings, arriving: list[str], events: Path) -> dict[str, str]:
    return {
        "MATCH_ARRIVING": ",".join(arriving),
        "MATCH_EVENTS": str(events),
        "MATCH_PLAY": f"{timings.s('play'):g}",
        "MATCH_GRACE": f"{timings.s('grace'):g}",
        "MATCH_PATIENCE": f"{timings.s('patience'):g}",
    }


def _last_sent(events: list[dict[str, Any]], name: str) -> float | None:
    found = [e for e in events if e["event"] == name]
    return float(found[-1].get("sent", found[-1]["t"])) if found else None


def due_time(reason: str, timings: Timings, events: list[dict[str, Any]]) -> float | None:
    """When the sidecar's stop for `reason` was due, from the game's own times (taken before
    each call, so never later than the sidecar's): None when the game never got there."""
    anchor, length = {
        "match_ended": ("match_end", "grace"),
        "no_show": ("ready", "no_show"),
        "empty_timeout": ("disconnect", "empty"),
        "first_player_timeout": ("ready", "first_player"),
    }[reason]
    sent = _last_sent(events, anchor)
    return None if sent is None else sent + timings.s(length)


def unplayable_since(
    scenario: Scenario, timings: Timings, events: list[dict[str, Any]]
) -> float | None:
    """From when the match could no longer be played: a played match, when its end was sent
    plus the grace the game asked for; a match whose players did not all come, when the
    matched players' window (the no-show length, ~60 s) ran out, whether or not the sidecar
    enforces it. Billing after this is zombie time."""
    if scenario.playable:
        end = _last_sent(events, "match_end")
        return None if end is None else end + timings.s("grace")
    ready = _last_sent(events, "ready")
    return None if ready is None else ready + timings.s("no_show")
