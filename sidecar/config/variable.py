"""What a Settings field carries: its environment variable's name, parser, help, and how
check-config shows it (`Shown.SECRET` is what makes a value secret, everywhere).

`setting()` builds the field; sidecar.config.settings reads the table `VARIABLES` off the fields,
so a variable cannot be parsed but not redacted, or listed but not parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum
from typing import Any


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
