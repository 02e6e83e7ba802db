"""Values that passed check-config and then broke the run (the third attack round): tokens that
cannot be sent, bytes that are not text, bind addresses and ports a bind refuses, durations too
short to time, URLs aiohttp cannot send to, and tokens echoed back by errors and check-config.

Each is caught where the configuration is read: exit 2 naming the variable for a setting of
ours, dry-run with one warning for the platform's delete token; check-config says the same."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from sidecar.config import (
    VARIABLES,
    config_warnings,
    format_duration,
    load_settings,
    parse_duration,
    redacted_settings,
    settings_json,
    without_sidecar_variables,
)
from sidecar.errors import ConfigError

DELETE_TOKEN = "SEKRETdeltok99"
API_TOKEN = "SEKRETapi123"
# Tokens the platform could inject that no HTTP header can carry unchanged.
UNSENDABLE_TOKENS = {
    "undecodable bytes": "SEKRET\udcff\udcfeabc",  # what os.environ makes of b"\xff\xfe"
    "newline": "SEKRETab\ncd",
    "control character": "SEKRETab\x01cd",
    "trailing NBSP": "SEKRETabcd\u00a0",
    "non-ASCII letter": "SEKRETäbcd",
}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env={**without_sidecar_variables(os.environ), "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=False,
    )


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A fake platform: answers 200 to anything and remembers what it was sent."""

    seen: list[str]

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_DELETE = do_POST = do_GET = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def platform() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on a loopback port: (its delete URL, the requests it received)."""
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/self/stop/abc/1", seen
    finally:
        server.shutdown()
        server.server_close()


class TestDeleteTokenThatCannotBeSent:
    @pytest.mark.parametrize("token", UNSENDABLE_TOKENS.values(), ids=UNSENDABLE_TOKENS.keys())
    def test_counts_as_missing_with_one_reason_naming_it(self, token: str) -> None:
        """Like a malformed ARBITRIUM_DELETE_URL: dry-run, the reason names the variable and
        never the value; the token is still a secret to redact."""
        settings = load_settings(
            {"ARBITRIUM_DELETE_URL": "http://h/x", "ARBITRIUM_DELETE_TOKEN": token}
        )
        assert settings.effective_dry_run
        assert not settings.platform_configured
        reason = settings.dry_run_reason or ""
        assert reason.startswith("ARBITRIUM_DELETE_TOKEN is not printable ASCII")
        assert "SEKRET" not in reason
        assert token.strip(" \t\n") in settings.secrets()
        shown = redacted_settings(settings)["ARBITRIUM_DELETE_TOKEN"]
        assert shown.startswith("<redacted>  (ignored: is not printable ASCII")

    @pytest.mark.parametrize("token", UNSENDABLE_TOKENS.values(), ids=UNSENDABLE_TOKENS.keys())
    def test_with_dry_run_false_is_exit_2_naming_it(self, token: str) -> None:
        """SIDECAR_DRY_RUN=false needs a token that can be sent: exit 2 naming the variable."""
        env = {
            "ARBITRIUM_DELETE_URL": "http://h/x",
            "ARBITRIUM_DELETE_TOKEN": token,
            "SIDECAR_DRY_RUN": "false",
        }
        with pytest.raises(ConfigError) as error:
            load_settings(env)
        assert error.value.variable == "ARBITRIUM_DELETE_TOKEN"
        assert "SEKRET" not in str(error.value)

    def test_only_ascii_whitespace_is_trimmed(self) -> None:
        """Spaces and tabs around a token go (as before); the token itself is sent as given."""
        settings = load_settings(
            {"ARBITRIUM_DELETE_URL": "http://h/x", "ARBITRIUM_DELETE_TOKEN": " \tSEKRETok99 \n"}
        )
        assert settings.delete_token is not None
        assert settings.delete_token.get_secret_value() == "SEKRETok99"
        assert settings.platform_configured

    @pytest.mark.parametrize(
        "token", [UNSENDABLE_TOKENS["undecodable bytes"], UNSENDABLE_TOKENS["newline"]]
    )
    def test_run_starts_the_game_in_dry_run_and_sends_nothing(
        self, token: str, platform: tuple[str, list[str]]
    ) -> None:
        """Before: UnicodeEncodeError while configuring logging (rc 1, the game never ran), or
        ten minutes of refused attempts ending `failed`. Now the game runs, one warning names
        the variable, nothing reaches the platform, and the token is nowhere in the output."""
        url, seen = platform
        env = {"ARBITRIUM_DELETE_URL": url, "ARBITRIUM_DELETE_TOKEN": token, "SIDECAR_PORT": "0"}
        result = cli("run", "--", sys.executable, "-c", "print('game ran')", env=env)
        output = result.stdout + result.stderr
        assert result.returncode == 0, result.stderr
        assert "game ran" in result.stdout
        assert "Traceback" not in output
        assert "SEKRET" not in output
        warnings = [line for line in result.stderr.splitlines() if "ARBITRIUM_DELETE_TOKEN" in line]
        assert len(warnings) == 1
        assert "dry-run" in warnings[0]
        record = json.loads(next(x for x in result.stdout.splitlines() if "sidecar.stop" in x))
        assert record["dry_run"] is True
        assert seen == []

    def test_check_config_says_the_same(self) -> None:
        """check-config shows the token as ignored and the mode as dry-run; with
        SIDECAR_DRY_RUN=false it exits 2 naming the variable."""
        env = {
            "ARBITRIUM_DELETE_URL": "http://127.0.0.1:9/x",
            "ARBITRIUM_DELETE_TOKEN": UNSENDABLE_TOKENS["undecodable bytes"],
        }
        shown = cli("check-config", env=env)
        assert shown.returncode == 0, shown.stderr
        assert "dry-run (ARBITRIUM_DELETE_TOKEN is not printable ASCII" in shown.stdout
        assert "SEKRET" not in shown.stdout + shown.stderr
        refused = cli("check-config", env={**env, "SIDECAR_DRY_RUN": "false"})
        assert refused.returncode == 2
        assert refused.stderr.startswith("edgegap-sidecar: ARBITRIUM_DELETE_TOKEN: ")


class TestValuesThatAreNotText:
    @pytest.mark.parametrize("name", [v.name for v in VARIABLES if v.name.startswith("SIDECAR_")])
    def test_every_sidecar_variable_refuses_undecodable_bytes(self, name: str) -> None:
        """Bytes that are not UTF-8 (surrogate escapes) are exit 2 naming the variable, for
        every SIDECAR_* variable, before any parser sees them."""
        with pytest.raises(ConfigError) as error:
            load_settings({name: "pl\udcff"})
        assert error.value.variable == name
        assert "not valid UTF-8 text" in str(error.value)

    def test_run_and_check_config_agree(self) -> None:
        """Before: check-config 0, then run crashed with UnicodeEncodeError (rc 1) once the
        Agones facade encoded the list name. Now both exit 2 naming the variable."""
        env = {
            "SIDECAR_AGONES": "true",
            "SIDECAR_AGONES_PLAYERS_LIST": "pl\udcff",
            "SIDECAR_PORT": "0",
            "SIDECAR_AGONES_HTTP_PORT": "0",
        }
        for args in (("check-config",), ("run", "--", sys.executable, "-c", "pass")):
            result = cli(*args, env=env)
            assert result.returncode == 2, result.stderr
            assert result.stderr.startswith("edgegap-sidecar: SIDECAR_AGONES_PLAYERS_LIST: ")
            assert "Traceback" not in result.stderr


class TestSecretsInCheckConfigAndErrors:
    def test_token_in_a_url_path_is_redacted_in_text_and_json(self) -> None:
        """A URL path holding a token shows <redacted> there, in both check-config forms."""
        env = {
            "ARBITRIUM_DELETE_URL": f"http://h/x/{DELETE_TOKEN}",
            "ARBITRIUM_DELETE_TOKEN": DELETE_TOKEN,
            "SIDECAR_RESULT_URL": f"https://results.example/{API_TOKEN}/r",
            "SIDECAR_API_TOKEN": API_TOKEN,
        }
        text = cli("check-config", env=env)
        as_json = cli("check-config", "--json", env=env)
        assert text.returncode == as_json.returncode == 0
        for result in (text, as_json):
            assert "SEKRET" not in result.stdout + result.stderr
        document = json.loads(as_json.stdout)
        assert document["ARBITRIUM_DELETE_URL"] == "http://h/x/<redacted>"
        assert document["SIDECAR_RESULT_URL"] == "https://results.example/<redacted>/r"

    def test_a_config_error_never_quotes_a_token(self) -> None:
        """A value refused by its parser is quoted, unless it holds a token: then redacted."""
        env = {"SIDECAR_EMPTY_TIMEOUT": API_TOKEN, "SIDECAR_API_TOKEN": API_TOKEN}
        with pytest.raises(ConfigError) as error:
            load_settings(env)
        assert API_TOKEN not in str(error.value)
        assert "<redacted>" in str(error.value)
        result = cli("check-config", env=env)
        assert result.returncode == 2
        assert result.stderr.startswith("edgegap-sidecar: SIDECAR_EMPTY_TIMEOUT: ")
        assert API_TOKEN not in result.stderr


class TestResultUrlThatCannotBeSent:
    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("https://a..b/x", "invalid host name"),
            (f"https://{'a' * 64}.example/x", "invalid host name"),
            ("https://h:0/x", "port"),
        ],
    )
    def test_hosts_aiohttp_refuses_are_exit_2(self, url: str, problem: str) -> None:
        """The delete URL's checks apply: an empty or over-long host label is exit 2."""
        with pytest.raises(ConfigError, match=problem) as error:
            load_settings({"SIDECAR_RESULT_URL": url})
        assert error.value.variable == "SIDECAR_RESULT_URL"

    def test_credentials_clash_with_the_result_token(self) -> None:
        """user:pw@ and SIDECAR_RESULT_TOKEN are two Authorization headers: exit 2 naming
        the URL (as for ARBITRIUM_DELETE_URL); either alone is fine."""
        url = "http://u:pw@127.0.0.1:9/r"
        with pytest.raises(ConfigError, match="clash with SIDECAR_RESULT_TOKEN") as error:
            load_settings({"SIDECAR_RESULT_URL": url, "SIDECAR_RESULT_TOKEN": "SEKRETres1"})
        assert error.value.variable == "SIDECAR_RESULT_URL"
        assert "pw" not in str(error.value)
        assert load_settings({"SIDECAR_RESULT_URL": url}).result_url == url

    def test_check_config_exits_2(self) -> None:
        """check-config refuses it like run does (docs/integration.md: exit 2 naming it)."""
        result = cli("check-config", env={"SIDECAR_RESULT_URL": "https://a..b/x"})
        assert result.returncode == 2
        assert result.stderr.startswith("edgegap-sidecar: SIDECAR_RESULT_URL: ")


class TestPortsThatClash:
    @pytest.mark.parametrize(
        ("env", "named", "other"),
        [
            ({"SIDECAR_PORT": "9358"}, "SIDECAR_AGONES_HTTP_PORT", "SIDECAR_PORT"),
            ({"SIDECAR_PORT": "9357"}, "SIDECAR_AGONES_GRPC_PORT", "SIDECAR_PORT"),
            (
                {"SIDECAR_AGONES_HTTP_PORT": "9400", "SIDECAR_AGONES_GRPC_PORT": "9400"},
                "SIDECAR_AGONES_GRPC_PORT",
                "SIDECAR_AGONES_HTTP_PORT",
            ),
        ],
    )
    def test_the_facade_needs_ports_of_its_own(
        self, env: dict[str, str], named: str, other: str
    ) -> None:
        """Before: check-config 0, run exit 3 at bind. Now exit 2 naming both variables."""
        with pytest.raises(ConfigError) as error:
            load_settings({"SIDECAR_AGONES": "true", **env})
        assert error.value.variable == named
        assert other in str(error.value)

    def test_free_ports_and_a_facade_that_is_off_never_clash(self) -> None:
        """0 picks a free port for each; without SIDECAR_AGONES its ports are not bound."""
        zeros = {
            "SIDECAR_PORT": "0",
            "SIDECAR_AGONES_HTTP_PORT": "0",
            "SIDECAR_AGONES_GRPC_PORT": "0",
        }
        assert load_settings({"SIDECAR_AGONES": "true", **zeros}).agones
        assert load_settings({"SIDECAR_PORT": "9358"}).port == 9358

    def test_check_config_exits_2(self) -> None:
        """check-config agrees with run."""
        result = cli("check-config", env={"SIDECAR_AGONES": "true", "SIDECAR_PORT": "9358"})
        assert result.returncode == 2
        assert result.stderr.startswith("edgegap-sidecar: SIDECAR_AGONES_HTTP_PORT: ")


class TestDurationRules:
    @pytest.mark.parametrize("text", ["0.0000001ms", "0.5ms", "0.0005", "0.0009s"])
    def test_non_zero_under_a_millisecond_is_refused(self, text: str) -> None:
        """Before: 0.0000001ms was taken and shown as `0ms` (reads as disabled)."""
        with pytest.raises(ValueError, match="at least 1ms"):
            parse_duration(text)
        with pytest.raises(ConfigError) as error:
            load_settings({"SIDECAR_EMPTY_TIMEOUT": text})
        assert error.value.variable == "SIDECAR_EMPTY_TIMEOUT"

    def test_what_is_shown_is_what_was_set(self) -> None:
        """1ms and 1.5ms read back as written; 0 is still 0 (disabled)."""
        assert format_duration(parse_duration("1ms")) == "1ms"
        assert format_duration(parse_duration("1.5ms")) == "1.5ms"
        assert format_duration(parse_duration("0ms")) == "0"

    @pytest.mark.parametrize(
        ("text", "seconds"), [("10 s", 10), ("1h 30m", 5400), ("1h\t30m 15 s", 5415)]
    )
    def test_spaces_are_allowed_between_parts_as_within_them(
        self, text: str, seconds: float
    ) -> None:
        """`10 s` was accepted and `1h 30m` refused; spaces now work in both places."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["1ms", "999ms", "0.5", "0"])
    def test_stop_attempt_timeout_is_at_least_a_second(self, text: str) -> None:
        """Before: 1ms made every attempt time out after reaching the platform (6 DELETEs,
        then `failed`). An attempt now gets at least 1s, with the reason in the message."""
        with pytest.raises(ConfigError, match="at least 1s") as error:
            load_settings({"SIDECAR_STOP_ATTEMPT_TIMEOUT": text})
        assert error.value.variable == "SIDECAR_STOP_ATTEMPT_TIMEOUT"
        assert load_settings({"SIDECAR_STOP_ATTEMPT_TIMEOUT": "1s"}).stop_attempt_timeout == 1


class TestLogStorageBooleans:
    @pytest.mark.parametrize("value", ["TRUE", "True", "FALSE", " false "])
    def test_true_and_false_in_any_case(self, value: str) -> None:
        """Like every other boolean: TRUE is `true`, not a storage named TRUE, and no warning."""
        env = {"SIDECAR_ERROR_LOG_STORAGE": value, "SIDECAR_LOG_STORAGE": value}
        settings = load_settings(env)
        assert settings.error_log_storage == value.strip().lower()
        assert settings.log_storage == value.strip().lower()
        assert config_warnings(settings, env) == []
        assert settings_json(settings)["SIDECAR_ERROR_LOG_STORAGE"] == value.strip().lower()
