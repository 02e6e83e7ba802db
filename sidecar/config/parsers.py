"""The values a user sets, parsed: durations (`90`, `90s`, `1500ms`, `5m`, `1h`, `1m30s`), ports,
rates, flags, choices, URLs, tokens (`Secret`), storage names and the match quorum.

Each parser takes the string a user sets and returns the typed value, or raises ValueError with
the expected form (never quoting a secret); sidecar.config.settings turns it into a ConfigError
naming the variable. A parser is named for the value it reads: `parsers.port`, `parsers.flag`.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from sidecar.addresses import is_loopback
from sidecar.lifecycle import Quorum, QuorumRule

if TYPE_CHECKING:
    from sidecar.agones.manifest import GameServerManifest

# re.ASCII: without it \d and IGNORECASE accept Unicode digits and letters (Arabic-Indic
# five, the long s), which int()/float() would then happily convert.
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
# One part of a duration: a number and its unit (`ms` before `m`, so 5ms is not 5 minutes).
# Spaces or tabs may stand before a part and between its number and unit, so `10 s` and
# `1h 30m` are both read (the text is stripped first, so the first part has none).
_DURATION_PART = re.compile(
    r"[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*(ms|h|m|s)", re.IGNORECASE | re.ASCII
)
_RATE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)
# Only ASCII whitespace is stripped: str.strip() would also eat NBSP and friends.
ASCII_SPACE = " \t\n\r\x0b\x0c"
# Longer than any real timer; beyond it, deadlines and timeouts risk overflow downstream.
MAX_DURATION_SECONDS = 10 * 365 * 86400.0
# The shortest duration other than 0: timers and timeouts run on a millisecond scale, and a
# value like 0.0000001ms would neither fire as written nor read back as anything but `0ms`,
# which looks like "disabled".
MIN_DURATION_SECONDS = 0.001
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
        parsed = _duration_text(text.strip(ASCII_SPACE)) if text.isascii() else None
        if parsed is None:
            raise ValueError(f"expected {DURATION_FORM}, got {text[:40]!r}")
        seconds = parsed
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"expected {DURATION_FORM}, got a negative or invalid value")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"expected {DURATION_FORM}, at most 10 years; got a larger value")
    if 0 < seconds < MIN_DURATION_SECONDS:
        raise ValueError(f"expected {DURATION_FORM}, 0 or at least 1ms; got a smaller value")
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
    # Every duration but 0 is at least 1ms (MIN_DURATION_SECONDS): `1.5ms` stays 1.5ms.
    return f"{seconds * 1000:g}ms"


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
def optional_url(value: str) -> str | None:
    """Never an error: a malformed URL counts as missing (Settings.delete_url_problem)."""
    return value.strip(ASCII_SPACE) or None


def platform_token(value: str) -> Secret | None:
    """ARBITRIUM_DELETE_TOKEN: never an error, like the URL. Only ASCII whitespace around it is
    dropped (a trailing NBSP is part of what was given); a token that cannot be sent as a header
    value counts as missing (Settings.delete_token_problem), and stays a secret to redact."""
    token = value.strip(ASCII_SPACE)
    return Secret(token) if token else None


def header_value_problem(token: str) -> str | None:
    """Why `token` cannot be sent as an HTTP header value (None when it can). Only printable
    ASCII travels unchanged: aiohttp refuses control characters (a newline would forge a
    header), and a non-ASCII or undecodable character would be re-encoded, so the platform
    would receive something other than the token."""
    if token.isascii() and token.isprintable():
        return None
    return "is not printable ASCII (it could not be sent in an HTTP header)"


# SPEC §11: a shorter token is neither a secret nor something redaction can hide without
# mangling the logs (a token "list" would turn "listening" into "<redacted>ening").
MIN_API_TOKEN_LENGTH = 8


def api_token(value: str) -> Secret | None:
    # The game sends it in an HTTP header, and SPEC §11 answers a non-ASCII Authorization
    # header with 401: such a token could never be used.
    secret = header_secret(value)
    if secret is None:
        return None
    token = secret.get_secret_value()
    # Counted as given (untrimmed, SPEC §11) and as used (the header drops the spaces around
    # it): eight characters either way. The message never quotes the value, nor its length.
    if min(len(value), len(token)) < MIN_API_TOKEN_LENGTH:
        raise ValueError(
            f"expected at least {MIN_API_TOKEN_LENGTH} characters: a shorter token is "
            "neither a secret nor something the logs can hide (e.g. openssl rand -hex 16)"
        )
    return secret


def result_url(value: str) -> str | None:
    """SPEC §12: `https://`, or `http://` to a loopback address (a result sent in clear text
    must not leave the machine). Unlike ARBITRIUM_DELETE_URL a bad one is an error: the studio
    set it, and a silently dropped result is worse than a refused start. The message never
    quotes the URL: it may carry credentials."""
    url = value.strip(ASCII_SPACE)
    if not url:
        return None
    problem = result_url_problem(url)
    if problem is not None:
        raise ValueError(
            f"expected an https:// URL, or http:// to a loopback address; it {problem}"
        )
    return url


def result_url_problem(url: str) -> str | None:
    """Why `url` cannot be SIDECAR_RESULT_URL (None when it can): what aiohttp could not send
    (the checks of ARBITRIUM_DELETE_URL) or an http:// URL that would leave the machine.
    Credentials that clash with SIDECAR_RESULT_TOKEN are Settings' check (two variables)."""
    problem = _http_url_problem(url)
    if problem is not None:
        return problem
    from yarl import URL

    parsed = URL(url)  # parses: _http_url_problem said so
    if parsed.scheme == "http" and not is_loopback((parsed.raw_host or "").strip("[]")):
        return "is http:// to an address that is not loopback"
    return None


def header_secret(value: str) -> Secret | None:
    """A token sent in an HTTP header: printable ASCII, or it could never be sent."""
    token = value.strip(ASCII_SPACE)
    if not token:
        return None
    if header_value_problem(token) is not None:
        raise ValueError("expected printable ASCII characters (it is sent in an HTTP header)")
    return Secret(token)


# SPEC §11: the platform owns its naming rules, so any printable name up to 256 characters is
# sent; one outside this pattern is only worth a warning.
MAX_STORAGE_NAME = 256
_PLAIN_STORAGE_NAME = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)


def log_storage(value: str) -> str | None:
    """`true`, `false` or an endpoint-storage name (1-256 printable characters); empty = unset.

    `true` and `false` are read in any case, like every other boolean of the configuration
    (`TRUE` is sent as `true`, not as a storage named TRUE)."""
    name = value.strip(ASCII_SPACE)
    if not name:
        return None
    if name.lower() in ("true", "false"):
        return name.lower()
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


def host(value: str) -> str:
    """An address or host name the local API can bind: refused here, not at bind time (exit 3),
    are the spellings a bind cannot take: brackets (`[::1]` is a URL's spelling), an IPv6 zone
    id (`fe80::1%eth0`, `127.0.0.1%lo`) and an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`:
    bind the IPv4 address itself)."""
    text = value.strip(ASCII_SPACE)
    if not text:
        raise ValueError("expected an address such as 127.0.0.1, got an empty value")
    if text.startswith("[") or text.endswith("]"):
        raise ValueError("expected an address without brackets, such as ::1 or 127.0.0.1")
    if "%" in text:
        raise ValueError("expected an address without a zone id (%...), such as 127.0.0.1")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        if not (_HOST_NAME.fullmatch(text) and _idna_ok(text)):
            raise ValueError(
                "expected an IP address such as 127.0.0.1 or 0.0.0.0, or a host name"
            ) from None
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError(
            f"expected the IPv4 address itself ({address.ipv4_mapped}), not its IPv6-mapped form"
        )
    return text


def _idna_ok(name: str) -> bool:
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return True


def port(value: str) -> int:
    text = value.strip(ASCII_SPACE)
    # isascii first: isdigit() is true for Unicode digits and superscripts; the length cap
    # keeps int() cheap.
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 65535:
        raise ValueError(f"expected a port number 0-65535, got {value[:40]!r}")
    return int(text)


def rate(value: str) -> float:
    text = value.strip(ASCII_SPACE)
    # A plain decimal: float() would also take `inf`, `nan`, `1e999`, `1_0` and Unicode digits.
    if not (text.isascii() and _RATE.fullmatch(text)):
        raise ValueError(f"expected a number of packets per second >= 0, got {value[:40]!r}")
    rate = float(text)
    if not math.isfinite(rate):
        raise ValueError("expected a number of packets per second >= 0, got a value too large")
    return rate


# An attempt must be able to reach the platform and hear its answer: connect, TLS handshake and
# a DELETE round trip take hundreds of milliseconds on a good day. Below a second, attempts that
# did reach the platform are counted as timed out and resent, and the stop ends `failed`.
MIN_STOP_ATTEMPT_SECONDS = 1.0


def stop_attempt_timeout(value: str) -> float:
    seconds = parse_duration(value)
    if seconds < MIN_STOP_ATTEMPT_SECONDS:
        raise ValueError(
            "expected at least 1s (like 10s): a shorter attempt gives up on a platform that "
            "is still answering, and the stop is resent and then counted as failed"
        )
    return seconds


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def tri_state(value: str) -> bool | None:
    text = value.strip().lower()
    if text in ("", "auto"):
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true, false or auto, got {value!r}")


def flag(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def nonempty_name(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a name, got an empty value")
    return value.strip()


def manifest(value: str) -> GameServerManifest | None:
    """An Agones GameServer file, read and checked now (SPEC §10: a bad one is exit 2)."""
    if not value.strip():
        return None
    from sidecar.agones.manifest import load_manifest

    return load_manifest(value.strip())


QUORUM_FORM = "a number of players (1 or more), all or teams"


def quorum(value: str) -> Quorum:
    """SIDECAR_MATCH_QUORUM: `3`, `all` or `teams` (SPEC §12)."""
    text = value.strip(ASCII_SPACE).lower()
    if text in (QuorumRule.ALL, QuorumRule.TEAMS):
        return Quorum(QuorumRule(text))
    # ASCII digits only, and few of them: no roster is larger than ROSTER_CAP anyway.
    if text.isascii() and text.isdigit() and len(text) <= 9 and int(text) >= 1:
        return Quorum(QuorumRule.COUNT, int(text))
    raise ValueError(f"expected {QUORUM_FORM}, got {value[:40]!r}")


def choice(enum: type[StrEnum]) -> Callable[[str], StrEnum]:
    def parse(value: str) -> StrEnum:
        try:
            return enum(value.strip().lower())
        except ValueError:
            expected = ", ".join(member.value for member in enum)
            raise ValueError(f"expected one of {expected}, got {value!r}") from None

    return parse


_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)


@functools.lru_cache(maxsize=8)
def delete_url_problem(url: str) -> str | None:
    """Why aiohttp could not send DELETE to `url` (None when it can): `_http_url_problem`, and
    credentials, which clash with the token header. Messages never quote the URL: it may carry
    credentials."""
    problem = _http_url_problem(url)
    if problem is not None:
        return problem
    if url_has_credentials(url):
        return "carries credentials (user@host), which clash with ARBITRIUM_DELETE_TOKEN"
    return None


def url_has_credentials(url: str) -> bool:
    """Whether `url` (one `_http_url_problem` accepts) carries a user or password: aiohttp then
    sends them as an Authorization header, and refuses a request that sets its own."""
    from yarl import URL

    parsed = URL(url)
    return parsed.raw_user is not None or parsed.raw_password is not None


def _http_url_problem(url: str) -> str | None:
    """Why aiohttp could not send a request to `url` (None when it can).

    Parsed with yarl, as aiohttp does, plus the checks aiohttp only makes at request time
    (scheme, host, IDNA encoding of the host: empty labels as in `a..b`, labels over 63
    characters) and the ones yarl is lenient about (`:+80`, Unicode-digit ports). Messages
    never quote the URL: it may carry credentials."""
    from urllib.parse import urlsplit

    from yarl import URL

    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "contains whitespace, control characters or undecodable bytes"
    try:
        netloc = urlsplit(url).netloc
        parsed = URL(url)
    except ValueError:
        return "cannot be parsed as a URL (bad IPv6 address or port)"
    if parsed.scheme not in ("http", "https"):
        return "is not an http or https URL"
    if not parsed.raw_host:
        return "has no host"
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
