"""The sidecar's exception hierarchy, in one place.

    SidecarError                 base of everything we raise on purpose
    ├── ConfigError              a setting is invalid: the CLI prints it and exits 2
    ├── UsageError               a command-line flag or argument is invalid: exit 2
    ├── StartupError             cannot start (port in use, ...): exit 3
    └── GameStartError           the game command cannot be started: exit 127 / 126

Only `cli.main` catches `Exception` at large; everything else catches what it can handle.
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base class for errors the sidecar raises deliberately."""


class ConfigError(SidecarError):
    """An environment variable holds a value the sidecar cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class UsageError(SidecarError):
    """A command-line flag or argument is invalid."""


class StartupError(SidecarError):
    """The sidecar cannot start, e.g. the local API port is already in use."""


class GameStartError(SidecarError):
    """The game command could not be executed (not found: 127, not executable: 126)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
