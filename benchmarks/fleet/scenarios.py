"""The failure modes of the fleet: what each deployment's game does, the stop it must cause, and
how its due time is computed; the settings every sidecar of the fleet gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GAME = ROOT / "benchmarks" / "games" / "fleet_game.py"
BROKEN = ROOT / "benchmarks" / "games" / "broken_stdout.py"

LATE_TARGET = 1.0  # seconds beyond the stop's window + the platform's outage
MIN_RETRY = 0.5  # SPEC §11: no retry sooner than this after the previous answer
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0  # SPEC §6
# Roughly what a sidecar and its game take to start (python, aiohttp, the API, the game).
STARTUP_GUESS = 1.5
PLAY = 4.0  # seconds of "match" in the modes that play one
GRACE = 1.0  # match end / shutdown grace
SIGTERM_LINE = b"game got SIGTERM"
LAST_GAME_LINE = b"game fatal: assertion failed in physics step"

# Every sidecar gets these; each mode then sets the timer it is about.
BASE_ENV = {
    "SIDECAR_PORT": "0",
    "SIDECAR_LOG_STORAGE": "true",
    "SIDECAR_READY_TIMEOUT": "60s",
    "SIDECAR_MATCH_END_GRACE": f"{GRACE:g}s",
    "SIDECAR_STOP_RETRY_BUDGET": "3m",
    "SIDECAR_TERM_GRACE": "2s",
    "SIDECAR_LOG_LEVEL": "info",
    "FLEET_PLAY": f"{PLAY:g}",
    "FLEET_GRACE": f"{GRACE:g}",
}


@dataclass(frozen=True)
class Mode:
    name: str
    reason: str
    anchor: str  # the game's event the timer runs from ("sidecar_start": the sidecar's start)
    timer: float  # seconds from the anchor to the stop
    rule: str  # how "stop due" is computed, for the output
    nominal: float  # roughly when the stop is due, seconds after the launch (to time faults)
    env: dict[str, str] = field(default_factory=dict)
    game_exits: bool = False  # the stop follows the game's exit: all its output precedes it


MODES = [
    Mode("normal", "match_ended", "match_end", GRACE,
         f"match end sent + {GRACE:g} s grace", PLAY + GRACE),
    Mode("crash", "game_crashed", "exit", 0.0,
         "game exit (code 3, mid-line)", PLAY, game_exits=True),
    Mode("hang", "unhealthy", "heartbeat", 3.0,
         "last heartbeat sent + 3 s SIDECAR_HEALTH_TIMEOUT", PLAY - 0.5 + 3.0,
         {"SIDECAR_HEALTH_TIMEOUT": "3s"}),
    Mode("never_ready", "ready_timeout", "sidecar_start", 8.0,
         "sidecar start + 8 s SIDECAR_READY_TIMEOUT", 8.0, {"SIDECAR_READY_TIMEOUT": "8s"}),
    Mode("no_players", "first_player_timeout", "ready", 5.0,
         "ready sent + 5 s SIDECAR_FIRST_PLAYER_TIMEOUT", 5.0,
         {"SIDECAR_FIRST_PLAYER_TIMEOUT": "5s"}),
    Mode("empty", "empty_timeout", "disconnect", 4.0,
         "last disconnect sent + 4 s SIDECAR_EMPTY_TIMEOUT", PLAY + 4.0,
         {"SIDECAR_EMPTY_TIMEOUT": "4s"}),
    Mode("never_ends", "max_duration", "sidecar_start", 12.0,
         "sidecar start + 12 s SIDECAR_MAX_DURATION", 12.0, {"SIDECAR_MAX_DURATION": "12s"}),
    Mode("ignore_term", "shutdown_requested", "shutdown", GRACE,
         f"shutdown sent + {GRACE:g} s grace (game ignores SIGTERM)", PLAY + GRACE),
    Mode("broken_stdout", "game_crashed", "exit", 0.0,
         "game exit (code 3), sidecar stdout a broken pipe", PLAY, game_exits=True),
]  # fmt: skip
