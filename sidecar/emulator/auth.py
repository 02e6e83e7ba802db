"""Authentication as on the platform.

Management calls carry `authorization: token <TOKEN>`: without the header or without the
`token ` prefix → 401; with `api_token` configured the token must match exactly, otherwise any
non-empty token is accepted. Self-stop carries the deployment's delete token raw (no prefix),
the context API its context token raw.

A header may hold any bytes; aiohttp hands the ones that are not UTF-8 over as lone surrogates.
They are compared as they came (`surrogatepass`), so such a token simply does not match: 401,
as on the platform, never an encoding error.
"""

from __future__ import annotations

import hmac

_PREFIX = "token "


def management_error(header: str | None, api_token: str | None) -> str | None:
    """None when `header` authorises a management call, else the 401 message."""
    if not header:
        return "Unauthorized - Missing Token"
    if not header.lower().startswith(_PREFIX):
        return "Unauthorized - expected 'authorization: token <TOKEN>'"
    token = header[len(_PREFIX) :].strip()
    if not token:
        return "Unauthorized - Missing Token"
    if api_token is not None and not hmac.compare_digest(_bytes(token), _bytes(api_token)):
        return "Unauthorized - Invalid Token"
    return None


def raw_token_matches(header: str | None, expected: str) -> bool:
    """The raw-token check of self-stop and context calls (constant time)."""
    return header is not None and hmac.compare_digest(_bytes(header), _bytes(expected))


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
