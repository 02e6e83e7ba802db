"""Keeping secrets out of every text the sidecar produces (SPEC §11 "Secrets stay secret").

Two rules the callers rely on:

* `redact()` runs on the *whole* text before anything truncates it: cutting first could leave a
  prefix of a token that no longer matches and leaks most of it.
* A secret is also caught in its URL-encoded form, because platforms and proxies echo request
  URLs and headers back percent-encoded.

* A secret shorter than `WHOLE_WORD_BELOW` characters is hidden only where it stands as a whole
  word (not inside a longer run of letters, digits or `_`): the platform's delete token is not
  ours to refuse, and a token `e` replaced everywhere would turn every `e` of the logs into
  `<redacted>` (`list<redacted>ning`) while hiding nothing. Where it is sent or echoed (a header
  value, a query parameter, a quoted string) it stands alone and is hidden.
* Nothing here raises, whatever the secret holds: a token read from undecodable environment
  bytes (surrogate escapes) is percent-encoded as the bytes it came from.

`redact_url()` is how `ARBITRIUM_DELETE_URL` is ever shown: scheme, host, port and path only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

REDACTED = "<redacted>"
_ESCAPE = re.compile(r"%[0-9A-F]{2}")
# SPEC §11 asks 8 characters of SIDECAR_API_TOKEN for this reason; shorter forms (only the
# platform's token can be that short) are matched as whole words.
WHOLE_WORD_BELOW = 8


def _utf8(secret: str) -> bytes:
    """The bytes `secret` stands for: surrogate escapes back to the environment's own bytes (a
    lone surrogate from elsewhere is kept as its UTF-8-like bytes rather than raising)."""
    try:
        return secret.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return secret.encode("utf-8", "surrogatepass")


def secret_forms(secret: str) -> list[str]:
    """Every spelling of `secret` that must be hidden, longest first."""
    raw = _utf8(secret)
    forms = {secret, quote(raw, safe=""), quote_plus(raw, safe=""), quote(raw)}
    # Lower-case percent escapes are as valid as upper-case ones.
    # Only the escapes are lowered: the token's own letters keep their case.
    forms |= {_ESCAPE.sub(lambda m: m.group().lower(), form) for form in forms}
    return sorted((form for form in forms if form), key=len, reverse=True)


def all_forms(secrets: Iterable[str]) -> list[str]:
    """Every form of every (non-empty) secret, longest first across all of them: a short secret
    inside a longer one must not be replaced first and leave the rest of the longer one visible.
    """
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every (non-empty) secret replaced by `<redacted>`."""
    return redact_forms(text, all_forms(secrets))


def redact_forms(text: str, forms: list[str]) -> str:
    """`text` with each of `forms` (from :func:`all_forms`) replaced by `<redacted>`; a form
    shorter than WHOLE_WORD_BELOW only where it stands as a whole word."""
    for form in forms:
        if form in text:
            if len(form) >= WHOLE_WORD_BELOW:
                text = text.replace(form, REDACTED)
            else:
                text = _whole_word(form).sub(REDACTED, text)
    return text


def redact_json(value: Any, forms: list[str]) -> Any:
    """A JSON value (from a request body) with every string in it, keys too, passed through
    :func:`redact_forms`; the value itself when there is nothing to hide. Recursive: call it on
    parsed bodies only, whose depth the API bounds (64 levels)."""
    if not forms:
        return value
    if isinstance(value, str):
        return redact_forms(value, forms)
    if isinstance(value, list):
        return [redact_json(item, forms) for item in value]
    if isinstance(value, dict):
        return {redact_forms(k, forms): redact_json(v, forms) for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=64)
def _whole_word(form: str) -> re.Pattern[str]:
    """`form` not preceded or followed by a word character (letter, digit, `_`)."""
    return re.compile(rf"(?<!\w){re.escape(form)}(?!\w)")


def truncate(text: str, limit: int) -> str:
    """The first `limit` characters (call after `redact`, never before)."""
    return text if len(text) <= limit else text[:limit] + "…"


def redact_url(url: str | None) -> str | None:
    """`url` without userinfo, query or fragment: those are where credentials hide."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    if parts.username is not None or parts.password is not None:
        host = f"{REDACTED}@{host}"
    shown = f"{parts.scheme}://{host}" if parts.scheme else f"//{host}"
    if port is not None:
        shown += f":{port}"
    shown += parts.path
    if parts.query:
        shown += f"?{REDACTED}"
    # Printable whatever the environment held: an undecodable byte (a surrogate escape) or a
    # control character is written as its escape, never sent raw to a terminal or a strict
    # UTF-8 stdout.
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in shown)
