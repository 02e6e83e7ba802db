"""Settings from the environment: defaults, durations, the dry-run rule, errors naming variables."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sidecar.config import (
    ENV_NAMES,
    Secret,
    Settings,
    StopFailurePolicy,
    format_duration,
    load_settings,
    parse_duration,
    redacted_settings,
)
from sidecar.errors import ConfigError

PLATFORM = {
    "ARBITRIUM_DELETE_URL": "http://127.0.0.1:9/v1/self/stop/abcdef123456/1",
    "ARBITRIUM_DELETE_TOKEN": "0123456789abcdef0123456789abcdef",
}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "ARBITRIUM_"))}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env=base,
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

    def test_every_variable_is_named_as_in_the_spec(self) -> None:
        """The variables users set are exactly the SPEC §4 names."""
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
            "SIDECAR_LOG_FORMAT",
            "SIDECAR_LOG_LEVEL",
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
        assert load_settings({"SIDECAR_HOST": "0.0.0.0", "SIDECAR_API_TOKEN": "t"}).api_token

    def test_settings_can_be_built_directly(self) -> None:
        """Tests and embedders build Settings with field names."""
        settings = Settings(empty_timeout=120.0, delete_url="http://x/", delete_token=Secret("t"))
        assert settings.empty_timeout == 120
        assert not settings.effective_dry_run

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
