"""The example game the demo deploys: where it is, how it is started, how it is configured.

The game is `examples/python_game/server.py` under `edgegap-sidecar run`, driven by the bots of
`examples/python_game/bots.py`; with `--agones` it is `examples/agones_game/server.py`, which
speaks the same UDP protocol but talks only to the Agones SDK API, under SIDECAR_AGONES=true. A
wheel ships them as `sidecar/_examples/`; a source checkout has them under `examples/`.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sidecar

LOOPBACK = "127.0.0.1"

# The sidecar's settings inside the deployment. Every variable is given explicitly so that a
# developer's own SIDECAR_* exports (inherited by the emulator's processes) cannot change the
# demo. The timers are short so the whole lifecycle fits in a few seconds.
SIDECAR_SETTINGS = {
    "SIDECAR_HOST": LOOPBACK,
    "SIDECAR_READY_TIMEOUT": "20s",
    "SIDECAR_FIRST_PLAYER_TIMEOUT": "30s",
    "SIDECAR_EMPTY_TIMEOUT": "30s",
    "SIDECAR_MAX_DURATION": "0",
    "SIDECAR_HEALTH_TIMEOUT": "10s",
    "SIDECAR_MATCH_END_GRACE": "1s",
    "SIDECAR_NETWORK_IDLE_TIMEOUT": "0",
    "SIDECAR_LOG_STORAGE": "true",
    "SIDECAR_ERROR_LOG_STORAGE": "true",
    "SIDECAR_STOP_RETRY_BUDGET": "10s",
    "SIDECAR_STOP_ATTEMPT_TIMEOUT": "2s",
    "SIDECAR_ON_STOP_FAILURE": "exit",
    # The emulator injects the delete URL and token; a missing one must fail, not dry-run.
    "SIDECAR_DRY_RUN": "false",
    "SIDECAR_TERM_GRACE": "2s",
    "SIDECAR_LOG_FORMAT": "text",
    "SIDECAR_LOG_LEVEL": "info",
}
# Game server flags: loopback only, and a heartbeat well inside SIDECAR_HEALTH_TIMEOUT.
GAME_ARGS = ("--host", LOOPBACK, "--heartbeat", "1")
AGONES_GAME_ARGS = ("--host", LOOPBACK, "--health-interval", "1")
# The Agones facade on a free port: run mode hands the game AGONES_SDK_HTTP_PORT.
AGONES_SETTINGS = {"SIDECAR_AGONES": "true", "SIDECAR_AGONES_HTTP_PORT": "0"}


@dataclass(frozen=True)
class ExampleGame:
    server: Path
    bots: Path
    # The repository root when running from a source checkout; None when installed.
    source_root: Path | None
    agones: bool = False

    @property
    def stop_reason(self) -> str:
        """The reason the match's end gives: the Agones game calls Shutdown()."""
        return "shutdown_requested" if self.agones else "match_ended"


def find_example_game(agones: bool = False) -> ExampleGame:
    """The example game shipped in the wheel (`sidecar/_examples/`), else the checkout's;
    FileNotFoundError when neither is there. `agones`: the Agones-only server, with the same
    bots."""
    if getattr(sys, "frozen", False):
        # The standalone build has no Python to run the Python example game with.
        raise FileNotFoundError(
            "the demo runs the Python example game, and the standalone build has no Python: "
            "pip install edgegap-sidecar, then run edgegap-sidecar demo"
        )
    package = Path(sidecar.__file__).resolve().parent
    candidates = (
        (package / "_examples" / "python_game", None),
        (package.parent / "examples" / "python_game", package.parent),
    )
    for directory, source_root in candidates:
        server, bots = directory / "server.py", directory / "bots.py"
        if agones:
            server = directory.parent / "agones_game" / "server.py"
        if server.is_file() and bots.is_file():
            return ExampleGame(server, bots, source_root, agones)
    looked = " or ".join(str(directory) for directory, _ in candidates)
    raise FileNotFoundError(f"no server.py and bots.py in {looked}")


def load_run_bots(path: Path) -> Callable[..., dict[str, Any]]:
    """`run_bots` of the example's bots.py (a script, not a package, so loaded by path);
    ImportError when it cannot be loaded."""
    spec = importlib.util.spec_from_file_location("edgegap_sidecar_demo_bots", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run_bots = getattr(module, "run_bots", None)
    if not callable(run_bots):
        raise ImportError(f"{path} has no run_bots() function")
    return run_bots  # type: ignore[no-any-return]


def backing_command(game: ExampleGame) -> str:
    """The shell command the emulator runs for each deployment of `demo-game`."""
    argv = [sys.executable, "-m", "sidecar", "run", "--", sys.executable, str(game.server)]
    # `exec`: the sidecar replaces the emulator's shell, as it is the container's entrypoint on
    # Edgegap, so the platform's SIGTERM reaches it directly and its exit is the deployment's.
    return "exec " + shlex.join([*argv, *(AGONES_GAME_ARGS if game.agones else GAME_ARGS)])


def deployment_env(game: ExampleGame, sidecar_port: int, api_token: str) -> dict[str, str]:
    """Environment variables of the deploy request (the platform adds ARBITRIUM_* itself)."""
    env = {**SIDECAR_SETTINGS, "SIDECAR_PORT": str(sidecar_port), "SIDECAR_API_TOKEN": api_token}
    if game.agones:
        env.update(AGONES_SETTINGS)
    if game.source_root is not None:
        # From an uninstalled checkout `python -m sidecar` only works from the repository root;
        # the deployment's process may run elsewhere, so point it at this very package.
        inherited = os.environ.get("PYTHONPATH")
        parts = [str(game.source_root), *([inherited] if inherited else [])]
        env["PYTHONPATH"] = os.pathsep.join(parts)
    return env
