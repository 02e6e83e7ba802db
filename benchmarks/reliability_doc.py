"""Shared by the soak and the fleet simulation: the machine description and the writer of one
`## Section` of docs/reliability.md that leaves every other section alone (another tool owns
the "Fault matrix" section)."""

from __future__ import annotations

import datetime
import os
import platform
import re
from pathlib import Path

TITLE = "# Reliability\n\nMeasured proof that no failure mode leaves a deployment billing.\n"


def machine_lines() -> list[str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"Machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; measured {now}."
    ]


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) `## heading` and its text up to the next `## ` heading."""
    text = path.read_text() if path.exists() else TITLE
    block = f"## {heading}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
