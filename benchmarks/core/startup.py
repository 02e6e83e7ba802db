"""Measurement 3: start-up (spawn → `/healthz` answers), what it is made of (interpreter, site,
imports, with an `-X importtime` profile of `serve`), and SIGTERM → exit."""

from __future__ import annotations

import re
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass

from benchmarks.core.harness import (
    PYTHON,
    ROOT,
    Children,
    Process,
    free_port,
    running,
    stop_process,
    wait_http_ok,
)

# What `serve` imports before it answers: the figure to compare with spawn → /healthz.
SERVE_IMPORTS = "sidecar.cli, sidecar.config, sidecar.logs, sidecar.agent"

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


@dataclass(frozen=True)
class ImportProfile:
    total_ms: float  # sum of self times: the whole import cost under -X importtime
    by_package: list[tuple[str, float]]  # self time grouped by top-level package
    slowest: list[tuple[str, float, float]]  # (module, self ms, cumulative ms)


@dataclass(frozen=True)
class Startup:
    spawn_s: list[float]  # spawn → /healthz answers, with the bench's bytecode cache
    cold_spawn_s: list[float]  # the same without a bytecode cache for sidecar/
    cold_note: str  # which bytecode the cold starts still found
    sigterm_exit_s: list[float]  # SIGTERM → exit, idle `serve`
    python_s: float  # `python -c pass`
    serve_imports_s: float  # `import SERVE_IMPORTS`, timed inside the interpreter
    aiohttp_import_s: float  # `import aiohttp.web`, the same way
    version_s: float  # `python -m sidecar --version`
    site_ms: float  # `site` at interpreter start
    serve_profile: ImportProfile
    version_profile: ImportProfile


def measure(children: Children, starts: int) -> Startup:
    """Every start-up figure, measured in the order the fields are given here."""
    cold_note = _bytecode_note()
    return Startup(
        spawn_s=startup_times(children, starts),
        cold_spawn_s=startup_times(children, max(1, starts // 3), bytecode_cache=False),
        cold_note=cold_note,
        sigterm_exit_s=shutdown_times(children, 3),
        python_s=command_time(children, [PYTHON, "-c", "pass"], 5),
        serve_imports_s=import_time(children, SERVE_IMPORTS, 5),
        aiohttp_import_s=import_time(children, "aiohttp.web", 5),
        version_s=command_time(children, [PYTHON, "-m", "sidecar", "--version"], 5),
        site_ms=site_import_ms(children),
        serve_profile=serve_import_profile(children),
        version_profile=version_import_profile(children),
    )


def _bytecode_note() -> str:
    if (ROOT / "sidecar" / "__pycache__").is_dir():
        return "the tree's own sidecar/__pycache__, site-packages' .pyc"
    return "no sidecar/__pycache__ in this tree: sidecar/ compiled at every start"


def startup_times(children: Children, runs: int, bytecode_cache: bool = True) -> list[float]:
    times = []
    for _ in range(runs):
        port = free_port()
        started = time.perf_counter()
        proc = children.spawn_sidecar(port, bytecode_cache=bytecode_cache)
        with running(proc):
            wait_http_ok(port, proc)
            times.append(time.perf_counter() - started)
    return times


def import_time(children: Children, modules: str, runs: int) -> float:
    """Seconds to import `modules` in a fresh interpreter, timed inside it (median): unlike
    timing `python -c 'import ...'` it leaves out interpreter start-up and exit, and exit
    alone (tearing down pydantic & co.) costs tens of milliseconds."""
    probe = (
        "import time\nstarted = time.perf_counter()\n"
        f"import {modules}\nprint(time.perf_counter() - started)"
    )
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [PYTHON, "-c", probe], check=True, env=children.env(), cwd=ROOT, capture_output=True
        ).stdout
        samples.append(float(out))
    return statistics.median(samples)


def shutdown_times(children: Children, runs: int) -> list[float]:
    """SIGTERM → process exit, for `runs` idle sidecars signalled together."""
    procs: list[Process] = []
    try:
        for _ in range(runs):
            port = free_port()
            procs.append(children.spawn_sidecar(port))
            wait_http_ok(port, procs[-1])
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        signalled = time.perf_counter()
        exited: dict[int, float] = {}
        while len(exited) < len(procs) and time.perf_counter() - signalled < 15.0:
            for proc in procs:
                if proc.pid not in exited and proc.poll() is not None:
                    exited[proc.pid] = time.perf_counter() - signalled
            time.sleep(0.005)
        return [exited.get(proc.pid, float("inf")) for proc in procs]
    finally:
        for proc in procs:
            stop_process(proc)


def command_time(children: Children, argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=children.env(), cwd=ROOT, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def parse_importtime(text: str) -> ImportProfile:
    rows = []
    for line in text.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            rows.append((match.group(4), int(match.group(1)) / 1000, int(match.group(2)) / 1000))
    groups: dict[str, float] = {}
    for module, self_ms, _ in rows:
        top = module.split(".")[0]
        top = {"_ssl": "ssl", "_hashlib": "hashlib"}.get(top, top)
        groups[top] = groups.get(top, 0.0) + self_ms
    by_package = sorted(groups.items(), key=lambda kv: -kv[1])
    slowest = sorted(rows, key=lambda r: -r[1])[:10]
    return ImportProfile(sum(r[1] for r in rows), by_package, slowest)


def serve_import_profile(children: Children) -> ImportProfile:
    with tempfile.TemporaryFile() as err:
        port = free_port()
        proc = children.spawn_sidecar(port, python_flags=["-X", "importtime"], stderr=err)
        with running(proc):
            wait_http_ok(port, proc)
        err.seek(0)
        return parse_importtime(err.read().decode(errors="replace"))


def site_import_ms(children: Children) -> float:
    """What `site` (the .pth files of this environment) costs every interpreter start."""
    err = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        env=children.env(),
        check=True,
    ).stderr
    for line in err.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and match.group(4) == "site" and len(match.group(3)) == 1:
            return int(match.group(2)) / 1000
    return 0.0


def version_import_profile(children: Children) -> ImportProfile:
    out = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "sidecar", "--version"],
        capture_output=True,
        text=True,
        env=children.env(),
        cwd=ROOT,
        check=True,
    )
    return parse_importtime(out.stderr)
