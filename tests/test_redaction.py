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


class TestSecretsOfAnyShape:
    def test_a_surrogate_escaped_secret_never_raises(self) -> None:
        """Before: UnicodeEncodeError in quote() while logging was configured (and again in the
        bug reporter). Undecodable bytes are redacted raw and percent-encoded as those bytes."""
        secret = "SEKRET\udcff\udcfeabc"
        text = f"raw {secret} encoded SEKRET%FF%FEabc lower SEKRET%ff%feabc"
        shown = redact(text, [secret])
        assert "SEKRET" not in shown
        assert shown.count(REDACTED) == 3

    def test_a_lone_surrogate_never_raises(self) -> None:
        """A surrogate that no environment byte explains is still a secret, never an error."""
        assert redact("x \ud800abcdefgh y", ["\ud800abcdefgh"]) == f"x {REDACTED} y"

    def test_a_short_secret_is_hidden_only_as_a_whole_word(self) -> None:
        """Before: a delete token `e` turned `listening` into `list<redacted>ning`. A secret
        under 8 characters is hidden where it stands alone: a header, a query value, quoted."""
        text = "listening on e; authorization: e; /stop?t=e&x=1; 'e'; eager"
        assert redact(text, ["e"]) == (
            f"listening on {REDACTED}; authorization: {REDACTED}; /stop?t={REDACTED}&x=1; "
            f"'{REDACTED}'; eager"
        )

    def test_a_long_secret_is_hidden_even_inside_a_word(self) -> None:
        """From 8 characters on, every occurrence goes, glued to other text or not."""
        assert redact("xxSEKRET99yy", ["SEKRET99"]) == f"xx{REDACTED}yy"

    def test_redact_url_output_is_printable(self) -> None:
        """An undecodable byte or control character in a URL is shown escaped, never raw."""
        assert redact_url("http://h/p\udcff\x1b") == "http://h/p\\udcff\\x1b"


def test_a_short_delete_token_leaves_the_logs_readable() -> None:
    """A run with ARBITRIUM_DELETE_TOKEN=e logs `listening` intact (the platform's token is
    not ours to refuse, SIDECAR_API_TOKEN's floor cannot apply to it)."""
    import os
    import subprocess
    import sys

    from sidecar.config import without_sidecar_variables

    env = {
        **without_sidecar_variables(os.environ),
        "ARBITRIUM_DELETE_URL": "http://127.0.0.1:9/x",
        "ARBITRIUM_DELETE_TOKEN": "e",
        "SIDECAR_PORT": "0",
        "SIDECAR_DRY_RUN": "true",
    }
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--", sys.executable, "-c", "pass"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert " listening on http://127.0.0.1:" in result.stderr
    assert REDACTED not in result.stderr
