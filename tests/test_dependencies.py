"""The dependency ranges hold (issue 16): every package sidecar/ imports is declared, the
standalone build's pins fall inside the wheel's ranges, and the aiohttp under test is inside the
range that http_server's start-up check names. (The floors themselves are tested by running the
whole suite on them: `scripts/test --lowest`.)"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sidecar import http_server
from tests.conftest import ROOT


def declared() -> dict[str, Requirement]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    requirements = (Requirement(d) for d in dependencies)
    return {canonicalize_name(r.name): r for r in requirements}


def imported_top_level_names() -> set[str]:
    """Every module name sidecar/ imports, at the top or inside a function."""
    names: set[str] = set()
    for path in (ROOT / "sidecar").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


class TestDeclared:
    def test_every_package_we_import_is_a_declared_dependency(self) -> None:
        """A package imported by sidecar/ is one pip installs for us, with a floor we test,
        not one that happens to come with another."""
        distributions = importlib.metadata.packages_distributions()
        third_party = imported_top_level_names() - set(sys.stdlib_module_names) - {"sidecar"}
        undeclared = {
            name: distributions.get(name)
            for name in third_party
            if not any(canonicalize_name(d) in declared() for d in distributions.get(name, []))
        }
        assert undeclared == {}

    def test_every_runtime_dependency_has_a_floor(self) -> None:
        """Each range starts at a version (`scripts/test --lowest` installs it exactly)."""
        for name, requirement in declared().items():
            floors = [s for s in requirement.specifier if s.operator == ">="]
            assert len(floors) == 1, f"{name}: {requirement}"


class TestPins:
    def test_the_binary_pins_are_inside_the_wheel_ranges(self) -> None:
        """packaging/requirements.txt (the standalone build) bundles versions the wheel's
        ranges allow: the binary runs on what the suite tests."""
        ranges = declared()
        text = (ROOT / "packaging" / "requirements.txt").read_text()
        pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE))
        pinned = {canonicalize_name(name): version for name, version in pins.items()}
        for name, requirement in ranges.items():
            assert name in pinned, f"{name} is not pinned for the binary"
            assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]}"

    def test_the_aiohttp_under_test_is_in_the_supported_range(self) -> None:
        """The aiohttp this suite runs on is one the start-up check's message calls
        supported."""
        requirement = Requirement(f"aiohttp{http_server.SUPPORTED_AIOHTTP}")
        assert requirement.specifier.contains(importlib.metadata.version("aiohttp"))
