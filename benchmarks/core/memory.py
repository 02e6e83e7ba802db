"""Measurement 2: the realistic session, the reference processes that show where a sidecar's
memory goes, and the probe of an idle sidecar's CPU time (the sidecars themselves: variants.py)."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

import psutil

from benchmarks.core.harness import PYTHON, Children, Client


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


def reference_rss_mb(children: Children, code: str) -> float:
    probe = (
        f"{code}\nimport os\nfor line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]))"
    )
    out = subprocess.run(
        [PYTHON, "-c", probe], capture_output=True, text=True, check=True, env=children.env()
    ).stdout
    return int(out) / 1024


# Where the RSS of an aiohttp server with our dependencies goes, one interpreter per row, each
# row the one above plus one step: what the sidecar loads (aiohttp.web, psutil), then what it
# would pay to check its bodies with pydantic-core from ahead-built schemas, or with pydantic.
_VALIDATOR = (
    "from pydantic_core import SchemaValidator\n"
    "SchemaValidator({'type': 'typed-dict', 'fields': {'player_id': {'type': 'typed-dict-field', "
    "'schema': {'type': 'str', 'max_length': 128}}}}).validate_python({'player_id': 'p1'})"
)
_MODEL = (
    "import pydantic\nclass M(pydantic.BaseModel):\n    player_id: str\n"
    "M.model_validate({'player_id': 'p1'})"
)
REFERENCES = [
    (
        "a process that only imports aiohttp.web (the floor of any aiohttp server)",
        "import aiohttp.web",
    ),
    ("the same + psutil", "import aiohttp.web, psutil"),
    (
        "the same + a pydantic-core `SchemaValidator` built from a core schema and used once",
        f"import aiohttp.web, psutil\n{_VALIDATOR}",
    ),
    (
        "aiohttp.web + psutil + one pydantic `BaseModel` defined and used (checking bodies with "
        "pydantic)",
        f"import aiohttp.web, psutil\n{_MODEL}",
    ),
]


def reference_rss(children: Children) -> list[ReferenceRss]:
    return [ReferenceRss(label, reference_rss_mb(children, code)) for label, code in REFERENCES]


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
