"""Settings: every environment variable of SPEC §4, parsed once, frozen, with secrets kept secret.

`load_settings()` is the only place that reads the environment; everything else receives a
`Settings`. Tests build `Settings(...)` directly with typed values, or call
`load_settings(mapping)` with the strings a user would set.

Also here: the duration syntax (`90`, `90s`, `1500ms`, `5m`, `1h`), the dry-run rule, and
`redacted_settings()` for `check-config`.

A frozen dataclass with one small parser per variable, not pydantic(-settings): settings are
needed before the local API can answer, and importing pydantic there cost ~60 ms of the
sidecar's start (docs/benchmarks.md). Each parser raises ValueError with the expected form, and
`load_settings` turns it into a ConfigError naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from sidecar.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_FORM = "a duration like 90, 90s, 1500ms, 5m or 1h (0 disables)"


def parse_duration(value: object) -> float:
    """Turn `90`, `90s`, `1500ms`, `5m`, `1h` (or a number) into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_FORM}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expected {DURATION_FORM}, got {str(value)!r}")
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if seconds < 0:
        raise ValueError(f"expected {DURATION_FORM}, got a negative value")
    return seconds


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


@dataclass(frozen=True)
class Settings:
    """Effective configuration; `load_settings()` reads each field from ENV_NAMES[field]."""

    # --- platform variables (injected by Edgegap) ---------------------------------------------
    delete_url: str | None = None
    delete_token: Secret | None = None
    # --- local API -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8787
    api_token: Secret | None = None
    # --- timers (seconds; 0 disables) ----------------------------------------------------------
    ready_timeout: float = 300.0
    first_player_timeout: float = 120.0
    empty_timeout: float = 60.0
    max_duration: float = 0.0
    health_timeout: float = 30.0
    match_end_grace: float = 5.0
    network_idle_timeout: float = 0.0
    network_idle_pps: float = 2.0
    # --- self-stop -----------------------------------------------------------------------------
    log_storage: str | None = None
    error_log_storage: str | None = None
    stop_retry_budget: float = 600.0
    stop_attempt_timeout: float = 10.0
    on_stop_failure: StopFailurePolicy = StopFailurePolicy.EXIT
    # None = auto: dry-run exactly when the platform variables are missing.
    dry_run: bool | None = None
    # --- run mode ------------------------------------------------------------------------------
    term_grace: float = 8.0
    # --- logging -------------------------------------------------------------------------------
    log_format: LogFormat = LogFormat.TEXT
    log_level: LogLevel = LogLevel.INFO

    def __post_init__(self) -> None:
        if self.dry_run is False and not self.platform_configured:
            raise ConfigError(
                "SIDECAR_DRY_RUN",
                "false needs ARBITRIUM_DELETE_URL and ARBITRIUM_DELETE_TOKEN to be set",
            )
        if self.api_token is None and not _is_loopback(self.host):
            raise ConfigError(
                "SIDECAR_HOST",
                f"{self.host} is not a loopback address: set SIDECAR_API_TOKEN so that only the "
                "game can stop the deployment",
            )

    # --- derived values ------------------------------------------------------------------------
    @property
    def platform_configured(self) -> bool:
        return bool(self.delete_url) and self.delete_token is not None

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
        """Every secret value, for log redaction."""
        values = [s.get_secret_value() for s in (self.delete_token, self.api_token) if s]
        return [v for v in values if v]


# --- parsers: the string a user sets → the typed value, or ValueError with the expected form ---
def _optional_text(value: str) -> str | None:
    """An empty variable (`FOO=`) means "not set", as in most container tooling."""
    return value.strip() or None


def _optional_secret(value: str) -> Secret | None:
    return Secret(value.strip()) if value.strip() else None


def _host(value: str) -> str:
    if not value.strip():
        raise ValueError("expected an address such as 127.0.0.1, got an empty value")
    return value.strip()


def _port(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"expected a port number 0-65535, got {value!r}")
    return int(text)


def _rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(f"expected a number of packets per second, got {value!r}") from None
    if not rate >= 0 or rate == float("inf"):
        raise ValueError(f"expected a number >= 0, got {value!r}")
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


def _choice(enum: type[StrEnum]) -> Callable[[str], StrEnum]:
    def parse(value: str) -> StrEnum:
        try:
            return enum(value.strip().lower())
        except ValueError:
            expected = ", ".join(member.value for member in enum)
            raise ValueError(f"expected one of {expected}, got {value!r}") from None

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {
    "delete_url": _optional_text,
    "delete_token": _optional_secret,
    "host": _host,
    "port": _port,
    "api_token": _optional_secret,
    "network_idle_pps": _rate,
    "log_storage": _optional_text,
    "error_log_storage": _optional_text,
    "stop_attempt_timeout": _positive_duration,
    "on_stop_failure": _choice(StopFailurePolicy),
    "dry_run": _tri_state,
    "log_format": _choice(LogFormat),
    "log_level": _choice(LogLevel),
}
_DURATION_FIELDS = frozenset(
    {
        "ready_timeout",
        "first_player_timeout",
        "empty_timeout",
        "max_duration",
        "health_timeout",
        "match_end_grace",
        "network_idle_timeout",
        "stop_retry_budget",
        "stop_attempt_timeout",
        "term_grace",
    }
)
_PARSERS.update(dict.fromkeys(_DURATION_FIELDS, parse_duration))
_PARSERS["stop_attempt_timeout"] = _positive_duration  # an attempt needs some time

# Field name → the variable a user sets, for parsing, error messages and check-config.
ENV_NAMES: dict[str, str] = {
    field.name: (
        f"ARBITRIUM_{field.name.upper()}"
        if field.name in ("delete_url", "delete_token")
        else f"SIDECAR_{field.name.upper()}"
    )
    for field in fields(Settings)
}


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the environment once. Raises ConfigError naming the offending variable.

    `overrides` are typed values by field name (for tests and embedders)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, variable in ENV_NAMES.items():
        if variable in env:
            try:
                values[field] = _PARSERS[field](env[variable])
            except ValueError as exc:
                raise ConfigError(variable, str(exc)) from None
    values.update(overrides)
    return Settings(**values)


def redacted_settings(settings: Settings) -> dict[str, str]:
    """Effective settings by variable name, secrets shown only as set/unset."""
    rows: dict[str, str] = {}
    for field, variable in ENV_NAMES.items():
        value = getattr(settings, field)
        if isinstance(value, Secret):
            shown = "<redacted>"
        elif value is None:
            shown = "<unset>"
            if field == "dry_run":
                shown = f"auto ({'true' if settings.effective_dry_run else 'false'})"
            elif field == "error_log_storage" and settings.log_storage is not None:
                shown = f"<same as SIDECAR_LOG_STORAGE: {settings.log_storage}>"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif field in _DURATION_FIELDS:
            shown = format_duration(value)
        else:
            shown = str(value)
        rows[variable] = shown
    return rows
