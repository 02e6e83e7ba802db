"""Settings: every environment variable of SPEC §4, parsed once, frozen, with secrets kept secret.

`load_settings()` is the only place that reads the environment; everything else receives a
`Settings`. Tests build `Settings(...)` directly with typed values, or call
`load_settings(mapping)` with the strings a user would set.

Each Settings field carries its variable (`setting()`: name, parser, secrecy, one-line help), and
`VARIABLES` is read off the fields: parsing, redaction, check-config (`--json`, `--list`) and the
unknown-variable check use that one table, so a variable cannot be parsed but not redacted, or
listed but not parsed.

Also here: the duration syntax (`90`, `90s`, `1500ms`, `5m`, `1h`), the dry-run rule, and
`redacted_settings()` for `check-config`.

A frozen dataclass with one small parser per variable, not pydantic(-settings): settings are
needed before the local API can answer, and importing pydantic there cost ~60 ms of the
sidecar's start (docs/benchmarks.md). Each parser raises ValueError with the expected form, and
`load_settings` turns it into a ConfigError naming the variable.

Over 400 lines on purpose: every variable, its parser and its rule stand in this one file.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from dataclasses import fields as dataclass_fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sidecar.addresses import is_loopback
from sidecar.errors import ConfigError
from sidecar.lifecycle import Quorum, QuorumRule, TimerSettings
from sidecar.redaction import redact_url

if TYPE_CHECKING:
    from sidecar.agones.manifest import GameServerManifest

# re.ASCII: without it \d and IGNORECASE accept Unicode digits and letters (Arabic-Indic
# five, the long s), which int()/float() would then happily convert.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
# One part of a duration: a number and its unit (`ms` before `m`, so 5ms is not 5 minutes).
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)[ \t]*(ms|h|m|s)", re.IGNORECASE | re.ASCII)
_RATE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)
# Only ASCII whitespace is stripped: str.strip() would also eat NBSP and friends.
_ASCII_SPACE = " \t\n\r\x0b\x0c"
# Longer than any real timer; beyond it, deadlines and timeouts risk overflow downstream.
MAX_DURATION_SECONDS = 10 * 365 * 86400.0
# Units largest first: a compound duration names each at most once, in this order (1h30m15s).
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = list(_UNIT_SECONDS)
DURATION_FORM = "a duration like 90, 90s, 1500ms, 5m, 1h or 1m30s (0 disables)"


def parse_duration(value: object) -> float:
    """Turn `90`, `90s`, `1500ms`, `5m`, `1h`, `1m30s`, `1h30m15s` (or a number) into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_FORM}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # float(10**400)
            seconds = math.inf
    else:
        text = str(value)
        parsed = _duration_text(text.strip(_ASCII_SPACE)) if text.isascii() else None
        if parsed is None:
            raise ValueError(f"expected {DURATION_FORM}, got {text[:40]!r}")
        seconds = parsed
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"expected {DURATION_FORM}, got a negative or invalid value")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"expected {DURATION_FORM}, at most 10 years; got a larger value")
    return seconds


def _duration_text(text: str) -> float | None:
    """Seconds for a plain number or for parts with units, each unit at most once and largest
    first (`1h30m`, not `30m1h` or `1m1m`); None when `text` is neither."""
    if _NUMBER.fullmatch(text):
        return float(text)
    seconds = 0.0
    position = 0
    next_unit = 0  # index in _UNIT_ORDER of the largest unit still allowed
    while position < len(text):
        part = _DURATION_PART.match(text, position)
        if part is None:
            return None
        unit = _UNIT_ORDER.index(part.group(2).lower())
        if unit < next_unit:
            return None
        seconds += float(part.group(1)) * _UNIT_SECONDS[_UNIT_ORDER[unit]]
        next_unit = unit + 1
        position = part.end()
    return seconds if text else None


def format_duration(seconds: float) -> str:
    """The shortest exact way to write a duration back (for check-config)."""
    if seconds == 0:
        return "0"
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{round(seconds * 1000)}ms"


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('<redacted>')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class StopFailurePolicy(StrEnum):
    """What to do when the self-stop fails for good."""

    EXIT = "exit"  # terminate the game and exit non-zero, so the container ends
    STAY = "stay"  # keep running; the platform's max_duration is the last fail-safe


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


# --- parsers: the string a user sets → the typed value, or ValueError with the expected form ---
def _optional_url(value: str) -> str | None:
    """Never an error: a malformed URL counts as missing (Settings.delete_url_problem)."""
    return value.strip(_ASCII_SPACE) or None


def _optional_secret(value: str) -> Secret | None:
    return Secret(value.strip()) if value.strip() else None


# SPEC §11: a shorter token is neither a secret nor something redaction can hide without
# mangling the logs (a token "list" would turn "listening" into "<redacted>ening").
MIN_API_TOKEN_LENGTH = 8


def _api_token(value: str) -> Secret | None:
    token = value.strip()
    if not token:
        return None
    # The game sends it in an HTTP header, and SPEC §11 answers a non-ASCII Authorization
    # header with 401: such a token could never be used.
    if not (token.isascii() and token.isprintable()):
        raise ValueError("expected printable ASCII characters (it is sent in an HTTP header)")
    # Counted as given (untrimmed, SPEC §11) and as used (the header drops the spaces around
    # it): eight characters either way. The message never quotes the value, nor its length.
    if min(len(value), len(token)) < MIN_API_TOKEN_LENGTH:
        raise ValueError(
            f"expected at least {MIN_API_TOKEN_LENGTH} characters: a shorter token is "
            "neither a secret nor something the logs can hide (e.g. openssl rand -hex 16)"
        )
    return Secret(token)


def _result_url(value: str) -> str | None:
    """SPEC §12: `https://`, or `http://` to a loopback address (a result sent in clear text
    must not leave the machine). Unlike ARBITRIUM_DELETE_URL a bad one is an error: the studio
    set it, and a silently dropped result is worse than a refused start. The message never
    quotes the URL: it may carry credentials."""
    url = value.strip(_ASCII_SPACE)
    if not url:
        return None
    problem = result_url_problem(url)
    if problem is not None:
        raise ValueError(
            f"expected an https:// URL, or http:// to a loopback address; it {problem}"
        )
    return url


def result_url_problem(url: str) -> str | None:
    """Why `url` cannot be SIDECAR_RESULT_URL (None when it can)."""
    from yarl import URL

    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "contains whitespace or control characters"
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError:
        return "cannot be parsed as a URL"
    if parsed.scheme not in ("http", "https"):
        return "is not an http or https URL"
    if not parsed.raw_host:
        return "has no host"
    if port is not None and not 0 < port <= 65535:
        return "has a port that is not a number 1-65535"
    if parsed.scheme == "http" and not is_loopback(parsed.raw_host.strip("[]")):
        return "is http:// to an address that is not loopback"
    return None


def _header_secret(value: str) -> Secret | None:
    """A token sent in an HTTP header: printable ASCII, or it could never be sent."""
    token = value.strip()
    if not token:
        return None
    if not (token.isascii() and token.isprintable()):
        raise ValueError("expected printable ASCII characters (it is sent in an HTTP header)")
    return Secret(token)


# SPEC §11: the platform owns its naming rules, so any printable name up to 256 characters is
# sent; one outside this pattern is only worth a warning.
MAX_STORAGE_NAME = 256
_PLAIN_STORAGE_NAME = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)


def _log_storage(value: str) -> str | None:
    """`true`, `false` or an endpoint-storage name (1-256 printable characters); empty = unset."""
    name = value.strip(_ASCII_SPACE)
    if not name:
        return None
    if len(name) > MAX_STORAGE_NAME or not name.isprintable():
        raise ValueError(
            f"expected true, false or a storage name of 1-{MAX_STORAGE_NAME} printable characters"
        )
    return name


def storage_name_problem(name: str) -> str | None:
    """Why a storage name may not be what the platform expects (a warning, never an error)."""
    if name in ("true", "false") or _PLAIN_STORAGE_NAME.fullmatch(name):
        return None
    return (
        f"{name[:60]!r} has characters outside A-Z a-z 0-9 . _ -; it is sent as set, and if the "
        "platform refuses it the stop is retried without a log choice"
    )


def _host(value: str) -> str:
    if not value.strip():
        raise ValueError("expected an address such as 127.0.0.1, got an empty value")
    return value.strip()


def _port(value: str) -> int:
    text = value.strip(_ASCII_SPACE)
    # isascii first: isdigit() is true for Unicode digits and superscripts; the length cap
    # keeps int() cheap.
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 65535:
        raise ValueError(f"expected a port number 0-65535, got {value[:40]!r}")
    return int(text)


def _rate(value: str) -> float:
    text = value.strip(_ASCII_SPACE)
    # A plain decimal: float() would also take `inf`, `nan`, `1e999`, `1_0` and Unicode digits.
    if not (text.isascii() and _RATE.fullmatch(text)):
        raise ValueError(f"expected a number of packets per second >= 0, got {value[:40]!r}")
    rate = float(text)
    if not math.isfinite(rate):
        raise ValueError("expected a number of packets per second >= 0, got a value too large")
    return rate


def _positive_duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a duration greater than 0 (like 10s), got {value!r}")
    return seconds


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _tri_state(value: str) -> bool | None:
    text = value.strip().lower()
    if text in ("", "auto"):
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true, false or auto, got {value!r}")


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a name, got an empty value")
    return value.strip()


def _manifest(value: str) -> GameServerManifest | None:
    """An Agones GameServer file, read and checked now (SPEC §10: a bad one is exit 2)."""
    if not value.strip():
        return None
    from sidecar.agones.manifest import load_manifest

    return load_manifest(value.strip())


QUORUM_FORM = "a number of players (1 or more), all or teams"


def _quorum(value: str) -> Quorum:
    """SIDECAR_MATCH_QUORUM: `3`, `all` or `teams` (SPEC §12)."""
    text = value.strip(_ASCII_SPACE).lower()
    if text in (QuorumRule.ALL, QuorumRule.TEAMS):
        return Quorum(QuorumRule(text))
    # ASCII digits only, and few of them: no roster is larger than ROSTER_CAP anyway.
    if text.isascii() and text.isdigit() and len(text) <= 9 and int(text) >= 1:
        return Quorum(QuorumRule.COUNT, int(text))
    raise ValueError(f"expected {QUORUM_FORM}, got {value[:40]!r}")


def _choice(enum: type[StrEnum]) -> Callable[[str], StrEnum]:
    def parse(value: str) -> StrEnum:
        try:
            return enum(value.strip().lower())
        except ValueError:
            expected = ", ".join(member.value for member in enum)
            raise ValueError(f"expected one of {expected}, got {value!r}") from None

    return parse


# The timers' names and defaults are the lifecycle's (the one definition); Settings reads them
# from the environment and hands them over in `timer_settings()`.
_TIMERS = TimerSettings()


class Shown(StrEnum):
    """How check-config shows a value (and how `--json` encodes it)."""

    PLAIN = "plain"  # str(value); JSON: the value itself (enums as their string)
    DURATION = "duration"  # the shortest exact syntax (90s, 5m); JSON: seconds
    SECRET = "secret"  # <redacted> / "***", whatever the value
    URL = "url"  # credentials and query redacted (ARBITRIUM_DELETE_URL)


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, parser, secrecy and meaning, carried by the Settings
    field it sets (`setting()`), so that parsing, redaction, check-config (`--json`, `--list`)
    and the unknown-variable check all read the same table, `VARIABLES`."""

    name: str
    parse: Callable[[str], Any]
    help: str
    shown: Shown = Shown.PLAIN
    # How --list writes the default when the field's own default does not say it (None → auto).
    default_text: str | None = None
    field: str = ""  # the Settings attribute; filled in by VARIABLES

    @property
    def secret(self) -> bool:
        return self.shown is Shown.SECRET


def setting(
    name: str,
    parse: Callable[[str], Any],
    default: Any,
    help: str,
    *,
    shown: Shown = Shown.PLAIN,
    default_text: str | None = None,
) -> Any:
    """A Settings field that carries its variable (typed Any, as dataclasses.field is)."""
    variable = Variable(name, parse, help, shown, default_text)
    return dataclass_field(default=default, metadata={"variable": variable})


@dataclass(frozen=True)
class Settings:
    """Effective configuration; `load_settings()` reads each field from its variable."""

    # --- platform variables (injected by Edgegap) ---------------------------------------------
    delete_url: str | None = setting(
        "ARBITRIUM_DELETE_URL",
        _optional_url,
        None,
        "the self-stop URL (injected by Edgegap); malformed counts as unset",
        shown=Shown.URL,
    )
    delete_token: Secret | None = setting(
        "ARBITRIUM_DELETE_TOKEN",
        _optional_secret,
        None,
        "the self-stop token (injected by Edgegap)",
        shown=Shown.SECRET,
    )
    # --- local API -----------------------------------------------------------------------------
    host: str = setting("SIDECAR_HOST", _host, "127.0.0.1", "bind address of the local API")
    port: int = setting("SIDECAR_PORT", _port, 8787, "port of the local API (0 picks a free one)")
    api_token: Secret | None = setting(
        "SIDECAR_API_TOKEN",
        _api_token,
        None,
        "bearer token every /v1/* call needs; required for a non-loopback SIDECAR_HOST",
        shown=Shown.SECRET,
    )
    # --- timers (seconds; 0 disables): lifecycle.TimerSettings, see timer_settings() ----------
    ready_timeout: float = setting(
        "SIDECAR_READY_TIMEOUT",
        parse_duration,
        _TIMERS.ready_timeout,
        "from start until the game is ready (POST /v1/ready or its game port)",
        shown=Shown.DURATION,
    )
    first_player_timeout: float = setting(
        "SIDECAR_FIRST_PLAYER_TIMEOUT",
        parse_duration,
        _TIMERS.first_player_timeout,
        "from ready until the first player connects (games that report players)",
        shown=Shown.DURATION,
    )
    empty_timeout: float = setting(
        "SIDECAR_EMPTY_TIMEOUT",
        parse_duration,
        _TIMERS.empty_timeout,
        "no players left after at least one had connected",
        shown=Shown.DURATION,
    )
    max_duration: float = setting(
        "SIDECAR_MAX_DURATION",
        parse_duration,
        _TIMERS.max_duration,
        "hard cap from start, whatever the players",
        shown=Shown.DURATION,
    )
    health_timeout: float = setting(
        "SIDECAR_HEALTH_TIMEOUT",
        parse_duration,
        _TIMERS.health_timeout,
        "heartbeat silence that makes the game unhealthy (armed by the first POST /v1/health)",
        shown=Shown.DURATION,
    )
    match_end_grace: float = setting(
        "SIDECAR_MATCH_END_GRACE",
        parse_duration,
        _TIMERS.match_end_grace,
        "delay between match end / shutdown request and the self-stop",
        shown=Shown.DURATION,
    )
    network_idle_timeout: float = setting(
        "SIDECAR_NETWORK_IDLE_TIMEOUT",
        parse_duration,
        _TIMERS.network_idle_timeout,
        "traffic below SIDECAR_NETWORK_IDLE_PPS this long counts as empty",
        shown=Shown.DURATION,
    )
    network_idle_pps: float = setting(
        "SIDECAR_NETWORK_IDLE_PPS",
        _rate,
        _TIMERS.network_idle_pps,
        "packets per second below which the network counts as idle",
    )
    # --- the match (SPEC §12) ------------------------------------------------------------------
    no_show_timeout: float = setting(
        "SIDECAR_NO_SHOW_TIMEOUT",
        parse_duration,
        _TIMERS.no_show_timeout,
        "from ready until the quorum of the matchmaker's players must have arrived",
        shown=Shown.DURATION,
    )
    match_quorum: Quorum = setting(
        "SIDECAR_MATCH_QUORUM",
        _quorum,
        Quorum(),
        "arrivals that make the match playable: a number (capped at the tickets), all or teams",
    )
    match_strict: bool = setting(
        "SIDECAR_MATCH_STRICT",
        _flag,
        False,
        "refuse (403) players that bring none of the matchmaker's tickets",
    )
    # --- self-stop -----------------------------------------------------------------------------
    log_storage: str | None = setting(
        "SIDECAR_LOG_STORAGE",
        _log_storage,
        None,
        "container_log_storage for normal stops: true, false or an endpoint-storage name",
    )
    error_log_storage: str | None = setting(
        "SIDECAR_ERROR_LOG_STORAGE",
        _log_storage,
        None,
        "the same for abnormal stops (ready_timeout, no_show, unhealthy, game_crashed)",
        default_text="= SIDECAR_LOG_STORAGE",
    )
    stop_retry_budget: float = setting(
        "SIDECAR_STOP_RETRY_BUDGET",
        parse_duration,
        600.0,
        "how long to keep retrying the self-stop",
        shown=Shown.DURATION,
    )
    stop_attempt_timeout: float = setting(
        "SIDECAR_STOP_ATTEMPT_TIMEOUT",
        _positive_duration,  # an attempt needs some time
        10.0,
        "one self-stop attempt's timeout (more than 0)",
        shown=Shown.DURATION,
    )
    on_stop_failure: StopFailurePolicy = setting(
        "SIDECAR_ON_STOP_FAILURE",
        _choice(StopFailurePolicy),
        StopFailurePolicy.EXIT,
        "when the self-stop fails for good: exit (end the game and the container) or stay",
    )
    # None = auto: dry-run exactly when the platform variables are missing.
    dry_run: bool | None = setting(
        "SIDECAR_DRY_RUN",
        _tri_state,
        None,
        "true, false or auto (dry-run exactly when the ARBITRIUM_DELETE_* are missing)",
        default_text="auto",
    )
    # --- match result delivery (SPEC §12) -------------------------------------------------------
    result_url: str | None = setting(
        "SIDECAR_RESULT_URL",
        _result_url,
        None,
        "where the match result is POSTed once a stop is decided (https, or http to loopback)",
        shown=Shown.URL,
    )
    result_token: Secret | None = setting(
        "SIDECAR_RESULT_TOKEN",
        _header_secret,
        None,
        "sent with the result as Authorization: Bearer <token>",
        shown=Shown.SECRET,
    )
    result_wait: float = setting(
        "SIDECAR_RESULT_WAIT",
        parse_duration,
        10.0,
        "how long past the drain grace the self-stop waits for the result delivery",
        shown=Shown.DURATION,
    )
    result_budget: float = setting(
        "SIDECAR_RESULT_BUDGET",
        parse_duration,
        300.0,
        "how long the result delivery keeps retrying",
        shown=Shown.DURATION,
    )
    # --- run mode ------------------------------------------------------------------------------
    term_grace: float = setting(
        "SIDECAR_TERM_GRACE",
        parse_duration,
        8.0,
        "run mode: from forwarding SIGTERM to the game until SIGKILL",
        shown=Shown.DURATION,
    )
    # --- logging -------------------------------------------------------------------------------
    log_format: LogFormat = setting(
        "SIDECAR_LOG_FORMAT", _choice(LogFormat), LogFormat.TEXT, "text or json (one per line)"
    )
    log_level: LogLevel = setting(
        "SIDECAR_LOG_LEVEL", _choice(LogLevel), LogLevel.INFO, "debug, info, warning or error"
    )
    # --- the Agones SDK facade (SPEC §10) ---------------------------------------------------------
    agones: bool = setting("SIDECAR_AGONES", _flag, False, "serve the Agones SDK (REST and gRPC)")
    agones_http_port: int = setting(
        "SIDECAR_AGONES_HTTP_PORT", _port, 9358, "port of the Agones SDK facade"
    )
    agones_grpc_port: int = setting(
        "SIDECAR_AGONES_GRPC_PORT", _port, 9357, "gRPC port of the Agones SDK facade"
    )
    agones_gameserver: GameServerManifest | None = setting(
        "SIDECAR_AGONES_GAMESERVER",
        _manifest,
        None,
        "path of an Agones GameServer manifest (labels, annotations, counters, lists, health)",
    )
    agones_players_list: str = setting(
        "SIDECAR_AGONES_PLAYERS_LIST",
        _name,
        "players",
        "the Agones list that mirrors the player roster",
    )
    agones_auto_allocate: bool = setting(
        "SIDECAR_AGONES_AUTO_ALLOCATE",
        _flag,
        True,
        "a match start or first player marks the GameServer Allocated",
    )

    def __post_init__(self) -> None:
        if self.dry_run is False and self.delete_url_problem is not None:
            raise ConfigError(
                "ARBITRIUM_DELETE_URL",
                f"{self.delete_url_problem}; SIDECAR_DRY_RUN=false needs a usable URL",
            )
        if self.dry_run is False and not self.platform_configured:
            raise ConfigError(
                "SIDECAR_DRY_RUN",
                "false needs ARBITRIUM_DELETE_URL and ARBITRIUM_DELETE_TOKEN to be set",
            )
        if self.api_token is None and not is_loopback(self.host):
            raise ConfigError(
                "SIDECAR_HOST",
                f"{self.host} is not a loopback address: set SIDECAR_API_TOKEN so that only the "
                "game can stop the deployment",
            )

    # --- derived values ------------------------------------------------------------------------
    def timer_settings(self) -> TimerSettings:
        """The lifecycle's timers. Spelled out field by field, not copied by name: a timer
        renamed on either side then fails the type checker instead of the start-up (a timer
        added to TimerSettings and not here fails tests/test_config.py)."""
        return TimerSettings(
            ready_timeout=self.ready_timeout,
            first_player_timeout=self.first_player_timeout,
            empty_timeout=self.empty_timeout,
            max_duration=self.max_duration,
            health_timeout=self.health_timeout,
            match_end_grace=self.match_end_grace,
            network_idle_timeout=self.network_idle_timeout,
            network_idle_pps=self.network_idle_pps,
            no_show_timeout=self.no_show_timeout,
        )

    def timers_summary(self) -> str:
        """The effective timers in one phrase, for the start-up line: the lifecycle's durations,
        named after their fields (`empty 1m, max duration off, ...`)."""
        shown = []
        for item in dataclass_fields(TimerSettings):
            seconds = getattr(self, item.name)
            if _VARIABLE_OF[item.name].shown is not Shown.DURATION:
                continue  # the packet-rate threshold is not a timer
            name = item.name.removesuffix("_timeout").replace("_", " ")
            # A grace of 0 is no delay, not a timer turned off.
            off = "off" if not seconds and not item.name.endswith("_grace") else None
            shown.append(f"{name} {off or format_duration(seconds)}")
        return ", ".join(shown)

    @property
    def delete_url_problem(self) -> str | None:
        """Why ARBITRIUM_DELETE_URL is unusable (SPEC §11: then it counts as missing), or None."""
        return delete_url_problem(self.delete_url) if self.delete_url else None

    @property
    def platform_configured(self) -> bool:
        return (
            bool(self.delete_url)
            and self.delete_url_problem is None
            and self.delete_token is not None
        )

    @property
    def dry_run_reason(self) -> str | None:
        """The one-line reason for dry-run that agent.start logs; None when live."""
        if not self.effective_dry_run:
            return None
        problem = self.delete_url_problem
        if self.dry_run:
            extra = f" (ARBITRIUM_DELETE_URL {problem})" if problem else ""
            return f"SIDECAR_DRY_RUN=true{extra}"
        if problem:
            return f"ARBITRIUM_DELETE_URL {problem}, so it counts as unset"
        return "ARBITRIUM_DELETE_URL/ARBITRIUM_DELETE_TOKEN are not set"

    @property
    def effective_dry_run(self) -> bool:
        """The dry-run rule of SPEC §4: explicit value, else dry exactly when unconfigured."""
        if self.dry_run is None:
            return not self.platform_configured
        return self.dry_run

    @property
    def effective_error_log_storage(self) -> str | None:
        return self.error_log_storage if self.error_log_storage is not None else self.log_storage

    def secrets(self) -> list[str]:
        """Every secret value, for log redaction: the fields whose variable says it is secret."""
        values = [getattr(self, variable.field) for variable in VARIABLES if variable.secret]
        return [value.get_secret_value() for value in values if value and value.get_secret_value()]


_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


@functools.lru_cache(maxsize=8)
def delete_url_problem(url: str) -> str | None:
    """Why aiohttp could not send DELETE to `url` (None when it can).

    Parsed with yarl, as aiohttp does, plus the checks aiohttp only makes at request time
    (scheme, host, IDNA encoding of the host, credentials that clash with the token header) and
    the ones yarl is lenient about (`:+80`, Unicode-digit ports). Messages never quote the URL:
    it may carry credentials."""
    from urllib.parse import urlsplit

    from yarl import URL

    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "contains whitespace or control characters"
    try:
        netloc = urlsplit(url).netloc
        parsed = URL(url)
    except ValueError:
        return "cannot be parsed as a URL (bad IPv6 address or port)"
    if parsed.scheme not in ("http", "https"):
        return "is not an http or https URL"
    if not parsed.raw_host:
        return "has no host"
    if parsed.raw_user is not None or parsed.raw_password is not None:
        return "carries credentials (user@host), which clash with ARBITRIUM_DELETE_TOKEN"
    hostport = netloc.rpartition("@")[2]
    after_host = hostport.partition("]")[2] if hostport.startswith("[") else hostport
    port_text = after_host.partition(":")[2]
    if port_text and not (
        port_text.isascii() and port_text.isdigit() and 0 < int(port_text[:6]) <= 65535
    ):
        return "has a port that is not a number 1-65535"
    host = parsed.raw_host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host.encode("idna")  # what the resolver does at request time
        except UnicodeError:
            return "has an invalid host name"
        if not _HOST_NAME.fullmatch(host):
            return "has an invalid host name"
    else:
        if "%" in host:
            return "has an IPv6 zone id, which is not supported"
    return None


def _variables() -> tuple[Variable, ...]:
    table = []
    for item in dataclass_fields(Settings):
        variable = item.metadata["variable"]
        table.append(dataclasses.replace(variable, field=item.name))
    return tuple(table)


# Every variable a user sets, in Settings order: the one table (issue 16).
VARIABLES: tuple[Variable, ...] = _variables()
# Field name → the variable a user sets (for tests and error messages).
ENV_NAMES: dict[str, str] = {variable.field: variable.name for variable in VARIABLES}
_VARIABLE_OF: dict[str, Variable] = {variable.field: variable for variable in VARIABLES}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the environment once. Raises ConfigError naming the offending variable.

    `overrides` are typed values by field name (for tests and embedders)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        if variable.name in env:
            try:
                values[variable.field] = variable.parse(env[variable.name])
            except (ValueError, ArithmeticError) as exc:
                # ArithmeticError too: an overflow must still be exit 2, never a traceback.
                raise ConfigError(variable.name, str(exc)) from None
    _apply_manifest(values, explicit_health="SIDECAR_HEALTH_TIMEOUT" in env)
    if values.get("agones_http_port") == 0 and "SIDECAR_AGONES_GRPC_PORT" not in env:
        # A free REST port asked for (several sidecars on one host, tests): a free gRPC port
        # too, rather than all of them fighting over 9357.
        values["agones_grpc_port"] = 0
    values.update(overrides)
    return Settings(**values)


def _apply_manifest(values: dict[str, Any], *, explicit_health: bool) -> None:
    """SPEC §10, with the facade on: the players the manifest seeds must fit the roster, and
    its spec.health sets the health timeout unless SIDECAR_HEALTH_TIMEOUT is set explicitly
    (then the manifest's health is only shown)."""
    manifest = values.get("agones_gameserver")
    if manifest is None or not values.get("agones"):
        return
    players_list = values.get("agones_players_list", "players")
    problem = manifest.roster_problem(players_list)
    if problem is not None:
        raise ConfigError("SIDECAR_AGONES_GAMESERVER", f"{manifest.path}: {problem}")
    from sidecar.agones.gameserver import check_manifest_size

    check_manifest_size(manifest, players_list)  # SPEC §11: at most 1 MiB, as on Kubernetes
    if manifest.health is None:
        return
    if explicit_health:
        values["agones_gameserver"] = manifest.without_health_timer()
    else:
        values["health_timeout"] = manifest.health.timeout


def environ_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets as set in the environment (what Settings.secrets() holds once loaded), to
    redact text written without a Settings: a crash before or outside `load_settings()`."""
    env = os.environ if environ is None else environ
    return [
        env[variable.name].strip()
        for variable in VARIABLES
        if variable.secret and env.get(variable.name, "").strip()
    ]


def redacted_settings(settings: Settings) -> dict[str, str]:
    """Effective settings by variable name as check-config prints them, secrets as <redacted>."""
    rows: dict[str, str] = {}
    for variable in VARIABLES:
        value = getattr(settings, variable.field)
        shown = _shown(variable, value)
        if variable.field == "delete_url" and value is not None and settings.delete_url_problem:
            shown += f"  (ignored: {settings.delete_url_problem})"
        elif value is None and variable.field == "dry_run":
            shown = f"auto ({'true' if settings.effective_dry_run else 'false'})"
        elif value is None and variable.field == "error_log_storage" and settings.log_storage:
            shown = f"<same as SIDECAR_LOG_STORAGE: {settings.log_storage}>"
        rows[variable.name] = shown
    return rows


def settings_json(settings: Settings) -> dict[str, Any]:
    """Effective settings by variable name for `check-config --json` (SPEC §13): durations as
    seconds, secrets as "***" (null when unset), the URL redacted, auto values resolved."""
    document: dict[str, Any] = {}
    for variable in VARIABLES:
        value = getattr(settings, variable.field)
        if variable.field == "dry_run":
            value = settings.effective_dry_run
        elif variable.field == "error_log_storage":
            value = settings.effective_error_log_storage
        if value is None or isinstance(value, bool):
            encoded: Any = value
        elif variable.secret:
            encoded = "***"
        elif variable.shown is Shown.URL:
            encoded = redact_url(value)
        elif isinstance(value, Quorum):
            encoded = value.configured  # a number, or "all" / "teams"
        elif isinstance(value, float):
            encoded = int(value) if value.is_integer() else value
        elif isinstance(value, int):
            encoded = value
        elif isinstance(value, str):
            encoded = str(value)  # a StrEnum as its plain value
        else:
            encoded = str(value)  # the Agones manifest: its path
        document[variable.name] = encoded
    return document


def variables_help() -> list[tuple[str, str, str]]:
    """(name, default, meaning) of every variable, for `check-config --list`."""
    defaults = Settings()
    rows = []
    for variable in VARIABLES:
        default = variable.default_text
        if default is None:
            value = getattr(defaults, variable.field)
            default = "unset" if value is None else _shown(variable, value)
        rows.append((variable.name, default, variable.help))
    return rows


def _shown(variable: Variable, value: Any) -> str:
    """One value as check-config writes it (and as --list writes a default)."""
    if variable.secret:
        return "<redacted>" if value is not None else "<unset>"
    if value is None:
        return "<unset>"
    if variable.shown is Shown.URL:
        return redact_url(value) or "<unset>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if variable.shown is Shown.DURATION:
        return format_duration(value)
    return str(value)


# Every variable the sidecar reads starts with one of these: its own settings, and what the
# platform injects (sidecar.deployment).
VARIABLE_PREFIXES = ("SIDECAR_", "ARBITRIUM_", "MM_")


def without_sidecar_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without any variable the sidecar reads: where tests and benchmarks start the
    environment of a sidecar they launch, so that a developer's own exports cannot change it."""
    return {key: value for key, value in environ.items() if not key.startswith(VARIABLE_PREFIXES)}


# `SIDECAR_*` names that are not settings, so never "unknown": the sidecar sets SIDECAR_URL for
# the game it starts (and `status` reads it); the tests, the CI recipe and the binary build take
# their command or build root from the others. Documented in the README's configuration section.
NOT_SETTINGS = frozenset(
    {"SIDECAR_URL", "SIDECAR_BINARY", "SIDECAR_CMD", "SIDECAR_BUILD_ROOT", "SIDECAR_BUILD_FRESH"}
)


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Each `SIDECAR_*` variable set that the sidecar does not know, with the closest known name
    (None when nothing is close): a typo such as SIDECAR_EMPTY_TIMOUT would otherwise silently
    leave the default in place."""
    import difflib

    prefix = "SIDECAR_"
    known = [variable.name for variable in VARIABLES if variable.name.startswith(prefix)]
    # Compared without the prefix every name shares, or SIDECAR_FOO would be "close" to them all.
    suffixes = [name.removeprefix(prefix) for name in known]
    unknown = []
    for name in sorted(environ):
        if name.startswith(prefix) and name not in NOT_SETTINGS and name not in known:
            typed = name.removeprefix(prefix).upper()
            close = difflib.get_close_matches(typed, suffixes, n=1, cutoff=0.6)
            unknown.append((name, prefix + close[0] if close else None))
    return unknown


def unknown_variable_message(name: str, suggestion: str | None, *, strict: bool = False) -> str:
    """Why `name` is not used, and the closest known name (the name is shown printable)."""
    shown = name if name.isprintable() else repr(name)
    hint = (
        f"did you mean {suggestion}?" if suggestion else "see edgegap-sidecar check-config --list"
    )
    verdict = "refused by --strict" if strict else "ignored"
    return f"{shown} is not a setting of the sidecar ({verdict}); {hint}"


def config_warnings(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """What check-config and the start-up warn about without refusing to start."""
    warnings = [unknown_variable_message(name, close) for name, close in unknown_variables(environ)]
    storages = [
        ("SIDECAR_LOG_STORAGE", settings.log_storage),
        ("SIDECAR_ERROR_LOG_STORAGE", settings.error_log_storage),
    ]
    for variable, name in storages:
        problem = storage_name_problem(name) if name is not None else None
        if problem is not None:
            warnings.append(f"{variable}: {problem}")
    return warnings
