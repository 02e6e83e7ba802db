"""examples/ci/emulator-ci.sh, the CI recipe of the docs, runs as a studio's pipeline would:
the real example game under the real sidecar, two deployments, a match on each, both
self-stops and their stored logs (issue 11, the CI recipe), and a no-show rehearsal through
`POST /_emulator/matches`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import base_env

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "examples" / "ci" / "emulator-ci.sh"


def isolation_modes() -> list[str]:
    """The default (auto), and ports as well where auto picks namespaces."""
    from sidecar.emulator import netns

    return ["auto"] if netns.unavailable() is not None else ["auto", "--isolation ports"]


def _run_recipe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(RECIPE)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="the recipe needs curl")
@pytest.mark.timeout(150)
@pytest.mark.parametrize("flags", isolation_modes())
def test_ci_recipe_passes(flags: str) -> None:
    """The recipe ends with CI PASSED and exit 0, in every isolation mode."""
    bin_dir = str(Path(sys.executable).parent)
    env = base_env(
        PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        PYTHON=sys.executable,
        SIDECAR_CMD=f"{sys.executable} -m sidecar",
        EMULATOR_FLAGS="" if flags == "auto" else flags,
        CI_TIMEOUT="60",
    )
    result = _run_recipe(env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "CI PASSED" in result.stdout
    assert output.count("one accepted self-stop, logs kept, sidecar.stop reason match_ended") == 2
    # The no-show rehearsal: a match of two tickets, nobody connects, the sidecar stops it.
    assert "sidecar.stop reason no_show, 2 tickets missing, logs kept" in output


@pytest.mark.skipif(shutil.which("curl") is None, reason="the recipe needs curl")
@pytest.mark.timeout(150)
def test_ci_recipe_fails_loudly() -> None:
    """A game that never listens makes the recipe fail with the emulator's request log and
    the deployment's error_detail, exit 1."""
    env = base_env(
        PYTHON=sys.executable,
        SIDECAR_CMD=f"{sys.executable} -m sidecar",
        GAME_CMD=f"{sys.executable} -c 'import time; time.sleep(60)'",
        TIME_TO_DEPLOY="1",
        CI_TIMEOUT="30",
    )
    result = _run_recipe(env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CI FAILED" in result.stderr
    assert "Port readiness check failed" in result.stderr
    assert "emulator request log" in result.stderr
    assert "ci-local" not in result.stderr  # the management token is redacted
