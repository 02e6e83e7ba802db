"""The Unity snippet (examples/unity/EdgegapSidecar.cs) compiles: Debian's mono-mcs builds it
against minimal stand-ins of the UnityEngine types it uses (tests/unity/), so a typo or a wrong
signature in the snippet fails CI. .ci/run installs mono-mcs; elsewhere the test skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SNIPPET = ROOT / "examples" / "unity" / "EdgegapSidecar.cs"
STAND_INS = ROOT / "tests" / "unity" / "UnityEngineStandIns.cs"


def mcs() -> str:
    found = shutil.which("mcs")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("mono-mcs is missing: .ci/run installs it (apt-get install mono-mcs)")
        pytest.skip("mono-mcs is not installed (apt-get install mono-mcs)")
    return found


def compile_cs(tmp_path: Path, *sources: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [mcs(), "-target:library", f"-out:{tmp_path / 'snippet.dll'}", *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestUnitySnippet:
    def test_compiles_against_the_unity_stand_ins(self, tmp_path: Path) -> None:
        """The snippet as shipped compiles with no error."""
        result = compile_cs(tmp_path, SNIPPET, STAND_INS)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / "snippet.dll").is_file()

    def test_a_typo_fails_the_build(self, tmp_path: Path) -> None:
        """The check has teeth: a misspelt Unity member is a compile error."""
        broken = tmp_path / "Broken.cs"
        broken.write_text(
            SNIPPET.read_text().replace("request.responseCode", "request.responseCod")
        )
        result = compile_cs(tmp_path, broken, STAND_INS)
        assert result.returncode != 0
        assert "responseCod" in result.stdout + result.stderr
