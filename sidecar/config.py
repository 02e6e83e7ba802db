"""Settings: every environment variable of SPEC §4, parsed once, frozen, with secrets kept secret.

`load_settings()` is the only place that reads the environment; everything else receives a
`Settings`. Tests build `Settings(...)` directly (keyword names are the field names).

Also here: the duration syntax (`90`, `90s`, `1500ms`, `5m`, `1h`), the dry-run rule, and
`redacted_settings()` for `check-config`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

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


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _empty_is_unset(value: object) -> object:
    """An empty variable (`FOO=`) means "not set", as in most container tooling."""
    return None if isinstance(value, str) and value.strip() == "" else value


OptionalText = Annotated[str | None, BeforeValidator(_empty_is_unset)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_empty_is_unset)]


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


class Settings(BaseSettings):
    """Effective configuration. Field `foo` is read from `SIDECAR_FOO` unless aliased."""

    model_config = SettingsConfigDict(
        env_prefix="SIDECAR_",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        case_sensitive=True,
        # Settings come from the environment only: a stray .env file must not change a server.
        env_file=None,
    )

    # --- platform variables (injected by Edgegap) ---------------------------------------------
    delete_url: OptionalText = Field(
        default=None, validation_alias=AliasChoices("ARBITRIUM_DELETE_URL", "delete_url")
    )
    delete_token: OptionalSecret = Field(
        default=None, validation_alias=AliasChoices("ARBITRIUM_DELETE_TOKEN", "delete_token")
    )

    # --- local API -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    api_token: OptionalSecret = None

    # --- timers (seconds; 0 disables) ----------------------------------------------------------
    ready_timeout: Duration = 300.0
    first_player_timeout: Duration = 120.0
    empty_timeout: Duration = 60.0
    max_duration: Duration = 0.0
    health_timeout: Duration = 30.0
    match_end_grace: Duration = 5.0
    network_idle_timeout: Duration = 0.0
    network_idle_pps: float = Field(default=2.0, ge=0)

    # --- self-stop -----------------------------------------------------------------------------
    log_storage: OptionalText = None
    error_log_storage: OptionalText = None
    stop_retry_budget: Duration = 600.0
    stop_attempt_timeout: Duration = 10.0
    on_stop_failure: StopFailurePolicy = StopFailurePolicy.EXIT
    # None = auto: dry-run exactly when the platform variables are missing.
    dry_run: bool | None = None

    # --- run mode ------------------------------------------------------------------------------
    term_grace: Duration = 8.0

    # --- logging -------------------------------------------------------------------------------
    log_format: LogFormat = LogFormat.TEXT
    log_level: LogLevel = LogLevel.INFO

    @field_validator("dry_run", mode="before")
    @classmethod
    def _dry_run_auto(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value

    @field_validator("on_stop_failure", "log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("stop_attempt_timeout")
    @classmethod
    def _positive_attempt_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.dry_run is False and not self.platform_configured:
            raise ValueError(
                "SIDECAR_DRY_RUN=false needs ARBITRIUM_DELETE_URL and ARBITRIUM_DELETE_TOKEN"
            )
        if self.api_token is None and not _is_loopback(self.host):
            raise ValueError(
                f"SIDECAR_HOST={self.host} is not a loopback address: set SIDECAR_API_TOKEN"
                " so that only the game can stop the deployment"
            )
        return self

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


# Field name → the variable a user sets, for error messages and check-config.
ENV_NAMES: dict[str, str] = {
    name: (
        "ARBITRIUM_DELETE_URL"
        if name == "delete_url"
        else "ARBITRIUM_DELETE_TOKEN"
        if name == "delete_token"
        else f"SIDECAR_{name.upper()}"
    )
    for name in Settings.model_fields
}


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _config_error(error: ValidationError) -> ConfigError:
    """Turn pydantic's first error into `VARIABLE: what was expected`."""
    first = error.errors()[0]
    loc = first.get("loc") or ()
    field = str(loc[0]) if loc else ""
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if field in ENV_NAMES:
        variable = ENV_NAMES[field]
    elif field in ("ARBITRIUM_DELETE_URL", "ARBITRIUM_DELETE_TOKEN"):
        variable = field
    else:
        # Cross-field checks name their variable at the start of the message.
        variable = message.partition(" ")[0]
        variable = variable.split("=")[0]
        if variable.startswith(("SIDECAR_", "ARBITRIUM_")):
            return ConfigError(variable, message)
        return ConfigError("configuration", message)
    if first.get("type") == "enum":
        expected = first.get("ctx", {}).get("expected", "")
        message = f"expected one of {expected}, got {first.get('input')!r}"
    elif first.get("type") in ("int_parsing", "float_parsing", "bool_parsing"):
        message = f"{message}, got {first.get('input')!r}"
    return ConfigError(variable, message)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the environment once. Raises ConfigError naming the offending variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, variable in ENV_NAMES.items():
        if variable in env:
            values[field] = env[variable]
    values.update(overrides)
    try:
        # model_validate skips the settings sources: `env` above is the only input, which
        # makes an explicit `environ` (tests, check-config) behave exactly like os.environ.
        return Settings.model_validate(values)
    except ValidationError as error:
        raise _config_error(error) from None


def redacted_settings(settings: Settings) -> dict[str, str]:
    """Effective settings by variable name, secrets shown only as set/unset."""
    rows: dict[str, str] = {}
    for field, variable in ENV_NAMES.items():
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            shown = "<redacted>"
        elif value is None:
            shown = "<unset>"
            if field == "dry_run":
                shown = f"auto ({'true' if settings.effective_dry_run else 'false'})"
            elif field == "error_log_storage" and settings.log_storage is not None:
                shown = f"<same as SIDECAR_LOG_STORAGE: {settings.log_storage}>"
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, float) and field in _DURATION_FIELDS:
            shown = format_duration(value)
        else:
            shown = str(value)
        rows[variable] = shown
    return rows


_DURATION_FIELDS = {
    name
    for name, info in Settings.model_fields.items()
    if any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in info.metadata)
}
