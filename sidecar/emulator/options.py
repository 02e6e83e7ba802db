"""Emulator settings (`EmulatorOptions`) and the `emulate` command-line flags that build them.

Settings are plain data: the CLI builds them once with `options_from_args`, tests build
`EmulatorOptions(...)` directly. Bad flag values raise `UsageError` naming the flag.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from sidecar.emulator.faults import FaultSpec
from sidecar.errors import UsageError

RestartPolicy = Literal["always", "never", "on_failure"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("always", "never", "on_failure")

_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FAULT = re.compile(r"^(\d{3})(?:x(\d+))?$")
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)(?:x(\d+))?$")


@dataclass(frozen=True)
class EmulatorOptions:
    """Everything the emulator needs to run; defaults match `edgegap-sidecar emulate`."""

    host: str = "127.0.0.1"
    port: int = 9000
    # None: any non-empty `authorization: token <X>` is accepted, like an unconfigured sandbox.
    api_token: str | None = None
    # Application name -> shell command that backs deployments of that application.
    apps: dict[str, str] = field(default_factory=dict)
    restart_policy: RestartPolicy = "always"
    # Pause before a crashed process is restarted, so a crash loop does not spin a CPU.
    restart_delay_seconds: float = 1.0
    stop_grace_seconds: float = 5.0
    status_step_seconds: float = 0.2
    # Internal game port given to deployments; 0 picks a free port per deployment.
    game_port: int = 7777
    game_port_protocol: str = "UDP"
    public_ip: str = "127.0.0.1"
    metrics_interval_seconds: float = 1.0
    faults: tuple[FaultSpec, ...] = ()
    # Show tokens as sent in /_emulator/requests (default: redacted, so a CI log can print it).
    show_tokens: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the `emulate` flags on `parser`; values are checked by `options_from_args`."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", default="9000", help="port, 0 for any free port (default 9000)")
    parser.add_argument(
        "--api-token",
        default=None,
        help="required management token (default: any non-empty token is accepted)",
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="back deployments of application NAME with a local process running COMMAND",
    )
    parser.add_argument(
        "--restart-policy",
        default="always",
        help="always|never|on_failure: what happens when a backed process exits (default always)",
    )
    parser.add_argument(
        "--restart-delay", default="1", help="seconds before a crashed process is restarted"
    )
    parser.add_argument(
        "--game-port",
        default="7777",
        help="internal game port given to deployments, 0 for a free port each (default 7777)",
    )
    parser.add_argument(
        "--stop-grace", default="5", help="seconds between SIGTERM and SIGKILL (default 5)"
    )
    parser.add_argument(
        "--status-step", default="0.2", help="seconds per deployment status step (default 0.2)"
    )
    parser.add_argument(
        "--show-tokens",
        action="store_true",
        help="show authorization headers as sent in /_emulator/requests (default: redacted)",
    )
    parser.add_argument(
        "--self-stop-fault",
        action="append",
        default=[],
        metavar="STATUSxN",
        help="answer the next N self-stop calls with STATUS, e.g. 503x2 (repeatable, in order)",
    )
    parser.add_argument(
        "--self-stop-delay",
        action="append",
        default=[],
        metavar="SECONDS[xN]",
        help="delay the next N (default 1) self-stop calls by SECONDS, e.g. 1.5 or 1.5x2",
    )
    parser.add_argument(
        "--self-stop-retry-after",
        default=None,
        metavar="VALUE",
        help="Retry-After header sent with --self-stop-fault answers (seconds or HTTP date)",
    )


def options_from_args(ns: argparse.Namespace) -> EmulatorOptions:
    """Turn parsed `emulate` flags into options; raises UsageError on a bad value."""
    retry_after = _optional_text(ns, "self_stop_retry_after")
    faults = [_status_fault(text, retry_after) for text in getattr(ns, "self_stop_fault", [])]
    faults += [_delay_fault(text) for text in getattr(ns, "self_stop_delay", [])]
    api_token = _optional_text(ns, "api_token")
    if api_token is not None and not api_token.strip():
        raise UsageError("--api-token: expected a non-empty token")
    host = str(getattr(ns, "host", "127.0.0.1")).strip()
    if not host:
        raise UsageError("--host: expected an address such as 127.0.0.1")
    return EmulatorOptions(
        host=host,
        port=_port("--port", getattr(ns, "port", "9000")),
        api_token=api_token,
        apps=_apps(getattr(ns, "app", [])),
        restart_policy=_restart_policy(getattr(ns, "restart_policy", "always")),
        restart_delay_seconds=_seconds("--restart-delay", getattr(ns, "restart_delay", "1")),
        stop_grace_seconds=_seconds("--stop-grace", getattr(ns, "stop_grace", "5")),
        status_step_seconds=_seconds("--status-step", getattr(ns, "status_step", "0.2")),
        game_port=_port("--game-port", getattr(ns, "game_port", "7777")),
        faults=tuple(faults),
        show_tokens=bool(getattr(ns, "show_tokens", False)),
    )


def _optional_text(ns: argparse.Namespace, name: str) -> str | None:
    value = getattr(ns, name, None)
    return None if value is None else str(value)


def _port(flag: str, value: object) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise UsageError(f"{flag}: expected a port number 0-65535, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"{flag}: expected a port number 0-65535, got {value!r}")
    return port


def _seconds(flag: str, value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        raise UsageError(f"{flag}: expected a number of seconds >= 0, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{flag}: expected a number of seconds >= 0, got {value!r}")
    return seconds


def _restart_policy(value: object) -> RestartPolicy:
    text = str(value)
    if text not in RESTART_POLICIES:
        raise UsageError(f"--restart-policy: expected always, never or on_failure, got {text!r}")
    return text


def _apps(values: list[str]) -> dict[str, str]:
    apps: dict[str, str] = {}
    for value in values:
        name, sep, command = value.partition("=")
        name, command = name.strip(), command.strip()
        if not sep or not command or not _APP_NAME.match(name):
            raise UsageError(f"--app: expected NAME=COMMAND, got {value!r}")
        if name in apps:
            raise UsageError(f"--app: application {name!r} is given twice")
        apps[name] = command
    return apps


def _status_fault(text: str, retry_after: str | None) -> FaultSpec:
    match = _FAULT.match(text.strip())
    if match is None or not 200 <= int(match.group(1)) <= 599 or match.group(2) == "0":
        raise UsageError(f"--self-stop-fault: expected STATUSxCOUNT such as 503x2, got {text!r}")
    count = int(match.group(2) or 1)
    return FaultSpec(status=int(match.group(1)), count=count, retry_after=retry_after)


def _delay_fault(text: str) -> FaultSpec:
    match = _DELAY.match(text.strip())
    if match is None or match.group(2) == "0":
        raise UsageError(f"--self-stop-delay: expected SECONDS[xCOUNT] such as 1.5x2, got {text!r}")
    count = int(match.group(2) or 1)
    return FaultSpec(status=None, count=count, delay_seconds=float(match.group(1)))
