"""Property-based run of schemathesis against a live sidecar process: zero 5xx and zero answers
that break the document served at /openapi.json (schema, status code, content type).

The sidecar runs in dry-run (no ARBITRIUM_DELETE_URL), so the match-end and shutdown calls the
fuzzer sends decide a real stop without a platform: from then on the lifecycle answers turn into
202 and 409, which the document allows. The stop calls are fuzzed after the others, then the
others once more, so both sides of the stop are covered. `/v1/events` never ends and is left
out. Generation is derandomized: CI runs the same cases every time.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sidecar import openapi
from tests.conftest import base_env, free_port

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token-0123456789abcdef"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples per operation and generation mode: ~30 s for both variants on a slow 2-core machine.
EXAMPLES = 40
# The same, once a stop is decided: most answers only change to 202 or 409 then.
EXAMPLES_AFTER_STOP = 10
# The operations that decide the stop: fuzzed after the rest.
STOP_CALLS = ("POST /v1/match/end", "POST /v1/shutdown")
STREAMING = "/v1/events"


@dataclass
class Run:
    """What one fuzzing pass did: the figures for docs/reliability.md and every failure."""

    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{len(self.examples)} operations, {sum(self.examples.values())} examples, "
            f"{len(self.failures)} distinct failures; "
            f"statuses {dict(sorted(self.statuses.items()))}"
        )


@dataclass
class LiveSidecar:
    url: str
    token: str | None
    proc: subprocess.Popen[bytes]
    stderr: Path

    def log_size(self) -> int:
        return self.stderr.stat().st_size

    def tracebacks(self, since: int = 0) -> str:
        """The sidecar's stderr from byte `since` on, if it holds a traceback."""
        with self.stderr.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        return text if "Traceback" in text else ""


@contextlib.contextmanager
def _serve(directory: Path, token: str | None) -> Iterator[LiveSidecar]:
    """`edgegap-sidecar serve` on a free loopback port, in dry-run; output goes to files so a
    full pipe can never stall it."""
    port = free_port()
    env = base_env(SIDECAR_PORT=str(port))
    if token is not None:
        env["SIDECAR_API_TOKEN"] = token
    stderr = directory / "stderr.log"
    with (directory / "stdout.log").open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve"],
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:  # bounded poll: a subprocess has no event to wait on
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the sidecar never answered /healthz"
            time.sleep(0.05)
        yield LiveSidecar(url, token, proc, stderr)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=[None, TOKEN], ids=["open", "token"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveSidecar]:
    with _serve(tmp_path, request.param) as sidecar:
        yield sidecar


def _load(live: LiveSidecar) -> Any:
    """The document as this sidecar serves it. (`from_url` would leave /openapi.json itself
    out of the run.)"""
    served = requests.get(live.url + "/openapi.json", timeout=10).json()
    assert served == openapi.document(token_required=live.token is not None)
    schema = schemathesis.openapi.from_dict(served)
    schema.config.update(base_url=live.url)
    return schema


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    max_examples: int,
    run: Run,
    session: requests.Session,
    token: str | None,
) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # failures are collected, not shrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def examples(case: schemathesis.Case) -> None:
        run.examples[label] += 1
        headers = None
        # With a token, one case in four keeps whatever credentials were generated (none or a
        # wrong one: a 401), the rest carry the right token and reach the handler.
        if token is not None and run.examples[label] % 4:
            headers = {"Authorization": f"Bearer {token}"}
        try:
            response = case.call(session=session, headers=headers, timeout=10)
        except requests.RequestException as exc:
            run.failures.setdefault(f"{label}: {type(exc).__name__}", case.as_curl_command())
            return
        run.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = f"{label} [{mode.value}] {response.status_code}: {failure.title}"
                run.failures.setdefault(key, f"{case.as_curl_command()[:500]}\n{failure}"[:2000])

    examples()


class TestFuzz:
    def test_fuzz_the_local_api(self, live: LiveSidecar) -> None:
        """Generated valid and invalid requests to every operation (with and without the API token)
        never get a 5xx or an answer outside the document, and leave no traceback behind."""
        schema = _load(live).exclude(path=STREAMING)
        operations = {
            f"{op.method.upper()} {op.path}": op
            for result in schema.get_all_operations()
            for op in [result.ok()]
        }
        assert len(operations) == 18  # every operation but the stream, /openapi.json included
        others = [label for label in operations if label not in STOP_CALLS]
        # Before the stop, the stop itself, then the rest again to see the answers after it.
        plan = (
            [(label, EXAMPLES) for label in others]
            + [(label, EXAMPLES) for label in STOP_CALLS]
            + [(label, EXAMPLES_AFTER_STOP) for label in others]
        )
        run = Run()
        with requests.Session() as session:
            for label, max_examples in plan:
                operation = operations[label]
                # Only a body can be made invalid: the API has no parameters.
                modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * bool(operation.body)
                for mode in modes:
                    _fuzz(operation, mode, max_examples, run, session, live.token)
        status = requests.get(
            live.url + "/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        ).json()
        print(f"\n[{'token' if live.token else 'open'}] {run.summary()}; ended {status['state']}")
        assert status["state"] in ("draining", "stopping", "stopped")  # the stop calls did land
        assert not run.failures, "\n\n".join(f"{k}\n{v}" for k, v in run.failures.items())
        assert not live.tracebacks()


# --- hand-written edges --------------------------------------------------------------------------
# Inputs a schema-driven generator does not reach: not JSON by the letter, too deep, not ASCII.
# Each expects the status SPEC §7/§11 gives it, inside the document. The xfail ones fail on
# this branch's api.py; the api-hardening branch fixes them (issue 8, items 8 and 10), and
# strict xfail turns its merge into a reminder to drop the mark.


@dataclass(frozen=True)
class Edge:
    method: str
    path: str
    body: bytes | None = None
    authorization: str | None = f"Bearer {TOKEN}"
    expected: int = 422


EDGES = {
    "nesting-1000-levels": Edge(
        "POST", "/v1/match/end", b'{"result":' + b"[" * 1000 + b"]" * 1000 + b"}"
    ),
    "nesting-65-levels": Edge(
        "POST", "/v1/match/end", b'{"result":' + b"[" * 64 + b"]" * 64 + b"}"
    ),
    "nan-is-not-json": Edge("POST", "/v1/hold", b'{"seconds": NaN}', expected=400),
    "infinity-is-not-json": Edge("POST", "/v1/match/end", b'{"result": -Infinity}', expected=400),
    "non-ascii-bearer": Edge("GET", "/v1/status", authorization="Bearer \xe9", expected=401),
    "wrong-bearer": Edge("GET", "/v1/status", authorization="Bearer nope", expected=401),
    "no-bearer": Edge("POST", "/v1/hold", b'{"seconds": 1}', authorization=None, expected=401),
    "over-64-kib": Edge(
        "POST", "/v1/players/connect", b'{"player_id": "' + b"a" * 70_000 + b'"}', expected=413
    ),
    "not-an-object": Edge("PUT", "/v1/players", b"[1, 2]"),
    "not-utf-8": Edge("POST", "/v1/players/connect", b'{"player_id": "\xff"}', expected=400),
    "no-body": Edge("POST", "/v1/players/connect", b"", expected=400),
    "unknown-field": Edge("POST", "/v1/hold", b'{"seconds": 1, "minutes": 2}'),
    "control-character-id": Edge("POST", "/v1/players/connect", b'{"player_id": "a\\u0007"}'),
}


@pytest.fixture(scope="module")
def edge_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSidecar]:
    with _serve(tmp_path_factory.mktemp("edges"), TOKEN) as sidecar:
        yield sidecar


class TestEdges:
    @pytest.mark.parametrize(
        "name",
        list(EDGES),
    )
    def test_edges_get_their_4xx_inside_the_document(
        self, edge_sidecar: LiveSidecar, name: str
    ) -> None:
        """Bad input the generator cannot produce gets the SPEC's 4xx, in the document's shape, and
        no traceback."""
        edge = EDGES[name]
        case = _load(edge_sidecar)[edge.path][edge.method].Case()
        headers = {"Content-Type": "application/json"}
        if edge.authorization is not None:
            headers["Authorization"] = edge.authorization
        logged = edge_sidecar.log_size()
        response = requests.request(
            edge.method, edge_sidecar.url + edge.path, data=edge.body, headers=headers, timeout=10
        )
        assert response.status_code == edge.expected, response.text[:300]
        case.validate_response(response, checks=CHECKS)
        assert not edge_sidecar.tracebacks(since=logged)
