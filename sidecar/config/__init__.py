"""Configuration: every environment variable the sidecar reads, parsed once into a frozen
`Settings`, secrets kept secret because their field says so.

One module per job: `parsers` (the values a user sets: durations, ports, URLs, tokens),
`variable` (what a Settings field carries: name, parser, help, secrecy), `settings` (the
`Settings` table, `VARIABLES`, `load_settings()`), `report` (what check-config prints and the
unknown-variable warning). Everything is importable from here. The package never imports an
adapter: only the Agones manifest reader, and that only when the variable is set.
"""

from sidecar.config.parsers import (
    DURATION_FORM,
    MAX_DURATION_SECONDS,
    MAX_STORAGE_NAME,
    MIN_API_TOKEN_LENGTH,
    QUORUM_FORM,
    LogFormat,
    LogLevel,
    Secret,
    StopFailurePolicy,
    delete_url_problem,
    format_duration,
    parse_duration,
    result_url_problem,
    storage_name_problem,
)
from sidecar.config.report import (
    NOT_SETTINGS,
    VARIABLE_PREFIXES,
    config_warnings,
    redacted_settings,
    settings_json,
    unknown_variable_message,
    unknown_variables,
    variables_help,
    without_sidecar_variables,
)
from sidecar.config.settings import (
    ENV_NAMES,
    VARIABLES,
    Settings,
    environ_secrets,
    load_settings,
)
from sidecar.config.variable import Shown, Variable, setting
from sidecar.errors import ConfigError

__all__ = [
    "DURATION_FORM",
    "ENV_NAMES",
    "MAX_DURATION_SECONDS",
    "MAX_STORAGE_NAME",
    "MIN_API_TOKEN_LENGTH",
    "NOT_SETTINGS",
    "QUORUM_FORM",
    "VARIABLES",
    "VARIABLE_PREFIXES",
    "ConfigError",
    "LogFormat",
    "LogLevel",
    "Secret",
    "Settings",
    "Shown",
    "StopFailurePolicy",
    "Variable",
    "config_warnings",
    "delete_url_problem",
    "environ_secrets",
    "format_duration",
    "load_settings",
    "parse_duration",
    "redacted_settings",
    "result_url_problem",
    "setting",
    "settings_json",
    "storage_name_problem",
    "unknown_variable_message",
    "unknown_variables",
    "variables_help",
    "without_sidecar_variables",
]
