"""The `demo` command's flags and the options they build (plain data, checked once)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from sidecar.errors import UsageError


@dataclass(frozen=True)
class DemoOptions:
    """What `edgegap-sidecar demo` was asked for; defaults match its flags."""

    players: int = 4
    rounds: int = 3
    timeout: float = 60.0
    quiet: bool = False
    # The Agones-only example game under SIDECAR_AGONES=true (SPEC §10) instead of the one that
    # uses the sidecar's own API.
    agones: bool = False
    # With `agones`: the example game on Agones' Node.js SDK, which talks gRPC to the sidecar
    # (AGONES_SDK_GRPC_PORT) instead of REST; needs `node` and the SDK installed (example.py).
    grpc: bool = False
    # Leave the emulator (and its dashboard) up after the match, until Ctrl-C or SIGTERM.
    keep: bool = False
    # Two matchmaker matches (POST /_emulator/matches) instead of a plain deployment: one the
    # bots play to its result, one where a player never shows up (no_show, SPEC §12); both
    # deliver their result to the emulator's result sink.
    match: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the `demo` flags on `parser`; values are checked by `options_from_args`."""
    parser.add_argument("--players", default="4", help="simulated players, 1-32 (default 4)")
    parser.add_argument(
        "--rounds", default="3", help="scores each player sends before leaving, 1-100 (default 3)"
    )
    parser.add_argument(
        "--timeout", default="60", help="give up after this many seconds (default 60)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only the outcome, not the timeline"
    )
    parser.add_argument(
        "--agones",
        action="store_true",
        help="deploy the example game that uses only the Agones SDK, over REST "
        "(SIDECAR_AGONES=true)",
    )
    parser.add_argument(
        "--grpc",
        action="store_true",
        help="with --agones: the example game on Agones' Node.js SDK, which talks gRPC to the "
        "sidecar (needs node, and `npm install` in examples/agones_node_game)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the emulator and its dashboard up after the match, until Ctrl-C",
    )
    parser.add_argument(
        "--match",
        action="store_true",
        help="two matchmaker matches of --players tickets, each delivering its result to the "
        "emulator's result sink: one played to its end, one where a player never shows up "
        "(the sidecar stops it for no_show)",
    )


def options_from_args(ns: argparse.Namespace) -> DemoOptions:
    """Turn parsed `demo` flags into options; raises UsageError naming a bad flag."""
    return DemoOptions(
        players=_count("--players", getattr(ns, "players", "4"), 32),
        # At least one round: the example game ends a match only once somebody has scored.
        rounds=_count("--rounds", getattr(ns, "rounds", "3"), 100),
        timeout=_timeout(getattr(ns, "timeout", "60")),
        quiet=bool(getattr(ns, "quiet", False)),
        agones=_agones_or_match(ns),
        grpc=_grpc(ns),
        keep=bool(getattr(ns, "keep", False)),
        match=bool(getattr(ns, "match", False)),
    )


def _agones_or_match(ns: argparse.Namespace) -> bool:
    agones = bool(getattr(ns, "agones", False))
    if agones and getattr(ns, "match", False):
        raise UsageError("--match runs the example game of the sidecar's own API: drop --agones")
    return agones


def _grpc(ns: argparse.Namespace) -> bool:
    grpc = bool(getattr(ns, "grpc", False))
    if grpc and not getattr(ns, "agones", False):
        raise UsageError("--grpc picks the SDK of the Agones example game: use --agones --grpc")
    return grpc


def _count(flag: str, value: object, maximum: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if not 1 <= number <= maximum:
        raise UsageError(f"{flag}: expected a whole number from 1 to {maximum}, got {value!r}")
    return number


def _timeout(value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"--timeout: expected a number of seconds > 0, got {value!r}")
    return seconds
