#!/usr/bin/env python3
"""Report the glibc floor of a standalone build, read from the artifact itself.

    python3 packaging/glibc_floor.py dist/edgegap-sidecar [--max 2.31] [--verbose]

Runs `objdump -T` over every ELF file under the path (the executable and each bundled .so) and
prints the highest `GLIBC_x.y` symbol version any of them references: the oldest glibc the build
can start on. Exits 1 when that floor is above `--max`, 2 when nothing could be read.

Only versions that a file *requires* count (undefined `*UND*` symbols): a bundled library that
*defines* a GLIBC_ version (none should) would not raise the floor of the target system.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

_VERSION = re.compile(r"\bGLIBC_(\d+)\.(\d+)(?:\.(\d+))?\b")
_ELF_MAGIC = b"\x7fELF"


def elf_files(root: Path) -> list[Path]:
    """Every ELF file at or under `root` (symlinks are skipped: their target is listed)."""
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found = []
    for path in candidates:
        if path.is_symlink():
            continue
        with path.open("rb") as handle:
            if handle.read(4) == _ELF_MAGIC:
                found.append(path)
    return found


def required_versions(path: Path) -> set[tuple[int, ...]]:
    """GLIBC_ versions of the undefined dynamic symbols of one ELF file."""
    result = subprocess.run(
        ["objdump", "-T", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"objdump -T {path}: {result.stderr.strip()}")
    versions = set()
    for line in result.stdout.splitlines():
        if "*UND*" not in line:
            continue
        for match in _VERSION.finditer(line):
            versions.add(tuple(int(part) for part in match.groups() if part is not None))
    return versions


def show(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="the onedir folder (or one ELF file)")
    parser.add_argument(
        "--max", default=os.environ.get("GLIBC_MAX", "2.31"), help="highest allowed (2.31)"
    )
    parser.add_argument("--verbose", action="store_true", help="print each file's floor")
    args = parser.parse_args()

    files = elf_files(args.path)
    if not files:
        print(f"glibc floor: no ELF files under {args.path}", file=sys.stderr)
        return 2
    floors: dict[Path, tuple[int, ...]] = {}
    for path in files:
        versions = required_versions(path)
        if versions:
            floors[path] = max(versions)
    if not floors:
        print(f"glibc floor: none of {len(files)} ELF files references glibc", file=sys.stderr)
        return 2
    floor = max(floors.values())
    limit = tuple(int(part) for part in args.max.split("."))
    if args.verbose:
        for path, version in sorted(floors.items(), key=lambda item: (item[1], str(item[0]))):
            print(f"  GLIBC_{show(version):<6} {path.relative_to(args.path.parent)}")
    culprits = sorted(str(p.name) for p, v in floors.items() if v == floor)
    print(
        f"glibc floor: GLIBC_{show(floor)} ({len(files)} ELF files; highest in: "
        f"{', '.join(culprits[:5])}{' …' if len(culprits) > 5 else ''})"
    )
    if floor > limit:
        print(f"glibc floor: GLIBC_{show(floor)} is above the allowed {args.max}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
