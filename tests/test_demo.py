"""`edgegap-sidecar demo` run as a user runs it: `python -m sidecar demo` in a real subprocess.

The demo starts its own emulator, sidecar, game and bots on free loopback ports, so these tests
need nothing but the repository; each full run takes a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from sidecar.config import without_sidecar_variables

ROOT = Path(__file__).resolve().parents[1]
# Well inside pytest's 60 s: a hung demo fails here with its output rather than by the timeout.
RUN_TIMEOUT = 50.0


def run_demo(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**without_sidecar_variables(os.environ), **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def stored_records(stdout: str) -> list[dict[str, Any]]:
    """The JSON records among the stored container-log lines the demo printed (`  | ...`)."""
    lines = [line.removeprefix("  | ") for line in stdout.splitlines() if line.startswith("  | ")]
    return [json.loads(line) for line in lines if line.startswith("{")]


class TestDemo:
    def test_whole_lifecycle_ends_terminated_with_the_stop_record_stored(self) -> None:
        """The demo plays a match to Status.TERMINATED, prints the timeline and the stored
        sidecar.stop record, and exits 0 — whatever SIDECAR_* the user's shell exports."""
        result = run_demo(
            "--players",
            "3",
            "--rounds",
            "2",
            # Would break the demo if they leaked into its sidecar: no logs kept, a long grace.
            SIDECAR_LOG_STORAGE="false",
            SIDECAR_MATCH_END_GRACE="5m",
        )

        assert result.returncode == 0, result.stdout + result.stderr
        timeline, _, logs = result.stdout.partition("stored container logs")
        order = [
            "Status.READY",
            "bot-1 joined",
            "draining: stop reason match_ended",
            "Status.TERMINATING",
            "Status.TERMINATED",
        ]
        positions = [timeline.find(marker) for marker in order]
        assert -1 not in positions, timeline
        assert positions == sorted(positions), timeline
        stop = next(r for r in stored_records(logs) if r.get("event") == "sidecar.stop")
        assert stop["reason"] == "match_ended"
        assert stop["log_storage"] == "true"
        assert set(stop["match_result"]["scores"]) == {"bot-1", "bot-2", "bot-3"}
        summary = result.stdout.rstrip().splitlines()[-1]
        match = re.fullmatch(r"demo ok in (\d+\.\d)s: .*Status\.TERMINATED.*", summary)
        assert match is not None, summary
        assert float(match.group(1)) < 30.0

    def test_timeout_fails_with_one_line_naming_the_step(self) -> None:
        """A --timeout too short for the lifecycle exits 1 with one stderr line naming the step."""
        result = run_demo("--timeout", "0.5")

        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert re.fullmatch(
            r"edgegap-sidecar demo: failed while .+: timed out after 0\.5s .*", lines[0]
        ), lines[0]

    def test_bad_flag_is_a_usage_error(self) -> None:
        """An impossible --players exits 2 with a message naming the flag, before starting."""
        result = run_demo("--players", "0")

        assert result.returncode == 2
        assert "--players" in result.stderr
        assert "Traceback" not in result.stderr

    def test_agones_game_walks_the_same_lifecycle(self) -> None:
        """--agones deploys the Agones-only example game: its Shutdown() is the one stop, with
        the logs kept, and the deployment ends TERMINATED."""
        result = run_demo("--agones", "--players", "2", "--rounds", "1")

        assert result.returncode == 0, result.stdout + result.stderr
        timeline, _, logs = result.stdout.partition("stored container logs")
        assert "SIDECAR_AGONES=true edgegap-sidecar run -- python agones_game/server.py" in timeline
        assert "draining: stop reason shutdown_requested" in timeline
        stop = next(r for r in stored_records(logs) if r.get("event") == "sidecar.stop")
        assert (stop["reason"], stop["log_storage"]) == ("shutdown_requested", "true")
        assert "Status.TERMINATED" in result.stdout.rstrip().splitlines()[-1]
