"""The CLI's last-resort guard: an error nobody planned for still ends in one clear line, a
redacted traceback and exit 1 (the usage, configuration and start-up codes are in
test_config.py and test_run_mode.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sidecar.config import without_sidecar_variables

TOKEN = "tok-planted-4711"
# The guard only ever sees bugs, so the test has to plant one: `broken` replaces the named
# function (module:attribute) in a fresh interpreter, then the CLI runs as usual.
PLANT = """
import importlib, os, sys
module, _, attribute = sys.argv[1].partition(":")
owner = importlib.import_module(module)
*path, name = attribute.split(".")
for part in path:
    owner = getattr(owner, part)
def broken(*args, **kwargs):
    raise RuntimeError("planted bug holding " + os.environ["SIDECAR_API_TOKEN"])
setattr(owner, name, broken)
from sidecar.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def run_with_bug(target: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PLANT, target, *args],
        env={**without_sidecar_variables(os.environ), "SIDECAR_API_TOKEN": TOKEN, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class TestLastResort:
    def test_bug_before_logging_exits_1_with_one_line_and_redacted_traceback(self) -> None:
        """A bug in check-config exits 1: a line naming the error, then the traceback, and no
        token anywhere."""
        result = run_with_bug(
            "sidecar.cli:_check_config", "check-config", ARBITRIUM_DELETE_TOKEN="delete-secret"
        )
        assert result.returncode == 1
        first, *rest = result.stderr.splitlines()
        assert first == (
            "edgegap-sidecar: unexpected error (a bug; exit 1): "
            "RuntimeError: planted bug holding <redacted>"
        )
        assert rest[0] == "Traceback (most recent call last):"
        assert TOKEN not in result.stderr + result.stdout
        assert "delete-secret" not in result.stderr + result.stdout

    def test_bug_while_serving_is_logged_in_the_configured_format(self) -> None:
        """With SIDECAR_LOG_FORMAT=json, a bug in serve is one JSON log line carrying the
        redacted traceback, and the exit is 1."""
        result = run_with_bug("sidecar.agent:Agent.run", "serve", SIDECAR_LOG_FORMAT="json")
        assert result.returncode == 1
        records = [json.loads(line) for line in result.stderr.splitlines()]
        crash = records[-1]
        assert crash["level"] == "critical"
        assert crash["message"].startswith("edgegap-sidecar: unexpected error (a bug; exit 1)")
        assert "Traceback (most recent call last):" in crash["message"]
        assert "<redacted>" in crash["message"]
        assert TOKEN not in result.stderr + result.stdout


class TestAReaderThatLeaves:
    """`edgegap-sidecar check-config | head -1`: the reader closes the pipe before the output is
    written. That is the reader's choice, not a bug: exit 0, nothing on stderr."""

    def run_into_a_closed_pipe(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        read_end, write_end = os.pipe()
        os.close(read_end)  # gone before the CLI writes a byte: every write is EPIPE
        try:
            return subprocess.run(
                [sys.executable, "-m", "sidecar", *args],
                env=without_sidecar_variables(os.environ),
                stdout=write_end,
                stderr=subprocess.PIPE,
                timeout=30,
                check=False,
            )
        finally:
            os.close(write_end)

    def test_check_config_exits_0_quietly(self) -> None:
        result = self.run_into_a_closed_pipe("check-config", "--list")
        assert (result.returncode, result.stderr) == (0, b"")

    def test_check_config_json_exits_0_quietly(self) -> None:
        result = self.run_into_a_closed_pipe("check-config", "--json")
        assert (result.returncode, result.stderr) == (0, b"")

    def test_a_broken_pipe_elsewhere_is_still_a_bug(self) -> None:
        """Only our own stdout's reader leaving is quiet: a BrokenPipeError from anything else
        (here, planted in check-config with stdout open) is reported like any bug."""
        plant = PLANT.replace(
            'raise RuntimeError("planted bug holding " + os.environ["SIDECAR_API_TOKEN"])',
            'raise BrokenPipeError(32, "a socket, not stdout")',
        )
        result = subprocess.run(
            [sys.executable, "-c", plant, "sidecar.cli:_check_config", "check-config"],
            env={**without_sidecar_variables(os.environ), "SIDECAR_API_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 1
        assert "unexpected error (a bug; exit 1): BrokenPipeError" in result.stderr


class TestWatchPid:
    """--watch-pid takes a process id as the kernel knows one, or it is a usage error."""

    def test_out_of_range_or_non_ascii_pids_are_usage_errors(self) -> None:
        """Before: 2147483648 crashed (OverflowError, exit 1) and Arabic-Indic 12 was read as
        PID 12. Now both, and 0, are exit 2 naming the flag."""
        for pid in ("2147483648", "\u0661\u0662", "0", "99999999999999999999", "12a"):
            result = subprocess.run(
                [sys.executable, "-m", "sidecar", "serve", "--watch-pid", pid],
                env={**without_sidecar_variables(os.environ), "SIDECAR_PORT": "0"},
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert result.returncode == 2, (pid, result.stderr)
            assert "argument --watch-pid: expected a process id" in result.stderr
            assert "Traceback" not in result.stderr
