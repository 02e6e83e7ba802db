"""Emulator settings (`EmulatorOptions`) and the `emulate` command-line flags that build them.

Over 400 lines on purpose: mostly flag definitions with their help texts, one per option.

Settings are plain data: the CLI builds them once with `options_from_args`, tests build
`EmulatorOptions(...)` directly. Bad flag values raise `UsageError` naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import socket
from dataclasses import dataclass, field
from typing import Literal

from sidecar.addresses import is_loopback
from sidecar.emulator.apps import (
    DEFAULT_TIME_TO_DEPLOY,
    RESTART_POLICIES,
    AppPort,
    AppVersion,
    AppVersionFile,
    RestartPolicy,
    read_app_version,
)
from sidecar.emulator.console import LOG_FORMATS, LogFormat
from sidecar.emulator.faults import FaultSpec
from sidecar.errors import UsageError

IsolationChoice = Literal["auto", "netns", "ports"]
ISOLATION_CHOICES: tuple[IsolationChoice, ...] = ("auto", "netns", "ports")

_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# An endpoint storage name as the platform's identifiers go: no spaces, no punctuation soup.
STORAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FAULT = re.compile(r"^(\d{3})(?:x(\d+))?$")
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)(?:x(\d+))?$")
# Shorter is neither a secret nor something redaction can hide without mangling logs (SPEC §11).
MIN_API_TOKEN_LENGTH = 8


@dataclass(frozen=True)
class EmulatorOptions:
    """Everything the emulator needs to run; defaults match `edgegap-sidecar emulate` except
    `isolation` ("ports" here, "auto" for the command: in-process tests often talk to a
    deployment's sidecar from the host, which a namespace would hide)."""

    host: str = "127.0.0.1"
    port: int = 9000
    # None: any non-empty `authorization: token <X>` is accepted, like an unconfigured sandbox.
    api_token: str | None = None
    # Application name -> shell command that backs deployments of that application.
    apps: dict[str, str] = field(default_factory=dict)
    # The default restart policy, and per application (`--restart-policy NAME=POLICY`).
    restart_policy: RestartPolicy = "always"
    restart_policies: dict[str, RestartPolicy] = field(default_factory=dict)
    # Application name -> its app version fields (`--app-version NAME=FILE`).
    app_versions: dict[str, AppVersionFile] = field(default_factory=dict)
    # The port readiness check's budget, unless an app version file sets its own.
    time_to_deploy_seconds: float = DEFAULT_TIME_TO_DEPLOY
    # Pause before a crashed process is restarted, so a crash loop does not spin a CPU.
    restart_delay_seconds: float = 1.0
    stop_grace_seconds: float = 5.0
    status_step_seconds: float = 0.2
    # The port of an app version without a file: its number (0: a free port per deployment),
    # protocol, and whether READY waits for the process to listen on it (`to_check`).
    game_port: int = 7777
    game_port_protocol: str = "UDP"
    game_port_check: bool = True
    # How backed deployments are kept apart: "netns" (own network namespace, needs root),
    # "ports" (distinct ports on the host) or "auto" (netns when possible).
    isolation: IsolationChoice = "ports"
    # Endpoint storages that exist (`--endpoint-storage NAME`), beside the built-in one.
    endpoint_storages: tuple[str, ...] = ()
    public_ip: str = "127.0.0.1"
    metrics_interval_seconds: float = 1.0
    faults: tuple[FaultSpec, ...] = ()
    # Show tokens as sent in /_emulator/requests (default: redacted, so a CI log can print it).
    show_tokens: bool = False
    # The reference's rate limits (deploy 40/s, status 20/s, list 10/s): 429 beyond them.
    rate_limits: bool = False
    # Active deployments per location (None: unlimited); beyond it a deploy answers 503.
    location_capacity: int | None = None
    # Where `run_emulator` writes its base URL once it listens (for `--port 0` in scripts).
    url_file: str | None = None
    # The console of `run_emulator` (console.py): its format, and every backed deployment's
    # output there too, prefixed by its request id (`--follow`).
    log_format: LogFormat = "text"
    follow: bool = False
    # Accept match result deliveries at POST /_emulator/results (`--result-sink`).
    result_sink: bool = False

    def app_version(self, app_name: str) -> AppVersion:
        """What deployments of `app_name` run as: the defaults, its file, then its flags."""
        base = AppVersion(
            command=self.apps.get(app_name),
            restart_policy=self.restart_policy,
            time_to_deploy=self.time_to_deploy_seconds,
            grace_seconds=self.stop_grace_seconds,
            ports=(
                AppPort(
                    port=self.game_port,
                    protocol=self.game_port_protocol,
                    to_check=self.game_port_check,
                ),
            ),
        )
        version = self.app_versions.get(app_name)
        if version is not None:
            base = version.apply(base)
        policy = self.restart_policies.get(app_name)
        if policy is not None and policy != base.restart_policy:
            base = dataclasses.replace(base, restart_policy=policy)
        return base


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
        action="append",
        default=[],
        metavar="[NAME=]POLICY",
        help="always|never|on_failure: what happens when a backed process exits (default "
        "always); NAME=POLICY for one application (repeatable)",
    )
    parser.add_argument(
        "--app-version",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="app version fields of application NAME from a JSON file in the platform's shape "
        "(restart_policy, time_to_deploy, termination_grace_period_seconds, ports, "
        "max_duration, envs, endpoint_storage)",
    )
    parser.add_argument(
        "--time-to-deploy",
        default=str(DEFAULT_TIME_TO_DEPLOY),
        metavar="SECONDS",
        help="how long a backed process may take to listen on its checked ports before the "
        f"deployment goes Status.ERROR (default {DEFAULT_TIME_TO_DEPLOY:g})",
    )
    parser.add_argument(
        "--isolation",
        default="auto",
        help="auto|netns|ports: each backed deployment in its own network namespace (netns, "
        "needs root) or on distinct host ports (ports); auto picks netns when it can",
    )
    parser.add_argument(
        "--location-capacity",
        default=None,
        metavar="N",
        help="active deployments each location holds (default unlimited); a deploy beyond "
        "answers 503 and /v1/locations?app=&version= leaves full locations out",
    )
    parser.add_argument(
        "--endpoint-storage",
        action="append",
        default=[],
        metavar="NAME",
        help="an endpoint storage that exists, for container_log_storage=NAME (repeatable)",
    )
    parser.add_argument(
        "--restart-delay", default="1", help="seconds before a crashed process is restarted"
    )
    parser.add_argument(
        "--game-port",
        default="7777",
        help="the app versions' game port, 0 for a free port each (default 7777)",
    )
    parser.add_argument(
        "--game-port-protocol",
        default="UDP",
        help="protocol of the game port: UDP, TCP, TCP/UDP, HTTP, HTTPS, WS, WSS (default UDP)",
    )
    parser.add_argument(
        "--no-port-check",
        action="store_true",
        help="READY without waiting for the game port (the app version's to_check: false)",
    )
    parser.add_argument(
        "--stop-grace", default="5", help="seconds between SIGTERM and SIGKILL (default 5)"
    )
    parser.add_argument(
        "--status-step", default="0.2", help="seconds per deployment status step (default 0.2)"
    )
    parser.add_argument(
        "--url-file",
        default=None,
        metavar="PATH",
        help="write the base URL (e.g. http://127.0.0.1:41234) to PATH once listening; with "
        "--port 0 a script reads it instead of parsing stdout",
    )
    parser.add_argument(
        "--rate-limits",
        action="store_true",
        help="enforce the reference's rate limits (deploy 40/s, status 20/s, list 10/s): "
        "429 with Retry-After beyond them (default off)",
    )
    parser.add_argument(
        "--show-tokens",
        action="store_true",
        help="show authorization headers as sent in /_emulator/requests (default: redacted)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        metavar="text|json",
        help="the console's lines, one per deployment event: text (default) or json (one "
        "object per line)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="also print every backed deployment's output live, each line prefixed by its "
        "request id",
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
        "--result-sink",
        action="store_true",
        help="accept match result deliveries (a sidecar's SIDECAR_RESULT_URL) at POST "
        "/_emulator/results, listed by GET /_emulator/results",
    )
    parser.add_argument(
        "--result-sink-fault",
        action="append",
        default=[],
        metavar="STATUSxN",
        help="answer the next N result deliveries with STATUS, e.g. 503x2 (repeatable)",
    )
    parser.add_argument(
        "--result-sink-delay",
        action="append",
        default=[],
        metavar="SECONDS[xN]",
        help="delay the next N (default 1) result deliveries by SECONDS, e.g. 1.5 or 1.5x2",
    )
    parser.add_argument(
        "--self-stop-retry-after",
        default=None,
        metavar="VALUE",
        help="Retry-After header sent with --self-stop-fault and --result-sink-fault answers "
        "(seconds or HTTP date)",
    )


def options_from_args(ns: argparse.Namespace) -> EmulatorOptions:
    """Turn parsed `emulate` flags into options; raises UsageError on a bad value."""
    retry_after = _optional_text(ns, "self_stop_retry_after")
    faults = [_status_fault(text, retry_after) for text in getattr(ns, "self_stop_fault", [])]
    faults += [_delay_fault(text) for text in getattr(ns, "self_stop_delay", [])]
    result_sink = bool(getattr(ns, "result_sink", False))
    sink_faults = [
        _status_fault(text, retry_after, "--result-sink-fault", _RESULT_SINK)
        for text in getattr(ns, "result_sink_fault", [])
    ]
    sink_faults += [
        _delay_fault(text, "--result-sink-delay", _RESULT_SINK)
        for text in getattr(ns, "result_sink_delay", [])
    ]
    if sink_faults and not result_sink:
        raise UsageError("--result-sink-fault and --result-sink-delay need --result-sink")
    faults += sink_faults
    api_token = _api_token(_optional_text(ns, "api_token"))
    default_policy, per_app_policies = _restart_policies(getattr(ns, "restart_policy", []))
    host = str(getattr(ns, "host", "127.0.0.1")).strip()
    if not host:
        raise UsageError("--host: expected an address such as 127.0.0.1")
    check_listen_address(host, api_token)
    return EmulatorOptions(
        host=host,
        port=_port("--port", getattr(ns, "port", "9000")),
        api_token=api_token,
        apps=_apps(getattr(ns, "app", [])),
        restart_policy=default_policy,
        restart_policies=per_app_policies,
        app_versions=_app_versions(getattr(ns, "app_version", [])),
        time_to_deploy_seconds=_positive_seconds(
            "--time-to-deploy", getattr(ns, "time_to_deploy", DEFAULT_TIME_TO_DEPLOY)
        ),
        game_port_protocol=_protocol(getattr(ns, "game_port_protocol", "UDP")),
        game_port_check=not getattr(ns, "no_port_check", False),
        isolation=_isolation(getattr(ns, "isolation", "auto")),
        endpoint_storages=_storages(getattr(ns, "endpoint_storage", [])),
        location_capacity=_capacity(getattr(ns, "location_capacity", None)),
        restart_delay_seconds=_seconds("--restart-delay", getattr(ns, "restart_delay", "1")),
        stop_grace_seconds=_seconds("--stop-grace", getattr(ns, "stop_grace", "5")),
        status_step_seconds=_seconds("--status-step", getattr(ns, "status_step", "0.2")),
        game_port=_port("--game-port", getattr(ns, "game_port", "7777")),
        faults=tuple(faults),
        show_tokens=bool(getattr(ns, "show_tokens", False)),
        rate_limits=bool(getattr(ns, "rate_limits", False)),
        url_file=_optional_text(ns, "url_file"),
        log_format=_log_format(getattr(ns, "log_format", "text")),
        follow=bool(getattr(ns, "follow", False)),
        result_sink=result_sink,
    )


def check_listen_address(host: str, api_token: str | None) -> None:
    """Refuse (UsageError) to serve beyond loopback without `--api-token`: the control API
    would hand every deployment's delete token to the network. A name counts by every
    address it resolves to."""
    if api_token is not None:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host.strip("[]"), None)}
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"--host: cannot resolve {host!r}: {exc}") from None
    exposed = sorted(str(address) for address in addresses if not is_loopback(str(address)))
    if exposed:
        raise UsageError(
            f"--host {host}: listens beyond loopback ({', '.join(exposed)}), where anyone could "
            "read every deployment's delete token from /_emulator/; give --api-token TOKEN "
            f"(at least {MIN_API_TOKEN_LENGTH} characters), or listen on 127.0.0.1"
        )


def _api_token(token: str | None) -> str | None:
    if token is None:
        return None
    printable = token.isascii() and token.isprintable() and token == token.strip()
    if len(token) < MIN_API_TOKEN_LENGTH or not printable:
        # The token itself is never echoed: it may be a real one, mistyped.
        raise UsageError(
            f"--api-token: expected at least {MIN_API_TOKEN_LENGTH} printable ASCII characters, "
            f"without surrounding spaces (got {len(token)} characters)"
        )
    return token


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


def _positive_seconds(flag: str, value: object) -> float:
    seconds = _seconds(flag, value)
    if seconds <= 0:
        raise UsageError(f"{flag}: expected a number of seconds > 0, got {value!r}")
    return seconds


def _restart_policy(value: object) -> RestartPolicy:
    text = str(value)
    for policy in RESTART_POLICIES:
        if text == policy:
            return policy
    raise UsageError(f"--restart-policy: expected always, never or on_failure, got {text!r}")


def _restart_policies(
    values: list[str] | str,
) -> tuple[RestartPolicy, dict[str, RestartPolicy]]:
    """`--restart-policy` values: a bare POLICY is the default, NAME=POLICY one app's."""
    if isinstance(values, str):
        values = [values]
    default: RestartPolicy = "always"
    per_app: dict[str, RestartPolicy] = {}
    for value in values:
        name, sep, policy = str(value).partition("=")
        if not sep:
            default = _restart_policy(name.strip())
            continue
        name = name.strip()
        if not _APP_NAME.match(name):
            raise UsageError(f"--restart-policy: expected [NAME=]POLICY, got {value!r}")
        per_app[name] = _restart_policy(policy.strip())
    return default, per_app


def _app_versions(values: list[str]) -> dict[str, AppVersionFile]:
    versions: dict[str, AppVersionFile] = {}
    for value in values:
        name, sep, path = value.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not path or not _APP_NAME.match(name):
            raise UsageError(f"--app-version: expected NAME=FILE, got {value!r}")
        if name in versions:
            raise UsageError(f"--app-version: application {name!r} is given twice")
        versions[name] = read_app_version(path)
    return versions


_PROTOCOLS = ("UDP", "TCP", "TCP/UDP", "HTTP", "HTTPS", "WS", "WSS")


def _protocol(value: object) -> str:
    text = str(value).strip().upper()
    if text not in _PROTOCOLS:
        raise UsageError(f"--game-port-protocol: expected one of {', '.join(_PROTOCOLS)}")
    return text


def _isolation(value: object) -> IsolationChoice:
    text = str(value).strip()
    for choice in ISOLATION_CHOICES:
        if text == choice:
            return choice
    raise UsageError(f"--isolation: expected auto, netns or ports, got {text!r}")


def _log_format(value: object) -> LogFormat:
    text = str(value).strip().lower()
    for choice in LOG_FORMATS:
        if text == choice:
            return choice
    raise UsageError(f"--log-format: expected text or json, got {value!r}")


def _capacity(value: object) -> int | None:
    if value is None:
        return None
    try:
        capacity = int(str(value))
    except ValueError:
        capacity = 0
    if capacity < 1:
        raise UsageError(f"--location-capacity: expected a number >= 1, got {value!r}")
    return capacity


def _storages(values: list[str]) -> tuple[str, ...]:
    for value in values:
        if not STORAGE_NAME.match(value):
            raise UsageError(f"--endpoint-storage: expected a name such as my-s3, got {value!r}")
    return tuple(dict.fromkeys(values))


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


# The route name of the result sink's deliveries (routes/results.py), as faults target it.
_RESULT_SINK = "result_sink"


def _status_fault(
    text: str,
    retry_after: str | None,
    flag: str = "--self-stop-fault",
    target: str = "self_stop",
) -> FaultSpec:
    match = _FAULT.match(text.strip())
    if match is None or not 200 <= int(match.group(1)) <= 599 or match.group(2) == "0":
        raise UsageError(f"{flag}: expected STATUSxCOUNT such as 503x2, got {text!r}")
    count = int(match.group(2) or 1)
    return FaultSpec(
        target=target, status=int(match.group(1)), count=count, retry_after=retry_after
    )


def _delay_fault(
    text: str, flag: str = "--self-stop-delay", target: str = "self_stop"
) -> FaultSpec:
    match = _DELAY.match(text.strip())
    if match is None or match.group(2) == "0":
        raise UsageError(f"{flag}: expected SECONDS[xCOUNT] such as 1.5x2, got {text!r}")
    count = int(match.group(2) or 1)
    return FaultSpec(target=target, status=None, count=count, delay_seconds=float(match.group(1)))
