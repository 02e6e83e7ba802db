"""Settings: every environment variable the sidecar reads, parsed once, frozen, with secrets
kept secret.

`load_settings()` is the only place that reads the environment; everything else receives a
`Settings`. Tests build `Settings(...)` directly with typed values, or call
`load_settings(mapping)` with the strings a user would set.

Each Settings field carries its variable (`setting()`: name, parser, secrecy, one-line help), and
`VARIABLES` is read off the fields: parsing, redaction, check-config (`--json`, `--list`) and the
unknown-variable check use that one table (sidecar.config.report renders it).

A frozen dataclass with one small parser per variable (sidecar.config.parsers), not
pydantic(-settings): settings are needed before the local API can answer, and importing pydantic
there cost ~60 ms of the sidecar's start (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any

from sidecar.addresses import is_loopback
from sidecar.config import parsers
from sidecar.config.parsers import (
    ASCII_SPACE,
    LogFormat,
    LogLevel,
    Secret,
    StopFailurePolicy,
    delete_url_problem,
    format_duration,
    header_value_problem,
    url_has_credentials,
)
from sidecar.config.variable import Shown, Variable, setting
from sidecar.errors import ConfigError
from sidecar.lifecycle import Quorum, TimerSettings
from sidecar.redaction import redact

if TYPE_CHECKING:
    from sidecar.agones.manifest import GameServerManifest


# The timers' names and defaults are the lifecycle's (the one definition); Settings reads them
# from the environment and hands them over in `timer_settings()`.
_TIMERS = TimerSettings()


@dataclass(frozen=True)
class Settings:
    """Effective configuration; `load_settings()` reads each field from its variable."""

    # --- platform variables (injected by Edgegap) ---------------------------------------------
    delete_url: str | None = setting(
        "ARBITRIUM_DELETE_URL",
        parsers.optional_url,
        None,
        "the self-stop URL (injected by Edgegap); malformed counts as unset",
        shown=Shown.URL,
    )
    delete_token: Secret | None = setting(
        "ARBITRIUM_DELETE_TOKEN",
        parsers.platform_token,
        None,
        "the self-stop token (injected by Edgegap); not printable ASCII counts as unset",
        shown=Shown.SECRET,
    )
    # --- local API -----------------------------------------------------------------------------
    host: str = setting("SIDECAR_HOST", parsers.host, "127.0.0.1", "bind address of the local API")
    port: int = setting(
        "SIDECAR_PORT", parsers.port, 8787, "port of the local API (0 picks a free one)"
    )
    api_token: Secret | None = setting(
        "SIDECAR_API_TOKEN",
        parsers.api_token,
        None,
        "bearer token every /v1/* call needs; required for a non-loopback SIDECAR_HOST",
        shown=Shown.SECRET,
    )
    # --- timers (seconds; 0 disables): lifecycle.TimerSettings, see timer_settings() ----------
    ready_timeout: float = setting(
        "SIDECAR_READY_TIMEOUT",
        parsers.parse_duration,
        _TIMERS.ready_timeout,
        "from start until the game is ready (POST /v1/ready or its game port)",
        shown=Shown.DURATION,
    )
    first_player_timeout: float = setting(
        "SIDECAR_FIRST_PLAYER_TIMEOUT",
        parsers.parse_duration,
        _TIMERS.first_player_timeout,
        "from ready until the first player connects (games that report players)",
        shown=Shown.DURATION,
    )
    empty_timeout: float = setting(
        "SIDECAR_EMPTY_TIMEOUT",
        parsers.parse_duration,
        _TIMERS.empty_timeout,
        "no players left after at least one had connected",
        shown=Shown.DURATION,
    )
    max_duration: float = setting(
        "SIDECAR_MAX_DURATION",
        parsers.parse_duration,
        _TIMERS.max_duration,
        "hard cap from start, whatever the players",
        shown=Shown.DURATION,
    )
    health_timeout: float = setting(
        "SIDECAR_HEALTH_TIMEOUT",
        parsers.parse_duration,
        _TIMERS.health_timeout,
        "heartbeat silence that makes the game unhealthy (armed by the first POST /v1/health)",
        shown=Shown.DURATION,
    )
    match_end_grace: float = setting(
        "SIDECAR_MATCH_END_GRACE",
        parsers.parse_duration,
        _TIMERS.match_end_grace,
        "delay between match end / shutdown request and the self-stop",
        shown=Shown.DURATION,
    )
    network_idle_timeout: float = setting(
        "SIDECAR_NETWORK_IDLE_TIMEOUT",
        parsers.parse_duration,
        _TIMERS.network_idle_timeout,
        "traffic below SIDECAR_NETWORK_IDLE_PPS this long counts as empty",
        shown=Shown.DURATION,
    )
    network_idle_pps: float = setting(
        "SIDECAR_NETWORK_IDLE_PPS",
        parsers.rate,
        _TIMERS.network_idle_pps,
        "packets per second below which the network counts as idle",
    )
    # --- the match (SPEC §12) ------------------------------------------------------------------
    no_show_timeout: float = setting(
        "SIDECAR_NO_SHOW_TIMEOUT",
        parsers.parse_duration,
        _TIMERS.no_show_timeout,
        "from ready until the quorum of the matchmaker's players must have arrived",
        shown=Shown.DURATION,
    )
    match_quorum: Quorum = setting(
        "SIDECAR_MATCH_QUORUM",
        parsers.quorum,
        Quorum(),
        "arrivals that make the match playable: a number (capped at the tickets), all or teams",
    )
    match_strict: bool = setting(
        "SIDECAR_MATCH_STRICT",
        parsers.flag,
        False,
        "refuse (403) players that bring none of the matchmaker's tickets",
    )
    # --- self-stop -----------------------------------------------------------------------------
    log_storage: str | None = setting(
        "SIDECAR_LOG_STORAGE",
        parsers.log_storage,
        None,
        "container_log_storage for normal stops: true, false or an endpoint-storage name",
    )
    error_log_storage: str | None = setting(
        "SIDECAR_ERROR_LOG_STORAGE",
        parsers.log_storage,
        None,
        "the same for abnormal stops (ready_timeout, no_show, unhealthy, game_crashed)",
        default_text="= SIDECAR_LOG_STORAGE",
    )
    stop_retry_budget: float = setting(
        "SIDECAR_STOP_RETRY_BUDGET",
        parsers.parse_duration,
        600.0,
        "how long to keep retrying the self-stop",
        shown=Shown.DURATION,
    )
    stop_attempt_timeout: float = setting(
        "SIDECAR_STOP_ATTEMPT_TIMEOUT",
        parsers.stop_attempt_timeout,
        10.0,
        "one self-stop attempt's timeout (at least 1s)",
        shown=Shown.DURATION,
    )
    on_stop_failure: StopFailurePolicy = setting(
        "SIDECAR_ON_STOP_FAILURE",
        parsers.choice(StopFailurePolicy),
        StopFailurePolicy.EXIT,
        "when the self-stop fails for good: exit (end the game and the container) or stay",
    )
    # None = auto: dry-run exactly when the platform variables are missing.
    dry_run: bool | None = setting(
        "SIDECAR_DRY_RUN",
        parsers.tri_state,
        None,
        "true, false or auto (dry-run exactly when the ARBITRIUM_DELETE_* are missing)",
        default_text="auto",
    )
    # --- match result delivery (SPEC §12) -------------------------------------------------------
    result_url: str | None = setting(
        "SIDECAR_RESULT_URL",
        parsers.result_url,
        None,
        "where the match result is POSTed once a stop is decided (https, or http to loopback)",
        shown=Shown.URL,
    )
    result_token: Secret | None = setting(
        "SIDECAR_RESULT_TOKEN",
        parsers.header_secret,
        None,
        "sent with the result as Authorization: Bearer <token>",
        shown=Shown.SECRET,
    )
    result_wait: float = setting(
        "SIDECAR_RESULT_WAIT",
        parsers.parse_duration,
        10.0,
        "how long past the drain grace the self-stop waits for the result delivery",
        shown=Shown.DURATION,
    )
    result_budget: float = setting(
        "SIDECAR_RESULT_BUDGET",
        parsers.parse_duration,
        300.0,
        "how long the result delivery keeps retrying",
        shown=Shown.DURATION,
    )
    # --- run mode ------------------------------------------------------------------------------
    term_grace: float = setting(
        "SIDECAR_TERM_GRACE",
        parsers.parse_duration,
        8.0,
        "run mode: from forwarding SIGTERM to the game until SIGKILL",
        shown=Shown.DURATION,
    )
    # --- logging -------------------------------------------------------------------------------
    log_format: LogFormat = setting(
        "SIDECAR_LOG_FORMAT",
        parsers.choice(LogFormat),
        LogFormat.TEXT,
        "text or json (one per line)",
    )
    log_level: LogLevel = setting(
        "SIDECAR_LOG_LEVEL",
        parsers.choice(LogLevel),
        LogLevel.INFO,
        "debug, info, warning or error",
    )
    # --- the Agones SDK facade (SPEC §10) ---------------------------------------------------------
    agones: bool = setting(
        "SIDECAR_AGONES", parsers.flag, False, "serve the Agones SDK (REST and gRPC)"
    )
    agones_http_port: int = setting(
        "SIDECAR_AGONES_HTTP_PORT", parsers.port, 9358, "port of the Agones SDK facade"
    )
    agones_grpc_port: int = setting(
        "SIDECAR_AGONES_GRPC_PORT", parsers.port, 9357, "gRPC port of the Agones SDK facade"
    )
    agones_gameserver: GameServerManifest | None = setting(
        "SIDECAR_AGONES_GAMESERVER",
        parsers.manifest,
        None,
        "path of an Agones GameServer manifest (labels, annotations, counters, lists, health)",
    )
    agones_players_list: str = setting(
        "SIDECAR_AGONES_PLAYERS_LIST",
        parsers.nonempty_name,
        "players",
        "the Agones list that mirrors the player roster",
    )
    agones_auto_allocate: bool = setting(
        "SIDECAR_AGONES_AUTO_ALLOCATE",
        parsers.flag,
        True,
        "a match start or first player marks the GameServer Allocated",
    )

    def __post_init__(self) -> None:
        if self.dry_run is False and self.delete_url_problem is not None:
            raise ConfigError(
                "ARBITRIUM_DELETE_URL",
                f"{self.delete_url_problem}; SIDECAR_DRY_RUN=false needs a usable URL",
            )
        if self.dry_run is False and self.delete_token_problem is not None:
            raise ConfigError(
                "ARBITRIUM_DELETE_TOKEN",
                f"{self.delete_token_problem}; SIDECAR_DRY_RUN=false needs a usable token",
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
        if (
            self.result_url
            and self.result_token is not None
            and url_has_credentials(self.result_url)
        ):
            # The rule of ARBITRIUM_DELETE_URL: aiohttp would refuse every delivery.
            raise ConfigError(
                "SIDECAR_RESULT_URL",
                "carries credentials (user@host), which clash with SIDECAR_RESULT_TOKEN: "
                "use one or the other",
            )
        self._check_ports()

    def _check_ports(self) -> None:
        """With the Agones facade on, the local API, its REST port and its gRPC port each need a
        port of their own (0 picks a free one): caught here rather than as exit 3 at bind."""
        if not self.agones:
            return
        ports = [
            ("SIDECAR_PORT", self.port),
            ("SIDECAR_AGONES_HTTP_PORT", self.agones_http_port),
            ("SIDECAR_AGONES_GRPC_PORT", self.agones_grpc_port),
        ]
        for index, (name, number) in enumerate(ports):
            for other, other_number in ports[:index]:
                if number and number == other_number:
                    raise ConfigError(
                        name,
                        f"{number} is also {other}: with SIDECAR_AGONES=true each needs a port "
                        "of its own (or 0 for a free one)",
                    )

    # --- derived values ------------------------------------------------------------------------
    def timer_settings(self) -> TimerSettings:
        """The lifecycle's timers, copied by field name: a timer is one TimerSettings field
        (its default) plus one Settings field of the same name (its variable, with that
        default); tests/test_config.py fails for a timer without one."""
        return TimerSettings(**{name: getattr(self, name) for name in _TIMER_FIELDS})

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
    def delete_token_problem(self) -> str | None:
        """Why ARBITRIUM_DELETE_TOKEN cannot be sent (then it counts as missing, like a malformed
        URL), or None. Never quotes the token."""
        token = self.delete_token
        return header_value_problem(token.get_secret_value()) if token is not None else None

    @property
    def platform_configured(self) -> bool:
        return (
            bool(self.delete_url)
            and self.delete_url_problem is None
            and self.delete_token is not None
            and self.delete_token_problem is None
        )

    def _platform_problems(self) -> list[str]:
        """Each malformed platform variable with its problem (never its value)."""
        problems = [
            ("ARBITRIUM_DELETE_URL", self.delete_url_problem),
            ("ARBITRIUM_DELETE_TOKEN", self.delete_token_problem),
        ]
        return [f"{name} {problem}" for name, problem in problems if problem]

    @property
    def dry_run_reason(self) -> str | None:
        """The one-line reason for dry-run that agent.start logs; None when live."""
        if not self.effective_dry_run:
            return None
        problems = self._platform_problems()
        if self.dry_run:
            extra = f" ({'; '.join(problems)})" if problems else ""
            return f"SIDECAR_DRY_RUN=true{extra}"
        if problems:
            return "; ".join(f"{problem}, so it counts as unset" for problem in problems)
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


_TIMER_FIELDS = tuple(item.name for item in dataclass_fields(TimerSettings))


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
    try:
        return _load(env, overrides)
    except ConfigError as exc:
        # SPEC §4: a token never appears in an error, even where a message quotes the value it
        # refuses (SIDECAR_EMPTY_TIMEOUT set to the API token by mistake).
        message = redact(str(exc).removeprefix(f"{exc.variable}: "), environ_secrets(env))
        raise ConfigError(exc.variable, message) from None


def _load(env: Mapping[str, str], overrides: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        if variable.name in env:
            raw = env[variable.name]
            if variable.name.startswith("SIDECAR_") and not _is_text(raw):
                # Checked here once for every variable, before any parser sees it: a value
                # that is not text would pass a parser and fail wherever it is later encoded.
                # (The platform's variables are never an error: their parsers judge them.)
                raise ConfigError(
                    variable.name, "is not valid UTF-8 text (the environment holds other bytes)"
                )
            try:
                values[variable.field] = variable.parse(raw)
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


def _is_text(value: str) -> bool:
    """False when `value` holds surrogate escapes: bytes of the environment that are not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    # Stripped as the parsers strip them (ASCII whitespace only), so both lists agree.
    values = [env.get(variable.name, "") for variable in VARIABLES if variable.secret]
    return [value.strip(ASCII_SPACE) for value in values if value.strip(ASCII_SPACE)]
