"""User-facing text cites only what a user has: no internal spec sections, issue numbers, or
files that are not in the repository.

README.md, docs/ and examples/ are read by studios that never see our specification or issue
tracker; "SPEC §7" or "issue 8" means nothing to them and a link to a missing file is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Files left out of these checks while they still cite internal references (none today).
NOT_YET: set[str] = set()
TEXT_SUFFIXES = {".md", ".py", ".sh", ".mjs", ".cs", ".gd", ".h", ".cpp", ".txt", ".yaml"}


def user_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted(
        p
        for p in (REPO / "examples").rglob("*")
        if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts
    )
    return [p for p in files if str(p.relative_to(REPO)) not in NOT_YET]


FILES = user_files()
IDS = [str(p.relative_to(REPO)) for p in FILES]
INTERNAL = re.compile(r"SPEC §|SPEC\.md|\b[Ii]ssues? #?\d+|reference/[\w.-]+")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# A repository path in backticks: a top-level folder of ours, then more of the path.
TOP = "sidecar|docs|examples|packaging|scripts|tests|benchmarks|reference|\\.ci"
PATH_IN_CODE = re.compile(rf"`((?:{TOP})/[\w./-]*[\w-])`")


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_no_internal_references(path: Path) -> None:
    """No `SPEC §N`, `issue N` or reference/ file that users cannot open."""
    hits = [
        f"{i}: {line.strip()}"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_relative_links_and_paths_exist(path: Path) -> None:
    """Every relative link, and every backticked repository path, names a file that exists."""
    text = path.read_text(encoding="utf-8")
    missing = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        if not (path.parent / target).exists():
            missing.append(target)
    for target in PATH_IN_CODE.findall(text):
        if not (REPO / target).exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(REPO)} points at files that do not exist: {missing}"
