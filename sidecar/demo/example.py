"""The example game the demo deploys: where it is, how it is started, how it is configured.

The game is `examples/python_game/server.py` under `edgegap-sidecar run`, driven by the bots of
`examples/python_game/bots.py`; with `--agones` it is `examples/agones_game/server.py`, which
speaks the same UDP protocol but talks only to the Agones SDK REST API, under SIDECAR_AGONES=true.
A wheel ships them as `sidecar/_examples/`; a source checkout has them under `examples/`.

With `--agones --grpc` it is `examples/agones_node_game/server.js` (source checkout only), the
same protocol again on Agones' published Node.js SDK, which talks gRPC to the sidecar. It needs
`node` and `@google-cloud/agones-sdk`: installed next to it (`npm install` there, what its README
says), or the copy the tests use (`npm ci --prefix tests/agones_node`), handed over in NODE_PATH.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sidecar
from sidecar.emulator.environment import GAME_PORT_NAME, port_env_name
from sidecar.errors import UsageError

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
# The Agones facade on free ports: run mode hands the game AGONES_SDK_HTTP_PORT and
# AGONES_SDK_GRPC_PORT. Both given, so an exported SIDECAR_AGONES_GRPC_PORT cannot leak in and
# the demo never takes Agones' fixed 9357 from anything else on the machine.
AGONES_SETTINGS = {
    "SIDECAR_AGONES": "true",
    "SIDECAR_AGONES_HTTP_PORT": "0",
    "SIDECAR_AGONES_GRPC_PORT": "0",
}
# The Node game binds --port (it does not read ARBITRIUM_PORTS_MAPPING): the emulator's shell
# expands the internal game port the platform injects, as a Dockerfile's CMD would.
NODE_GAME_PORT_VARIABLE = f"ARBITRIUM_PORT_{port_env_name(GAME_PORT_NAME)}_INTERNAL"
NODE_SDK = Path("node_modules", "@google-cloud", "agones-sdk")


@dataclass(frozen=True)
class NodeRuntime:
    """How the gRPC example game is started: the `node` executable and, when the SDK is not
    installed next to server.js, the node_modules folder that holds it (for NODE_PATH)."""

    node: str
    node_path: Path | None


@dataclass(frozen=True)
class ExampleGame:
    server: Path
    bots: Path
    # The repository root when running from a source checkout; None when installed.
    source_root: Path | None
    agones: bool = False
    # --agones --grpc: server.js, run by this node.
    node: NodeRuntime | None = None

    @property
    def stop_reason(self) -> str:
        """The reason the match's end gives: the Agones game calls Shutdown()."""
        return "shutdown_requested" if self.agones else "match_ended"

    @property
    def sdk_wire(self) -> str:
        """How an Agones game talks to the sidecar, for the timeline."""
        if self.node is not None:
            return "gRPC: Agones' Node.js SDK (@google-cloud/agones-sdk) on AGONES_SDK_GRPC_PORT"
        return "REST: Agones' SDK HTTP API on AGONES_SDK_HTTP_PORT"


def find_example_game(agones: bool = False, grpc: bool = False) -> ExampleGame:
    """The example game shipped in the wheel (`sidecar/_examples/`), else the checkout's;
    FileNotFoundError when neither is there. `agones`: the Agones-only server, with the same
    bots; with `grpc`, the Node.js one (UsageError, saying what to install, when it cannot run:
    find_node_game)."""
    if grpc:
        return find_node_game()
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


def find_node_game() -> ExampleGame:
    """`examples/agones_node_game/server.js` with the checkout's Python bots, and the `node`
    and Agones SDK to run it with; UsageError naming what to install when one is missing."""
    try:
        python_game = find_example_game()
    except FileNotFoundError:
        # The standalone build, or an install without its examples: no checkout either way.
        python_game = None
    checkout = None if python_game is None else python_game.source_root
    server = Path(checkout or ".", "examples", "agones_node_game", "server.js")
    if python_game is None or checkout is None or not server.is_file():
        raise UsageError(
            "--grpc: the Node.js example game comes with a source checkout of edgegap-sidecar, "
            "not with the installed package: run the demo from a clone of its repository"
        )
    runtime = node_runtime(server, checkout, shutil.which("node"))
    return ExampleGame(server, python_game.bots, checkout, True, runtime)


def node_runtime(server: Path, checkout: Path, node: str | None) -> NodeRuntime:
    """`node` and where Agones' Node SDK is for `server` (server.js in `checkout`): next to it,
    else the tests' copy (tests/agones_node); UsageError naming what to install if missing."""
    install = f"npm install --prefix {shlex.quote(str(server.parent))}"
    if node is None:
        raise UsageError(
            "--grpc: the example game runs on Node.js and `node` is not on PATH: install "
            f"Node.js (https://nodejs.org/), then its Agones SDK with `{install}`"
        )
    if (server.parent / NODE_SDK).is_dir():
        return NodeRuntime(node, None)  # node finds it from server.js by itself
    tests_copy = checkout / "tests" / "agones_node"
    if (tests_copy / NODE_SDK).is_dir():
        return NodeRuntime(node, tests_copy / "node_modules")
    raise UsageError(
        "--grpc: the example game needs Agones' Node.js SDK (@google-cloud/agones-sdk), which "
        f"is not installed: run `{install}`"
    )


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
    runtime = sys.executable if game.node is None else game.node.node
    argv = [sys.executable, "-m", "sidecar", "run", "--", runtime, str(game.server)]
    # `exec`: the sidecar replaces the emulator's shell, as it is the container's entrypoint on
    # Edgegap, so the platform's SIGTERM reaches it directly and its exit is the deployment's.
    command = "exec " + shlex.join([*argv, *(AGONES_GAME_ARGS if game.agones else GAME_ARGS)])
    if game.node is not None:
        command += f' --port "${NODE_GAME_PORT_VARIABLE}"'
    return command


def describe_game(game: ExampleGame) -> str:
    """The backing command as a user would type it, for the timeline."""
    script = f"{game.server.parent.name}/{game.server.name}"
    words = ["SIDECAR_AGONES=true"] if game.agones else []
    if game.node is None:
        return " ".join([*words, "edgegap-sidecar run -- python", script])
    if game.node.node_path is not None:
        where = game.node.node_path
        if game.source_root is not None and where.is_relative_to(game.source_root):
            where = where.relative_to(game.source_root)
        words.append(f"NODE_PATH={where}")
    port = f"--port ${NODE_GAME_PORT_VARIABLE}"
    return " ".join([*words, "edgegap-sidecar run -- node", script, port])


def deployment_env(game: ExampleGame, sidecar_port: int, api_token: str) -> dict[str, str]:
    """Environment variables of the deploy request (the platform adds ARBITRIUM_* itself)."""
    env = {**SIDECAR_SETTINGS, "SIDECAR_PORT": str(sidecar_port), "SIDECAR_API_TOKEN": api_token}
    if game.agones:
        env.update(AGONES_SETTINGS)
    if game.node is not None and game.node.node_path is not None:
        env["NODE_PATH"] = _prepend(str(game.node.node_path), "NODE_PATH")
    if game.source_root is not None:
        # From an uninstalled checkout `python -m sidecar` only works from the repository root;
        # the deployment's process may run elsewhere, so point it at this very package.
        env["PYTHONPATH"] = _prepend(str(game.source_root), "PYTHONPATH")
    return env


def _prepend(path: str, variable: str) -> str:
    """`path` first, then the caller's own `variable`: the deployment's value replaces it."""
    inherited = os.environ.get(variable)
    return os.pathsep.join([path, *([inherited] if inherited else [])])
