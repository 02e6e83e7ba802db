"""What check-config shows: the effective settings with secrets redacted (text and `--json`),
the variables with their defaults (`--list`), and the warnings: unknown `SIDECAR_*` variables
(with the closest known name) and storage names the platform may refuse.

Everything here reads the one table, `VARIABLES`: a field marked secret is redacted in each,
and every other value shown passes through `redaction.redact` with the settings' secrets (a URL
whose path holds a token, a duration set to a token by mistake).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.config.parsers import format_duration, storage_name_problem
from sidecar.config.settings import VARIABLES, Settings
from sidecar.config.variable import Shown, Variable
from sidecar.lifecycle import Quorum
from sidecar.redaction import redact, redact_url


def redacted_settings(settings: Settings) -> dict[str, str]:
    """Effective settings by variable name as check-config prints them, secrets as <redacted>."""
    rows: dict[str, str] = {}
    secrets = settings.secrets()
    for variable in VARIABLES:
        value = getattr(settings, variable.field)
        shown = _shown(variable, value)
        if variable.field == "delete_url" and value is not None and settings.delete_url_problem:
            shown += f"  (ignored: {settings.delete_url_problem})"
        elif variable.field == "delete_token" and settings.delete_token_problem:
            shown += f"  (ignored: {settings.delete_token_problem})"
        elif value is None and variable.field == "dry_run":
            shown = f"auto ({'true' if settings.effective_dry_run else 'false'})"
        elif value is None and variable.field == "error_log_storage" and settings.log_storage:
            shown = f"<same as SIDECAR_LOG_STORAGE: {settings.log_storage}>"
        rows[variable.name] = redact(shown, secrets)
    return rows


def settings_json(settings: Settings) -> dict[str, Any]:
    """Effective settings by variable name for `check-config --json` (SPEC §13): durations as
    seconds, secrets as "***" (null when unset), the URL redacted, auto values resolved."""
    document: dict[str, Any] = {}
    secrets = settings.secrets()
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
        document[variable.name] = redact(encoded, secrets) if isinstance(encoded, str) else encoded
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
    return [redact(warning, settings.secrets()) for warning in warnings]
