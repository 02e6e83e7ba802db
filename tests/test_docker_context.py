"""The Docker build context: .dockerignore read with Docker's rules, and COPY checked against it.

`docker build` fails with "not found" when Dockerfile.sidecar copies a path that .dockerignore
leaves out; scripts/build-binary replays the COPY lines without Docker and must fail the same way,
so CI catches it. The matching rules are checked against moby/patternmatcher's own test table and
the examples of Docker's .dockerignore documentation.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docker_context", REPO / "packaging" / "docker_context.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up by name while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


dc = _load()


def ignored(path: str, *lines: str) -> bool:
    return bool(dc.is_ignored(path, dc.read_patterns("\n".join(lines))))


# moby/patternmatcher's TestMatches table (MatchesOrParentMatches: "exact" and "inexact" both
# match): pattern, path, expected.
MOBY_CASES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    # Go's filepath.Match cases that moby runs through the same matcher.
    ("*", "abc", True),
    ("a*", "ab/c", True),  # through its parent "ab"
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[^e-g]", "abc", True),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
]

MOBY_MULTI_CASES = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
]


class TestDockerRules:
    """Matching is Docker's, case for case."""

    @pytest.mark.parametrize(("pattern", "path", "expected"), MOBY_CASES)
    def test_moby_patternmatcher_table(self, pattern: str, path: str, expected: bool) -> None:
        """Each single-pattern case of moby/patternmatcher's own tests gives Docker's answer."""
        assert ignored(path, pattern) is expected

    @pytest.mark.parametrize(("patterns", "path", "expected"), MOBY_MULTI_CASES)
    def test_last_match_wins(self, patterns: list[str], path: str, expected: bool) -> None:
        """With several lines, the last one that matches the path or a parent decides."""
        assert ignored(path, *patterns) is expected

    def test_docs_example_temp(self) -> None:
        """Docker docs: `*/temp*`, `*/*/temp*`, `temp?` and comments, as documented."""
        lines = ("# comment", "*/temp*", "*/*/temp*", "temp?")
        assert ignored("somedir/temporary.txt", *lines)
        assert ignored("somedir/temp", *lines)
        assert ignored("somedir/subdir/temporary.txt", *lines)
        assert ignored("tempa", *lines)
        assert not ignored("temporary.txt", *lines)
        assert not ignored("# comment", *lines)

    def test_docs_example_readme_reinclude(self) -> None:
        """Docker docs: `*.md` then `!README.md` keeps only the README."""
        assert ignored("CHANGELOG.md", "*.md", "!README.md")
        assert not ignored("README.md", "*.md", "!README.md")

    def test_docs_example_order_matters(self) -> None:
        """Docker docs: README-secret.md stays out only when its line follows `!README*.md`."""
        assert ignored("README-secret.md", "*.md", "!README*.md", "README-secret.md")
        assert not ignored("README-other.md", "*.md", "!README*.md", "README-secret.md")
        assert not ignored("README-secret.md", "*.md", "README-secret.md", "!README*.md")

    def test_leading_and_trailing_slashes_are_cleaned(self) -> None:
        """Docker docs: `/foo/bar/` and `foo/bar` are the same pattern."""
        assert ignored("foo/bar/baz.txt", "/foo/bar/")
        assert ignored("foo/bar", "foo/./bar")

    def test_double_star_any_depth(self) -> None:
        """Docker docs: `**/*.go` leaves out .go files at every depth, the root included."""
        assert ignored("main.go", "**/*.go")
        assert ignored("a/b/c/main.go", "**/*.go")
        assert not ignored("a/b/c/main.py", "**/*.go")

    @pytest.mark.parametrize("line", ["!", "[", "a[", "abc\\"])
    def test_bad_patterns_are_errors(self, line: str) -> None:
        """A line Docker rejects is an error here too, not a silent non-match."""
        with pytest.raises(dc.PatternError):
            dc.read_patterns(line)


def _replay_fixture(tmp_path: Path, dockerfile: str, dockerignore: str) -> Path:
    """A minimal source tree with build-binary, this module, a Dockerfile and a .dockerignore."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "packaging").mkdir()
    shutil.copy2(REPO / "scripts" / "build-binary", tmp_path / "scripts" / "build-binary")
    shutil.copy2(REPO / "packaging" / "docker_context.py", tmp_path / "packaging")
    (tmp_path / "Dockerfile.sidecar").write_text(dockerfile)
    (tmp_path / ".dockerignore").write_text(dockerignore)
    for rel in ("sidecar/__init__.py", "examples/kept/a.py", "examples/secret/b.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    return tmp_path


def _check_context(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(tree / "scripts" / "build-binary"), "--check-context"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


class TestReplayUsesTheContext:
    """scripts/build-binary fails where `docker build` fails: COPY of an ignored path."""

    DOCKERIGNORE = "*\n!sidecar/\n!examples/kept/\n"

    def test_ignored_copy_source_fails(self, tmp_path: Path) -> None:
        """A COPY of a path .dockerignore leaves out fails the build, naming the path."""
        tree = _replay_fixture(
            tmp_path,
            "FROM debian:bullseye-slim AS build\nCOPY sidecar /src/sidecar\n"
            "FROM python:3.11-slim AS python\nCOPY examples/secret /src/examples/secret\n",
            self.DOCKERIGNORE,
        )
        result = _check_context(tree)
        assert result.returncode != 0
        assert "COPY examples/secret: not found in the build context" in result.stderr

    def test_included_copy_sources_pass(self, tmp_path: Path) -> None:
        """COPY of re-included paths passes the same check."""
        tree = _replay_fixture(
            tmp_path,
            "FROM debian:bullseye-slim AS build\nCOPY sidecar /src/sidecar\n"
            "FROM python:3.11-slim AS python\nCOPY examples/kept /src/examples/kept\n",
            self.DOCKERIGNORE,
        )
        result = _check_context(tree)
        assert result.returncode == 0, result.stderr

    def test_project_dockerfile_copies_only_context_paths(self) -> None:
        """Dockerfile.sidecar's build and python stages copy only what the context holds."""
        result = _check_context(REPO)
        assert result.returncode == 0, result.stderr

    def test_context_leaves_out_local_clutter(self) -> None:
        """A local .venv, dist/ or bytecode never reaches the context; the sources do."""
        files = set(
            dc.context_files(str(REPO), dc.read_patterns((REPO / ".dockerignore").read_text()))
        )
        assert "sidecar/__init__.py" in files
        assert "examples/agones_game/server.py" in files
        assert not any(f.startswith((".venv/", "dist/", ".git")) for f in files)
        assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
