"""The README's quick start works on a stock distribution's Python, not only under pyenv.

Debian 12's /usr/bin/python3 is "externally managed" (PEP 668): `pip install .` outside a
virtual environment is refused, which broke the old quick start. `scripts/demo` makes its own
.venv; this runs it for real, in a copy of the project, with the system Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def quick_start_block() -> str:
    """The indented command block under README's `## Quick start`."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return "\n".join(ln for ln in section.splitlines() if ln.startswith("    "))


def test_readme_quick_start_uses_the_scripts() -> None:
    """The quick start is `scripts/demo` and `scripts/test`, with no bare `pip install`."""
    block = quick_start_block()
    assert "scripts/demo" in block
    assert "scripts/test" in block
    assert "pip install" not in block


def _system_python_can_venv() -> str | None:
    """Why the system Python cannot run the quick start here, or None when it can."""
    if not SYSTEM_PYTHON.exists():
        return "no /usr/bin/python3 on this machine"
    probe = subprocess.run(
        [
            str(SYSTEM_PYTHON),
            "-c",
            "import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        return "/usr/bin/python3 is older than 3.11 or has no venv module (python3-venv)"
    return None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_runs_with_the_system_python(tmp_path: Path) -> None:
    """`PYTHON=/usr/bin/python3 scripts/demo` installs into its own .venv and the demo passes."""
    reason = _system_python_can_venv()
    if reason:
        pytest.skip(reason)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("sidecar", "examples"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "scripts/demo"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PYTHON"] = str(SYSTEM_PYTHON)
    result = subprocess.run(
        [str(tmp_path / "scripts" / "demo"), "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo ok" in result.stdout
    cfg = (tmp_path / ".venv" / "pyvenv.cfg").read_text(encoding="utf-8")
    assert "home = /usr/bin" in cfg
