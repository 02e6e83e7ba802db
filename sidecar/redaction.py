"""Keeping secrets out of every text the sidecar produces (SPEC §11 "Secrets stay secret").

Two rules the callers rely on:

* `redact()` runs on the *whole* text before anything truncates it: cutting first could leave a
  prefix of a token that no longer matches and leaks most of it.
* A secret is also caught in its URL-encoded form, because platforms and proxies echo request
  URLs and headers back percent-encoded.

`redact_url()` is how `ARBITRIUM_DELETE_URL` is ever shown: scheme, host, port and path only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

REDACTED = "<redacted>"
_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def secret_forms(secret: str) -> list[str]:
    """Every spelling of `secret` that must be hidden, longest first."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)}
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
    """`text` with each of `forms` (from :func:`all_forms`) replaced by `<redacted>`."""
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
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
    return shown
