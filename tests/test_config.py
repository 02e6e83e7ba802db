"""Settings from the environment: defaults, durations, the dry-run rule, errors naming variables."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from sidecar.config import (
    ENV_NAMES,
    MAX_DURATION_SECONDS,
    NOT_SETTINGS,
    VARIABLES,
    Secret,
    Settings,
    StopFailurePolicy,
    config_warnings,
    environ_secrets,
    format_duration,
    load_settings,
    parse_duration,
    redacted_settings,
    unknown_variables,
    without_sidecar_variables,
)
from sidecar.errors import ConfigError
from sidecar.lifecycle import TimerSettings

PLATFORM = {
    "ARBITRIUM_DELETE_URL": "http://127.0.0.1:9/v1/self/stop/abcdef123456/1",
    "ARBITRIUM_DELETE_TOKEN": "0123456789abcdef0123456789abcdef",
}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env={**without_sidecar_variables(os.environ), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("90", 90), ("90s", 90), ("1500ms", 1.5), ("5m", 300), ("1h", 3600), ("0", 0)],
    )
    def test_accepted_forms(self, text: str, seconds: float) -> None:
        """The SPEC's duration forms all parse to seconds."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["soon", "-5s", "5 minutes", "", "1d"])
    def test_rejected_forms(self, text: str) -> None:
        """Anything else is an error that shows the expected form."""
        with pytest.raises(ValueError, match="duration like"):
            parse_duration(text)

    def test_format_round_trips(self) -> None:
        """check-config prints durations in the shortest exact form."""
        assert [format_duration(s) for s in (0, 90, 300, 3600, 1.5)] == [
            "0",
            "90s",
            "5m",
            "1h",
            "1500ms",
        ]


class TestLoading:
    def test_defaults_match_the_spec(self) -> None:
        """With an empty environment every default is the SPEC's."""
        settings = load_settings({})
        assert (settings.host, settings.port) == ("127.0.0.1", 8787)
        assert settings.ready_timeout == 300
        assert settings.first_player_timeout == 120
        assert settings.empty_timeout == 60
        assert settings.max_duration == 0
        assert settings.health_timeout == 30
        assert settings.match_end_grace == 5
        assert settings.stop_retry_budget == 600
        assert settings.stop_attempt_timeout == 10
        assert settings.on_stop_failure is StopFailurePolicy.EXIT
        assert settings.term_grace == 8
        assert settings.network_idle_timeout == 0
        assert settings.network_idle_pps == 2
        assert settings.log_storage is None
        assert settings.effective_error_log_storage is None
        assert (settings.agones, settings.agones_http_port) == (False, 9358)
        assert settings.agones_gameserver is None
        assert (settings.agones_players_list, settings.agones_auto_allocate) == ("players", True)

    def test_every_variable_is_named_as_in_the_spec(self) -> None:
        """The variables users set are exactly the SPEC §4, §10 and §12 names."""
        assert set(ENV_NAMES.values()) == {
            "ARBITRIUM_DELETE_URL",
            "ARBITRIUM_DELETE_TOKEN",
            "SIDECAR_HOST",
            "SIDECAR_PORT",
            "SIDECAR_API_TOKEN",
            "SIDECAR_READY_TIMEOUT",
            "SIDECAR_FIRST_PLAYER_TIMEOUT",
            "SIDECAR_EMPTY_TIMEOUT",
            "SIDECAR_MAX_DURATION",
            "SIDECAR_HEALTH_TIMEOUT",
            "SIDECAR_MATCH_END_GRACE",
            "SIDECAR_LOG_STORAGE",
            "SIDECAR_ERROR_LOG_STORAGE",
            "SIDECAR_STOP_RETRY_BUDGET",
            "SIDECAR_STOP_ATTEMPT_TIMEOUT",
            "SIDECAR_ON_STOP_FAILURE",
            "SIDECAR_DRY_RUN",
            "SIDECAR_TERM_GRACE",
            "SIDECAR_NETWORK_IDLE_TIMEOUT",
            "SIDECAR_NETWORK_IDLE_PPS",
            "SIDECAR_NO_SHOW_TIMEOUT",
            "SIDECAR_MATCH_QUORUM",
            "SIDECAR_MATCH_STRICT",
            "SIDECAR_LOG_FORMAT",
            "SIDECAR_LOG_LEVEL",
            "SIDECAR_AGONES",
            "SIDECAR_AGONES_HTTP_PORT",
            "SIDECAR_AGONES_GRPC_PORT",
            "SIDECAR_AGONES_GAMESERVER",
            "SIDECAR_AGONES_PLAYERS_LIST",
            "SIDECAR_AGONES_AUTO_ALLOCATE",
            "SIDECAR_RESULT_URL",
            "SIDECAR_RESULT_TOKEN",
            "SIDECAR_RESULT_WAIT",
            "SIDECAR_RESULT_BUDGET",
        }

    def test_error_storage_defaults_to_log_storage(self) -> None:
        """SIDECAR_ERROR_LOG_STORAGE falls back to SIDECAR_LOG_STORAGE."""
        settings = load_settings({"SIDECAR_LOG_STORAGE": "my-bucket"})
        assert settings.effective_error_log_storage == "my-bucket"
        both = load_settings({"SIDECAR_LOG_STORAGE": "false", "SIDECAR_ERROR_LOG_STORAGE": "true"})
        assert (both.log_storage, both.effective_error_log_storage) == ("false", "true")

    def test_dry_run_rule(self) -> None:
        """Dry-run is automatic without platform variables and explicit otherwise."""
        assert load_settings({}).effective_dry_run
        assert not load_settings(PLATFORM).effective_dry_run
        assert load_settings({**PLATFORM, "SIDECAR_DRY_RUN": "true"}).effective_dry_run
        with pytest.raises(ConfigError) as error:
            load_settings({"SIDECAR_DRY_RUN": "false"})
        assert error.value.variable == "SIDECAR_DRY_RUN"

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("SIDECAR_EMPTY_TIMEOUT", "soon"),
            ("SIDECAR_PORT", "eighty"),
            ("SIDECAR_PORT", "70000"),
            ("SIDECAR_ON_STOP_FAILURE", "explode"),
            ("SIDECAR_LOG_FORMAT", "xml"),
            ("SIDECAR_NETWORK_IDLE_PPS", "-1"),
            ("SIDECAR_DRY_RUN", "maybe"),
            ("SIDECAR_STOP_ATTEMPT_TIMEOUT", "0"),
        ],
    )
    def test_invalid_values_name_the_variable(self, variable: str, value: str) -> None:
        """Every invalid value raises ConfigError naming its variable."""
        with pytest.raises(ConfigError) as error:
            load_settings({variable: value})
        assert error.value.variable == variable
        assert str(error.value).startswith(variable)

    def test_non_loopback_host_needs_a_token(self) -> None:
        """Binding 0.0.0.0 without SIDECAR_API_TOKEN is a configuration error."""
        with pytest.raises(ConfigError) as error:
            load_settings({"SIDECAR_HOST": "0.0.0.0"})
        assert error.value.variable == "SIDECAR_HOST"
        assert load_settings({"SIDECAR_HOST": "0.0.0.0", "SIDECAR_API_TOKEN": "t0k3n-8c"}).api_token

    @pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "::1", " 127.0.0.1 "])
    def test_loopback_host_in_any_spelling_needs_no_token(self, host: str) -> None:
        """Every bindable way of writing a loopback address binds without SIDECAR_API_TOKEN."""
        assert load_settings({"SIDECAR_HOST": host}).host == host.strip()

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("[::1]", "without brackets"),
            ("127.0.0.1%lo", "without a zone id"),
            ("::1%1", "without a zone id"),
            ("::ffff:127.0.0.1", r"the IPv4 address itself \(127\.0\.0\.1\)"),
            ("a..b", "or a host name"),
        ],
    )
    def test_host_spellings_a_bind_cannot_take_are_refused(self, host: str, expected: str) -> None:
        """Brackets, zone ids and IPv4-mapped addresses are exit 2 naming SIDECAR_HOST, not
        exit 3 at bind time after check-config said yes."""
        with pytest.raises(ConfigError, match=expected) as error:
            load_settings({"SIDECAR_HOST": host, "SIDECAR_API_TOKEN": "t0k3n-8c"})
        assert error.value.variable == "SIDECAR_HOST"

    @pytest.mark.parametrize("host", ["::", "10.0.0.1", "game.example"])
    def test_other_hosts_need_a_token(self, host: str) -> None:
        """A wildcard, a LAN address or a name other than localhost needs SIDECAR_API_TOKEN."""
        with pytest.raises(ConfigError, match="not a loopback address"):
            load_settings({"SIDECAR_HOST": host})

    def test_settings_can_be_built_directly(self) -> None:
        """Tests and embedders build Settings with field names."""
        settings = Settings(empty_timeout=120.0, delete_url="http://x/", delete_token=Secret("t"))
        assert settings.empty_timeout == 120
        assert not settings.effective_dry_run

    def test_every_timer_reaches_the_lifecycle(self) -> None:
        """Each timer variable a user sets arrives in the lifecycle's TimerSettings."""
        names = [field.name for field in dataclasses.fields(TimerSettings)]
        env = {ENV_NAMES[name]: str(1001 + index) for index, name in enumerate(names)}
        timers = load_settings(env).timer_settings()
        assert [getattr(timers, name) for name in names] == [
            1001.0 + index for index in range(len(names))
        ]
        defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
        assert [defaults[name] for name in names] == [
            field.default for field in dataclasses.fields(TimerSettings)
        ]

    def test_every_variable_has_a_parser_and_round_trips_its_default(self) -> None:
        """Each variable parses, and check-config shows durations in the accepted syntax."""
        rows = redacted_settings(load_settings({}))
        assert set(rows) == set(ENV_NAMES.values())
        assert rows["SIDECAR_STOP_ATTEMPT_TIMEOUT"] == "10s"
        assert rows["SIDECAR_READY_TIMEOUT"] == "5m"
        reparsed = load_settings({"SIDECAR_READY_TIMEOUT": rows["SIDECAR_READY_TIMEOUT"]})
        assert reparsed.ready_timeout == 300

    def test_secrets_never_show_in_repr(self) -> None:
        """A Secret's repr and str hide the value (tracebacks, debug logs)."""
        settings = load_settings(PLATFORM)
        assert PLATFORM["ARBITRIUM_DELETE_TOKEN"] not in repr(settings)
        assert PLATFORM["ARBITRIUM_DELETE_TOKEN"] not in str(settings.delete_token)

    def test_redaction_hides_tokens(self) -> None:
        """Redacted settings never contain a token value."""
        rows = redacted_settings(load_settings({**PLATFORM, "SIDECAR_API_TOKEN": "api-secret"}))
        text = repr(rows)
        assert PLATFORM["ARBITRIUM_DELETE_TOKEN"] not in text
        assert "api-secret" not in text
        assert rows["ARBITRIUM_DELETE_TOKEN"] == "<redacted>"


class TestVariableTable:
    """Issue 16: one table of variables, carried by the Settings fields, drives everything."""

    def test_every_settings_field_carries_its_variable(self) -> None:
        """Each Settings field names its variable, a parser and a one-line meaning."""
        assert [variable.field for variable in VARIABLES] == [
            field.name for field in dataclasses.fields(Settings)
        ]
        for variable in VARIABLES:
            assert variable.name.startswith(("SIDECAR_", "ARBITRIUM_"))
            assert variable.help
            assert "\n" not in variable.help
            assert callable(variable.parse)

    def test_secrecy_comes_from_the_field(self) -> None:
        """The variables marked secret are exactly the ones redacted, loaded or not."""
        secret_names = {variable.name for variable in VARIABLES if variable.secret}
        assert secret_names == {
            "ARBITRIUM_DELETE_TOKEN",
            "SIDECAR_API_TOKEN",
            "SIDECAR_RESULT_TOKEN",
        }
        env = {
            **PLATFORM,
            "SIDECAR_API_TOKEN": "api-secret-1",
            "SIDECAR_RESULT_TOKEN": "result-secret-1",
            "SIDECAR_LOG_STORAGE": "bucket",
        }
        settings = load_settings(env)
        assert sorted(settings.secrets()) == sorted(env[name] for name in secret_names)
        assert sorted(environ_secrets(env)) == sorted(settings.secrets())
        rows = redacted_settings(settings)
        assert {name for name, shown in rows.items() if shown == "<redacted>"} == secret_names

    def test_every_secret_field_is_redacted_wherever_settings_are_shown(self) -> None:
        """Whatever field is marked secret (today's three, or one added later) is hidden in
        check-config, check-config --json and the start-up output, because the field says so:
        there is no second list to forget."""
        secret_names = [variable.name for variable in VARIABLES if variable.secret]
        assert secret_names
        values = {name: f"secret-{index}-5f0c1e9a7b" for index, name in enumerate(secret_names)}
        env = {**PLATFORM, **values, "SIDECAR_DRY_RUN": "true", "SIDECAR_PORT": "0"}
        text = cli("check-config", env=env)
        assert text.returncode == 0, text.stderr
        as_json = cli("check-config", "--json", env=env)
        assert as_json.returncode == 0, as_json.stderr
        game = ("--", sys.executable, "-c", "pass")
        started = cli("run", *game, env={**env, "SIDECAR_LOG_LEVEL": "debug"})
        assert started.returncode == 0, started.stderr
        assert " listening on http://127.0.0.1:" in started.stderr
        for output in (text, as_json, started):
            for value in values.values():
                assert value not in output.stdout + output.stderr
        shown_json = json.loads(as_json.stdout)
        for name in secret_names:
            assert shown_json[name] == "***"
            assert re.search(rf"^\s*{name}\s*[=:]?\s*<redacted>", text.stdout, re.MULTILINE)


class TestCommandLine:
    def test_invalid_env_exits_2_naming_the_variable(self) -> None:
        """`serve` with SIDECAR_EMPTY_TIMEOUT=soon exits 2 with one line, no traceback."""
        result = cli("serve", env={"SIDECAR_EMPTY_TIMEOUT": "soon"})
        assert result.returncode == 2
        assert "SIDECAR_EMPTY_TIMEOUT" in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_check_config_prints_redacted_settings(self) -> None:
        """check-config exits 0 and prints settings without the token."""
        result = cli("check-config", env={**PLATFORM, "SIDECAR_LOG_STORAGE": "true"})
        assert result.returncode == 0, result.stderr
        assert "SIDECAR_LOG_STORAGE" in result.stdout
        assert PLATFORM["ARBITRIUM_DELETE_TOKEN"] not in result.stdout + result.stderr
        assert "live" in result.stdout

    def test_check_config_fails_with_2(self) -> None:
        """check-config exits 2 on an invalid variable."""
        result = cli("check-config", env={"SIDECAR_MAX_DURATION": "forever"})
        assert result.returncode == 2
        assert "SIDECAR_MAX_DURATION" in result.stderr

    def test_usage_errors_exit_2(self) -> None:
        """An unknown command or a missing game command exits 2."""
        assert cli("frobnicate").returncode == 2
        missing_game = cli("run")
        assert missing_game.returncode == 2
        assert "game command" in missing_game.stderr

    def test_version(self) -> None:
        """--version prints the version."""
        result = cli("--version")
        assert result.returncode == 0
        assert result.stdout.startswith("edgegap-sidecar ")


class TestAbsurdValues:
    @pytest.mark.parametrize(
        "text",
        [
            "\u0665",
            "5\u00a0",
            "\uff11\uff10s",
            "90\u017f",
            "9" * 400,
            "1e400",
            "nan",
            "inf",
            "3650000d",
        ],
    )
    def test_durations_ascii_and_finite_only(self, text: str) -> None:
        """Unicode digits, NBSP, the long s and overflowing numbers are not durations."""
        with pytest.raises(ValueError, match="duration like"):
            parse_duration(text)

    def test_duration_over_ten_years_is_rejected(self) -> None:
        """Ten years is the ceiling; one second more is an error, numbers included."""
        assert parse_duration(f"{10 * 365 * 24}h") == 10 * 365 * 86400
        for value in (f"{10 * 365 * 24 + 1}h", 10**400, float("nan")):
            with pytest.raises(ValueError, match="duration like"):
                parse_duration(value)

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("SIDECAR_PORT", "\u0665"),
            ("SIDECAR_PORT", "\u00b2"),
            ("SIDECAR_PORT", "8787\u00a0"),
            ("SIDECAR_PORT", "65536"),
            ("SIDECAR_PORT", "9" * 5000),
            ("SIDECAR_STOP_ATTEMPT_TIMEOUT", "9" * 400),
            ("SIDECAR_STOP_RETRY_BUDGET", "87601h"),
            ("SIDECAR_NETWORK_IDLE_PPS", "inf"),
            ("SIDECAR_NETWORK_IDLE_PPS", "1e999"),
            ("SIDECAR_NETWORK_IDLE_PPS", "٢"),
            ("SIDECAR_NETWORK_IDLE_PPS", "9" * 400),
            # Sent in a header, which SPEC §11 refuses when it is not ASCII: it could never work.
            ("SIDECAR_API_TOKEN", "caf\u00e9-token"),
            ("SIDECAR_API_TOKEN", "two\nlines"),
        ],
    )
    def test_absurd_numbers_name_the_variable(self, variable: str, value: str) -> None:
        """Every numeric variable rejects non-ASCII digits and overflowing values."""
        with pytest.raises(ConfigError) as error:
            load_settings({variable: value})
        assert error.value.variable == variable

    def test_ascii_whitespace_still_stripped(self) -> None:
        """Plain spaces around numbers stay accepted."""
        settings = load_settings({"SIDECAR_PORT": " 8080 ", "SIDECAR_NETWORK_IDLE_PPS": " 0.5"})
        assert (settings.port, settings.network_idle_pps) == (8080, 0.5)


BAD_URLS = [
    "http://[::1",
    "http://h:99999/x",
    "http://h:abc/x",
    "http://h:+80/x",
    "http://h:\u0665/x",
    "http://h:0/x",
    "ftp://h/x",
    "http:///x",
    "h/x",
    "http://u:p@h/x",
    "http://a..b/x",
    "http://exa mple/x",
]


class TestDeleteUrl:
    @pytest.mark.parametrize("url", BAD_URLS)
    def test_malformed_url_counts_as_missing(self, url: str) -> None:
        """A malformed URL means dry-run with a reason naming ARBITRIUM_DELETE_URL."""
        settings = load_settings({**PLATFORM, "ARBITRIUM_DELETE_URL": url})
        assert not settings.platform_configured
        assert settings.effective_dry_run
        assert settings.dry_run_reason is not None
        assert settings.dry_run_reason.startswith("ARBITRIUM_DELETE_URL ")

    @pytest.mark.parametrize("url", BAD_URLS)
    def test_malformed_url_with_dry_run_false_is_an_error(self, url: str) -> None:
        """SIDECAR_DRY_RUN=false with a malformed URL is exit 2 naming the URL variable."""
        with pytest.raises(ConfigError) as error:
            load_settings({**PLATFORM, "ARBITRIUM_DELETE_URL": url, "SIDECAR_DRY_RUN": "false"})
        assert error.value.variable == "ARBITRIUM_DELETE_URL"

    @pytest.mark.parametrize(
        "url",
        [
            "https://api.edgegap.com/v1/self/stop/abc/1",
            "http://[::1]:9/x?sig=1",
            "http://127.0.0.1:9000/v1/self/stop/a/1#f",
        ],
    )
    def test_good_urls_are_live(self, url: str) -> None:
        """Ordinary URLs stay usable."""
        settings = load_settings({**PLATFORM, "ARBITRIUM_DELETE_URL": url})
        assert settings.platform_configured
        assert settings.dry_run_reason is None

    def test_check_config_redacts_and_warns(self) -> None:
        """check-config hides userinfo and query and explains the dry-run."""
        url = "https://tokuser:hunter2pw@api.example.com/v1/stop?sig=qsecret99"
        result = cli("check-config", env={**PLATFORM, "ARBITRIUM_DELETE_URL": url})
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        for secret in ("tokuser", "hunter2pw", "qsecret99"):
            assert secret not in output
        assert "dry-run (ARBITRIUM_DELETE_URL carries credentials" in result.stdout

    def test_check_config_query_redacted_when_live(self) -> None:
        """A valid URL with a query is live and printed without the query."""
        url = "https://api.example.com/v1/stop?sig=qsecret99"
        result = cli("check-config", env={**PLATFORM, "ARBITRIUM_DELETE_URL": url})
        assert result.returncode == 0, result.stderr
        assert "qsecret99" not in result.stdout
        assert "https://api.example.com/v1/stop?<redacted>" in result.stdout

    def test_check_config_huge_duration_exits_2(self) -> None:
        """400 nines is a one-line exit 2, not a traceback."""
        result = cli("check-config", env={"SIDECAR_STOP_ATTEMPT_TIMEOUT": "9" * 400})
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("edgegap-sidecar: SIDECAR_STOP_ATTEMPT_TIMEOUT")
        assert len(result.stderr.strip().splitlines()) == 1


class TestCompoundDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("1m30s", 90),
            ("2h15m", 8100),
            ("1h30m15s", 5415),
            ("1s500ms", 1.5),
            ("1H30M", 5400),
            ("1.5h", 5400),
        ],
    )
    def test_compound_forms_parse(self, text: str, seconds: float) -> None:
        """Durations with several units, largest first, add up (SPEC §13)."""
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["30m1h", "1m1m", "1h30", "1h 30", "1m\u0665s", "h", "1d2h"])
    def test_unordered_repeated_or_odd_parts_are_refused(self, text: str) -> None:
        """Units out of order, repeated, without a number or with Unicode digits are errors."""
        with pytest.raises(ValueError, match="duration like"):
            parse_duration(text)

    def test_compound_duration_still_capped_at_ten_years(self) -> None:
        """The ten-year ceiling holds for the sum of the parts."""
        assert parse_duration("87599h59m59s") < MAX_DURATION_SECONDS
        with pytest.raises(ValueError, match="at most 10 years"):
            parse_duration("87600h1s")

    def test_compound_duration_reaches_the_settings(self) -> None:
        """SIDECAR_EMPTY_TIMEOUT=1m30s is 90 seconds."""
        assert load_settings({"SIDECAR_EMPTY_TIMEOUT": "1m30s"}).empty_timeout == 90


class TestUnknownVariables:
    def test_typo_gets_the_closest_known_name(self) -> None:
        """A mistyped SIDECAR_* variable is reported with the name it was probably meant as."""
        env = {"SIDECAR_EMPTY_TIMOUT": "30s", "SIDECAR_LOGLEVEL": "debug", "SIDECAR_ZZZ": "1"}
        assert unknown_variables(env) == [
            ("SIDECAR_EMPTY_TIMOUT", "SIDECAR_EMPTY_TIMEOUT"),
            ("SIDECAR_LOGLEVEL", "SIDECAR_LOG_LEVEL"),
            ("SIDECAR_ZZZ", None),
        ]

    def test_known_names_and_non_settings_never_warn(self) -> None:
        """Settings, the allow-listed SIDECAR_URL/SIDECAR_BINARY... and other prefixes are fine."""
        env = {name: "x" for name in ENV_NAMES.values()}
        env |= {name: "x" for name in NOT_SETTINGS}
        env |= {"ARBITRIUM_SOMETHING_NEW": "x", "MM_X": "y", "PATH": "/bin"}
        assert unknown_variables(env) == []
        assert "SIDECAR_URL" in NOT_SETTINGS
        assert "SIDECAR_BINARY" in NOT_SETTINGS

    def test_check_config_warns_and_strict_refuses(self) -> None:
        """check-config warns naming the variable and its closest name; --strict exits 2."""
        env = {"SIDECAR_EMPTY_TIMOUT": "30s", "SIDECAR_URL": "http://127.0.0.1:1"}
        relaxed = cli("check-config", env=env)
        assert relaxed.returncode == 0, relaxed.stderr
        assert (
            "warning: SIDECAR_EMPTY_TIMOUT is not a setting of the sidecar (ignored); "
            "did you mean SIDECAR_EMPTY_TIMEOUT?"
        ) in relaxed.stdout
        assert "SIDECAR_URL" not in relaxed.stdout
        strict = cli("check-config", "--strict", env=env)
        assert strict.returncode == 2
        assert strict.stderr.startswith("edgegap-sidecar: SIDECAR_EMPTY_TIMOUT ")
        assert "did you mean SIDECAR_EMPTY_TIMEOUT?" in strict.stderr
        assert "Traceback" not in strict.stderr
        assert cli("check-config", "--strict", env={"SIDECAR_URL": "x"}).returncode == 0

    def test_run_warns_at_start_and_shows_the_timers(self) -> None:
        """`run` logs the unknown variable and the effective timers before the game runs."""
        env = {"SIDECAR_EMPTY_TIMOUT": "30s", "SIDECAR_EMPTY_TIMEOUT": "1m30s", "SIDECAR_PORT": "0"}
        result = cli("run", "--", sys.executable, "-c", "pass", env=env)
        assert result.returncode == 0, result.stderr
        assert "did you mean SIDECAR_EMPTY_TIMEOUT?" in result.stderr
        assert "timers: ready 5m, first player 2m, empty 90s, max duration off" in result.stderr


class TestCheckConfigOutputs:
    def test_json_is_one_object_keyed_by_variable(self) -> None:
        """--json: every variable once, durations in seconds, secrets as "***", nothing leaked."""
        env = {
            **PLATFORM,
            "SIDECAR_API_TOKEN": "api-token-secret",
            "SIDECAR_EMPTY_TIMEOUT": "1m30s",
            "SIDECAR_MATCH_END_GRACE": "1500ms",
            "SIDECAR_EMPTY_TIMOUT": "1",
        }
        result = cli("check-config", "--json", env=env)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert list(document) == [variable.name for variable in VARIABLES]
        assert document["SIDECAR_EMPTY_TIMEOUT"] == 90
        assert document["SIDECAR_MATCH_END_GRACE"] == 1.5
        assert document["SIDECAR_READY_TIMEOUT"] == 300
        assert document["SIDECAR_API_TOKEN"] == "***"
        assert document["ARBITRIUM_DELETE_TOKEN"] == "***"
        assert document["SIDECAR_PORT"] == 8787
        assert document["SIDECAR_DRY_RUN"] is False
        assert document["SIDECAR_LOG_STORAGE"] is None
        # The warning goes to stderr, so stdout stays one JSON document.
        assert "SIDECAR_EMPTY_TIMOUT" in result.stderr
        for secret in ("api-token-secret", PLATFORM["ARBITRIUM_DELETE_TOKEN"]):
            assert secret not in result.stdout + result.stderr

    def test_list_shows_every_variable_with_default_and_meaning(self) -> None:
        """--list names each variable, its default and what it does, whatever is set."""
        result = cli("check-config", "--list", env={"SIDECAR_PORT": "not-a-port"})
        assert result.returncode == 0, result.stderr
        lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
        for variable in VARIABLES:
            assert variable.name in lines
            assert variable.help in lines[variable.name]
        assert lines["SIDECAR_EMPTY_TIMEOUT"].split()[1] == "1m"
        assert lines["SIDECAR_DRY_RUN"].split()[1] == "auto"

    @pytest.mark.parametrize(
        "command", ["run", "serve", "check-config", "healthcheck", "status", "emulate", "demo"]
    )
    def test_every_command_help_has_a_description(self, command: str) -> None:
        """`COMMAND --help` explains what the command does, beyond the usage line."""
        result = cli(command, "--help")
        assert result.returncode == 0, result.stderr
        usage, _, rest = result.stdout.partition("\n\n")
        assert usage.startswith("usage: edgegap-sidecar")
        assert rest.strip()
        assert not rest.startswith(("positional", "options"))
        if command in ("run", "serve"):
            assert "check-config --list" in result.stdout


class TestRoundTwoRules:
    """SPEC §11 "Round 2": the API token's floor and free-form storage names."""

    @pytest.mark.parametrize("token", ["short77", "  abcdef  ", "abcdefg ", "\tabcdefg"])
    def test_api_token_under_eight_characters_is_refused(self, token: str) -> None:
        """Under 8 characters, as given or trimmed, is exit 2 naming the variable, not the token."""
        with pytest.raises(ConfigError) as error:
            load_settings({"SIDECAR_API_TOKEN": token})
        assert error.value.variable == "SIDECAR_API_TOKEN"
        assert "at least 8 characters" in str(error.value)
        assert token.strip() not in str(error.value)

    def test_api_token_of_eight_characters_is_accepted(self) -> None:
        """Eight printable ASCII characters make a token; a blank value means unset."""
        token = load_settings({"SIDECAR_API_TOKEN": "t0k3n-8c"}).api_token
        assert token is not None
        assert token.get_secret_value() == "t0k3n-8c"
        assert load_settings({"SIDECAR_API_TOKEN": "   "}).api_token is None

    def test_short_token_cannot_mangle_the_logs(self) -> None:
        """A token "ten" (once "lis<redacted>ing") is exit 2; 8 characters leave the logs intact."""
        game = ("--", sys.executable, "-c", "pass")
        refused = cli("run", *game, env={"SIDECAR_API_TOKEN": "ten", "SIDECAR_PORT": "0"})
        assert refused.returncode == 2
        assert refused.stderr.startswith("edgegap-sidecar: SIDECAR_API_TOKEN: expected at least 8")
        assert "<redacted>" not in refused.stderr + refused.stdout
        env = {"SIDECAR_API_TOKEN": "t0k3n-8c", "SIDECAR_PORT": "0", "SIDECAR_LOG_STORAGE": "a b"}
        accepted = cli("run", *game, env=env)
        assert accepted.returncode == 0, accepted.stderr
        assert " listening on http://127.0.0.1:" in accepted.stderr
        assert "<redacted>" not in accepted.stderr
        assert "t0k3n-8c" not in accepted.stderr + accepted.stdout
        # An unusual storage name is a start-up warning, never a refusal.
        assert "SIDECAR_LOG_STORAGE: 'a b' has characters outside" in accepted.stderr

    @pytest.mark.parametrize("name", ["true", "false", "my-bucket_1.eu", "B" * 256])
    def test_plain_storage_names_pass_silently(self, name: str) -> None:
        """true, false and names of [A-Za-z0-9._-] up to 256 characters bring no warning."""
        env = {"SIDECAR_LOG_STORAGE": name, "SIDECAR_ERROR_LOG_STORAGE": name}
        settings = load_settings(env)
        assert settings.log_storage == name
        assert config_warnings(settings, env) == []

    @pytest.mark.parametrize("name", ["logs bucket", "bücket", "a/b", "TRUE!"])
    def test_unusual_storage_names_warn_but_are_kept(self, name: str) -> None:
        """A name outside [A-Za-z0-9._-] is used as set, with a warning naming its variable."""
        env = {"SIDECAR_ERROR_LOG_STORAGE": name}
        settings = load_settings(env)
        assert settings.effective_error_log_storage == name
        (warning,) = config_warnings(settings, env)
        assert warning.startswith("SIDECAR_ERROR_LOG_STORAGE: ")

    @pytest.mark.parametrize("name", ["B" * 257, "tab\tinside", "new\nline", "bell\x07"])
    def test_storage_names_beyond_256_printable_characters_are_errors(self, name: str) -> None:
        """Longer than 256 characters or with control characters is exit 2 naming the variable."""
        with pytest.raises(ConfigError) as error:
            load_settings({"SIDECAR_LOG_STORAGE": name})
        assert error.value.variable == "SIDECAR_LOG_STORAGE"

    def test_check_config_warns_about_an_unusual_storage_name(self) -> None:
        """check-config exits 0 and prints the warning for a name with a space."""
        result = cli("check-config", env={"SIDECAR_LOG_STORAGE": "my logs"})
        assert result.returncode == 0, result.stderr
        assert "warning: SIDECAR_LOG_STORAGE: 'my logs' has characters outside" in result.stdout
