"""Redaction of secrets (raw and URL-encoded), before truncation, and of the delete URL."""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

import pytest

from sidecar.redaction import REDACTED, redact, redact_url, truncate

TOKEN = "Tok/En+Pa ss=1"


@pytest.mark.parametrize(
    "form",
    [
        TOKEN,
        quote(TOKEN),
        quote(TOKEN, safe=""),
        quote_plus(TOKEN, safe=""),
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(TOKEN, safe="")),
    ],
)
def test_every_spelling_is_redacted(form: str) -> None:
    """Raw, quoted, quote_plus'd and lower-case-escaped forms all disappear."""
    text = redact(f"error: url=/x?t={form}&y", [TOKEN])
    assert form not in text
    assert "Tok" not in text
    assert REDACTED in text


def test_secret_containing_another_secret() -> None:
    """A short secret inside a long one never leaves the long one's tail visible."""
    assert redact("a abcdef b", ["abc", "abcdef"]) == f"a {REDACTED} b"


def test_redaction_before_truncation_leaves_no_prefix() -> None:
    """Redact then truncate: no prefix of the token survives at the cut."""
    token = "0123456789abcdef0123456789abcdef"
    text = "x" * 20 + token
    shown = truncate(redact(text, [token]), 25)
    assert "01234" not in shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@h.example/x?sig=1#f", f"https://{REDACTED}@h.example/x?{REDACTED}"),
        ("http://[::1]:9/v1/stop", "http://[::1]:9/v1/stop"),
        ("http://[::1", "<unparsable URL>"),
        ("http://h:99999/x", "<unparsable URL>"),
        ("//tok@h/x", f"//{REDACTED}@h/x"),
        (None, None),
    ],
)
def test_redact_url(url: str | None, shown: str | None) -> None:
    """Userinfo and query are replaced; unparsable URLs are not echoed."""
    assert redact_url(url) == shown


def test_log_lines_hide_the_url_encoded_token_too() -> None:
    """The logging filter hides every form redact() hides, tracebacks included."""
    import logging

    from sidecar.logs import RedactingFilter

    token = "tok/en+with=odd&chars"
    record = logging.LogRecord(
        "sidecar",
        logging.WARNING,
        __file__,
        1,
        "echo: %s and %s",
        (token, quote(token, safe="")),
        None,
    )
    try:
        raise RuntimeError(f"failed with {quote_plus(token)}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter([token]).filter(record)
    text = record.getMessage()
    assert "<redacted>" in text
    for form in (token, quote(token, safe=""), quote_plus(token)):
        assert form not in text
