"""The exception hierarchy drawn in sidecar/errors.py matches the code."""

from __future__ import annotations

import importlib
import pkgutil

import sidecar
from sidecar import errors


def _all_subclasses(base: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for child in base.__subclasses__():
        found |= {child, *_all_subclasses(child)}
    return found


class TestDrawnHierarchy:
    def test_every_sidecar_error_is_drawn_under_its_parent(self) -> None:
        """Each SidecarError subclass anywhere in the package appears in the drawing, named
        where it lives, on a line below its parent's: a new error cannot go undocumented."""
        for module in pkgutil.walk_packages(sidecar.__path__, "sidecar."):
            if not module.name.endswith("__main__"):  # that one runs the CLI
                importlib.import_module(module.name)
        drawing = (errors.__doc__ or "").split("\n\n")[1].splitlines()

        def line_of(cls: type[BaseException]) -> int:
            where = cls.__module__.removeprefix("sidecar.")
            name = cls.__name__ if where == "errors" else f"{where}.{cls.__name__}"
            hits = [i for i, line in enumerate(drawing) if f" {name} " in f" {line.strip()} "]
            assert len(hits) == 1, f"{name} is not drawn in sidecar/errors.py (once)"
            return hits[0]

        for cls in _all_subclasses(errors.SidecarError):
            if cls.__name__.startswith("_"):
                continue  # private to its module
            parent = cls.__bases__[0]
            below = line_of(cls)
            indent = len(drawing[below]) - len(drawing[below].lstrip(" │├└─"))
            if parent is errors.SidecarError:
                continue
            above = line_of(parent)
            assert above < below, f"{cls.__name__} is drawn above its parent {parent.__name__}"
            parent_indent = len(drawing[above]) - len(drawing[above].lstrip(" │├└─"))
            assert indent > parent_indent, f"{cls.__name__} is not drawn under {parent.__name__}"
