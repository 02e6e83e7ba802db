"""The emulator under hostile input (SPEC §11 Round 2): `--app-version` files, deploy
environment variables, match tickets, header bytes, the sidecar proxy's destination and game
output are bounded or refused with a 4xx / exit 2 naming what is wrong; never a hang, a 5xx, a
traceback, a stuck deployment or a leaked token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import base_env


def emulate(*argv: str) -> subprocess.CompletedProcess[str]:
    """`sidecar emulate ARGV` as a user runs it; bounded so a hang fails by name."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "emulate", "--port", "0", *argv],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class TestAppVersionFile:
    @pytest.mark.parametrize("kind", ["fifo", "device", "deep", "nan", "oversize", "directory"])
    def test_bad_file_exits_2_naming_the_option(self, tmp_path: Path, kind: str) -> None:
        """A FIFO, a device, a directory, JSON nested 100,000 deep, NaN or a file over 1 MiB
        given to --app-version exits 2 naming the option and the problem, at once: no hang
        before listening, no memory spike, no RecursionError traceback."""
        path = tmp_path / "version.json"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path = Path("/dev/zero")
        elif kind == "directory":
            path = tmp_path
        elif kind == "deep":
            path.write_text("[" * 100_000 + "]" * 100_000)
        elif kind == "nan":
            path.write_text('{"time_to_deploy": NaN}')
        else:
            path.write_text('{"envs": [], "pad": "' + "x" * (1024 * 1024) + '"}')
        result = emulate(f"--app-version=game={path}")
        assert result.returncode == 2, result.stderr
        assert "--app-version" in result.stderr
        assert str(path) in result.stderr
        assert "Traceback" not in result.stderr
