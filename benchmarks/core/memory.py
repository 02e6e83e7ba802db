"""Measurement 2: memory after a realistic session, reference processes, and the CPU time of an
idle sidecar."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

import psutil

from benchmarks.core.harness import PYTHON, Children, Client, rss_mb, wait_http_ok
from benchmarks.core.harness import Process as ChildProcess


@dataclass(frozen=True)
class SessionMemory:
    calls: int
    rss_mb: float
    uss_mb: float  # pages only this process uses: no shared libraries


@dataclass(frozen=True)
class ReferenceRss:
    label: str  # what the process does, as the report shows it
    mb: float


@dataclass(frozen=True)
class IdleCpu:
    seconds: float
    cpu_s: float | None  # None if the window did not end
    wakeups: int | None  # voluntary context switches over the window


def realistic_session(client: Client, players: int = 40) -> None:
    """What a match looks like from the game: about 300 calls."""
    client.call("GET", "/v1/deployment")
    client.call("POST", "/v1/ready")
    client.call("POST", "/v1/match/start", {"match_id": "bench-match-1"})
    for i in range(players):
        client.call("POST", "/v1/players/connect", {"player_id": f"player-{i:03d}"})
        client.call("POST", "/v1/health")
        if i % 4 == 0:
            client.call("GET", "/v1/status")
    for round_ in range(20):
        client.call("POST", "/v1/health")
        client.call("GET", "/v1/players")
        if round_ % 5 == 0:
            client.call("GET", "/metrics")
            client.call("POST", "/v1/activity")
    client.call("POST", "/v1/hold", {"seconds": 30})
    client.call("POST", "/v1/hold", {"seconds": 0})
    for i in range(0, players, 2):  # half of them leave, some come back
        client.call("POST", "/v1/players/disconnect", {"player_id": f"player-{i:03d}"})
        client.call("POST", "/v1/health")
    for i in range(0, players, 4):
        client.call("POST", "/v1/players/connect", {"player_id": f"player-{i:03d}"})
    client.call("PUT", "/v1/players", {"player_ids": [f"player-{i:03d}" for i in range(10)]})
    for _ in range(20):
        client.call("GET", "/v1/status")
        client.call("GET", "/metrics")


def session_memory(proc: ChildProcess, port: int) -> SessionMemory:
    """Play `realistic_session` against the running sidecar, then read its RSS and USS."""
    wait_http_ok(port, proc)
    client = Client(port)
    realistic_session(client)
    client.close()
    rss = rss_mb(proc.pid)
    uss = psutil.Process(proc.pid).memory_full_info().uss / 2**20
    return SessionMemory(client.calls, rss, uss)


def reference_rss_mb(children: Children, code: str) -> float:
    probe = (
        f"{code}\nimport os\nfor line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]))"
    )
    out = subprocess.run(
        [PYTHON, "-c", probe], capture_output=True, text=True, check=True, env=children.env()
    ).stdout
    return int(out) / 1024


def reference_rss(children: Children) -> list[ReferenceRss]:
    return [
        ReferenceRss(
            "`import aiohttp.web, pydantic`",
            reference_rss_mb(children, "import aiohttp.web, pydantic"),
        ),
        # `import pydantic` is lazy: the first model class pulls in the real machinery.
        ReferenceRss(
            "`import aiohttp.web, pydantic` + one `BaseModel` class",
            reference_rss_mb(
                children,
                "import aiohttp.web, pydantic\nclass M(pydantic.BaseModel):\n    x: int = 0",
            ),
        ),
    ]


class IdleProbe:
    """CPU time an idle sidecar uses over `seconds`, sampled from a timer thread so the rest of
    the bench can run meanwhile (an idle process's own CPU time does not depend on them)."""

    def __init__(self, pid: int, seconds: float) -> None:
        self.process = psutil.Process(pid)
        self.seconds = seconds
        self._cpu_s: float | None = None
        self._wakeups: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        before = self.process.cpu_times()
        ctx_before = self.process.num_ctx_switches().voluntary
        time.sleep(self.seconds)
        after = self.process.cpu_times()
        self._wakeups = self.process.num_ctx_switches().voluntary - ctx_before
        self._cpu_s = (after.user - before.user) + (after.system - before.system)

    def join(self) -> IdleCpu:
        self._thread.join(self.seconds + 10)
        return IdleCpu(self.seconds, self._cpu_s, self._wakeups)
