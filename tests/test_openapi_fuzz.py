"""Property-based run of schemathesis against a live sidecar process: zero 5xx and zero answers
that break the document served at /openapi.json (schema, status code, content type).

The sidecar runs in dry-run (no ARBITRIUM_DELETE_URL), so the match-end and shutdown calls the
fuzzer sends decide a real stop without a platform: from then on the lifecycle answers turn into
202 and 409, which the document allows. The stop calls are fuzzed after the others, then the
others once more, so both sides of the stop are covered. `/v1/events` never ends and is left
out. Generation is derandomized: CI runs the same cases every time.
"""

from __future__ import annotations

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


@pytest.fixture(params=[None, TOKEN], ids=["open", "token"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveSidecar]:
    """`edgegap-sidecar serve` on a free loopback port, in dry-run; output goes to files so a
    full pipe can never stall it."""
    port = free_port()
    env = base_env(SIDECAR_PORT=str(port), SIDECAR_LOG_LEVEL="info")
    if request.param is not None:
        env["SIDECAR_API_TOKEN"] = request.param
    stderr = tmp_path / "stderr.log"
    with (tmp_path / "stdout.log").open("wb") as out, stderr.open("wb") as err:
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
        while True:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the sidecar never answered /healthz"
            time.sleep(0.05)
        yield LiveSidecar(url, request.param, proc, stderr)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fuzz(
    operation: Any, mode: GenerationMode, run: Run, session: requests.Session, token: str | None
) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def examples(case: schemathesis.Case) -> None:
        run.examples[label] += 1
        headers = None
        # With a token, one case in four keeps whatever credentials were generated (usually
        # none or a wrong one: a 401), the rest carry the right token.
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
                run.failures.setdefault(key, f"{case.as_curl_command()}\n{group}")

    examples()


def test_fuzz_the_local_api(live: LiveSidecar) -> None:
    """Generated valid and invalid requests to every operation (with and without the API token)
    never get a 5xx or an answer outside the document, and leave no traceback behind."""
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json").exclude(path=STREAMING)
    operations = {
        f"{op.method.upper()} {op.path}": op
        for result in schema.get_all_operations()
        for op in [result.ok()]
    }
    before = [label for label in operations if label not in STOP_CALLS]
    plan = before + list(STOP_CALLS) + before
    run = Run()
    with requests.Session() as session:
        for label in plan:
            operation = operations[label]
            # Only a body can be made invalid: the API has no parameters.
            modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * bool(operation.body)
            for mode in modes:
                _fuzz(operation, mode, run, session, live.token)
    print(run.summary())
    assert not run.failures, "\n\n".join(f"{k}\n{v}" for k, v in run.failures.items())
    assert "Traceback" not in live.stderr.read_text()
