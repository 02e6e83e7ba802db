"""The fault matrix (issue 8, SPEC §11): every hostile platform answer x the moment it meets the
stop path x every mode, each cell a real sidecar process against `HostilePlatform`.

Each cell must end with:
* at most one accepted stop (exactly one unless the answer is permanent or SIGTERM came first),
  and no DELETE started after the SIGTERM;
* the right final state (`stopped` / `failed`) and exit code;
* one `sidecar.stop` record, on a line of its own, written before the first DELETE arrived;
* the token nowhere: not in stdout, stderr, `/v1/status`, `/metrics`, raw or URL-encoded.

Set FAULT_MATRIX_REPORT=path to also write one JSON line per cell (scripts/fault-matrix renders
them as the table in docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hostile_platform import ACCEPTING, PERMANENT, HostilePlatform, refusing_then_serving

from tests.conftest import base_env, free_port

HERE = Path(__file__).resolve().parent
GAMES = HERE.parent / "games"

MOMENTS = ("first attempt", "during retries", "during SIGTERM", "during drain grace")
MODES = ("serve", "run", "watch")
# Cells running at once: enough to keep both cores busy while most cells wait on timeouts.
CONCURRENCY = 10
ATTEMPT_TIMEOUT = 1.0


@dataclass
class CellResult:
    answer: str
    moment: str
    mode: str
    state: str | None = None
    exit_code: int | None = None
    deletes: int = 0
    accepted: int = 0
    record_ok: bool = False
    token_leaked: bool = False
    problems: list[str] = field(default_factory=list)


class Process:
    """A sidecar process whose output is timestamped on the test's loop clock as it arrives."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.stdout = bytearray()
        self.stderr = bytearray()
        # (loop time, stdout length then): when each stretch of output had arrived.
        self.arrivals: list[tuple[float, int]] = []
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.stdout, stamp=True)),
            asyncio.create_task(self._read(proc.stderr, self.stderr, stamp=False)),
        ]

    async def _read(
        self, stream: asyncio.StreamReader | None, into: bytearray, *, stamp: bool
    ) -> None:
        assert stream is not None
        loop = asyncio.get_running_loop()
        while chunk := await stream.read(1 << 16):
            into += chunk
            if stamp:
                self.arrivals.append((loop.time(), len(into)))

    def arrived_by(self, offset: int) -> float:
        """When stdout byte `offset` had arrived."""
        return next(t for t, length in self.arrivals if length > offset)

    async def get(self, path: str) -> str:
        async with aiohttp.ClientSession() as http, http.get(self.url + path) as response:
            assert response.status < 500, (path, response.status)
            return await response.text()

    async def post(self, path: str, body: dict[str, Any]) -> int:
        async with aiohttp.ClientSession() as http, http.post(self.url + path, json=body) as r:
            await r.read()
            return r.status

    async def wait_api(self) -> None:
        async with asyncio.timeout(15):
            while True:
                try:
                    await self.get("/healthz")
                    return
                except aiohttp.ClientConnectionError:
                    if self.proc.returncode is not None:
                        raise AssertionError("sidecar exited at start") from None
                    await asyncio.sleep(0.02)

    async def wait_state(self, *states: str, timeout: float = 20) -> str:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    state = json.loads(await self.get("/v1/status"))["state"]
                    if state in states:
                        return str(state)
                except aiohttp.ClientConnectionError:
                    try:
                        await asyncio.wait_for(asyncio.shield(self.proc.wait()), 0.2)
                        return "exited"
                    except TimeoutError:
                        pass
                await asyncio.sleep(0.05)

    async def finish(self, timeout: float = 15) -> int:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*self._readers)
            return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


def _token() -> str:
    # `+`, `/` and `=` differ in their URL-encoded form: both forms are checked.
    return "tok+" + base64.b64encode(os.urandom(18)).decode() + "/="


def _script_for(answer: str, moment: str) -> list[str]:
    if moment == "during retries":
        return ["500", answer]
    if moment == "during SIGTERM":
        return [answer] + ["500"] * 60
    return [answer]


def _expected_state(kind: str) -> str:
    return "failed" if kind == PERMANENT else "stopped"


async def _run_cell(
    platform: HostilePlatform, answer: str, moment: str, mode: str, index: int
) -> CellResult:
    result = CellResult(answer, moment, mode)
    deployment = f"cell{index}-{mode}-{moment.replace(' ', '')}"
    # "connection refused" is played by the port, not by an answer: once it listens, the
    # rest of the script (a plain 200 after it) answers.
    answers = [a for a in _script_for(answer, moment) if a != "connection refused"]
    script = platform.script(deployment, answers)
    port = None
    if answer == "connection refused":
        port = await refusing_then_serving(platform, refuse_for=1.5)
    token = _token()
    env = base_env(
        SIDECAR_PORT=str(free_port()),
        ARBITRIUM_DELETE_URL=platform.url(deployment, port),
        ARBITRIUM_DELETE_TOKEN=token,
        ARBITRIUM_REQUEST_ID=deployment,
        SIDECAR_STOP_ATTEMPT_TIMEOUT=f"{ATTEMPT_TIMEOUT:g}s",
        SIDECAR_STOP_RETRY_BUDGET="30s",
        SIDECAR_MATCH_END_GRACE="0s",
        SIDECAR_TERM_GRACE="3s",
        SIDECAR_ON_STOP_FAILURE="stay" if moment == "during SIGTERM" else "exit",
        SIDECAR_READY_TIMEOUT="5m",
    )
    watched = None
    if mode == "serve":
        argv = ["serve"]
    elif mode == "run":
        argv = ["run", "--", sys.executable, str(HERE / "chatter_game.py")]
    else:
        watched = await asyncio.create_subprocess_exec(
            sys.executable, str(GAMES / "idle.py"), stdout=subprocess.DEVNULL
        )
        argv = ["serve", "--watch-pid", str(watched.pid)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        *argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sidecar = Process(proc, int(env["SIDECAR_PORT"]))
    kind = platform.kind(answer) if answer != "connection refused" else "retryable"
    api_bodies: list[str] = []
    sigterm_at: float | None = None
    try:
        await sidecar.wait_api()
        if moment == "during drain grace":
            assert (
                await sidecar.post("/v1/shutdown", {"reason": "drain", "grace_seconds": 0.6}) < 300
            )
            # Further triggers inside the grace must not start a second stop sequence.
            await sidecar.post("/v1/shutdown", {"reason": "again"})
            await sidecar.post("/v1/match/end", {})
        else:
            assert await sidecar.post("/v1/shutdown", {"reason": "fault matrix"}) < 300
        if moment == "during SIGTERM":
            if answer == "connection refused":
                await asyncio.sleep(0.5)  # attempts are refused, nothing arrives yet
            else:
                async with asyncio.timeout(15):
                    await script.first_request.wait()
                await asyncio.sleep(0.1)  # a hanging or trickling attempt is now in flight
            api_bodies += [await sidecar.get("/v1/status"), await sidecar.get("/metrics")]
            sigterm_at = asyncio.get_running_loop().time()
            proc.send_signal(signal.SIGTERM)
            result.state = "terminating"
        else:
            expected = _expected_state(kind)
            result.state = await sidecar.wait_state("stopped", "failed")
            if result.state != "exited":
                # A failed stop with SIDECAR_ON_STOP_FAILURE=exit may be exiting already.
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    api_bodies += [await sidecar.get("/v1/status"), await sidecar.get("/metrics")]
            if result.state != expected and not (result.state == "exited" and expected == "failed"):
                result.problems.append(f"state {result.state}, expected {expected}")
            if result.state in ("stopped", "exited") or expected == "stopped":
                proc.send_signal(signal.SIGTERM)  # the platform ends the stopped deployment
        result.exit_code = await sidecar.finish()
    finally:
        await sidecar.kill()
        if watched is not None and watched.returncode is None:
            watched.kill()
            await watched.wait()

    requests = script.requests
    result.deletes = len(requests)
    result.accepted = sum(1 for r in requests if platform.kind(r.answer) == ACCEPTING)
    # Exit codes: a stop that failed for good exits 1 (SIDECAR_ON_STOP_FAILURE=exit); otherwise
    # the platform's SIGTERM ends it with 0 (the game, if any, exits 0 on SIGTERM).
    expected_exit = 1 if kind == PERMANENT and moment != "during SIGTERM" else 0
    if result.exit_code != expected_exit:
        result.problems.append(f"exit {result.exit_code}, expected {expected_exit}")
    if moment == "during SIGTERM":
        assert sigterm_at is not None
        late = [r for r in requests if r.arrived > sigterm_at + 0.05]
        if late:
            result.problems.append(f"{len(late)} DELETE(s) after SIGTERM")
        if result.accepted > 1:
            result.problems.append(f"{result.accepted} accepted stops")
    else:
        wanted = 0 if kind == PERMANENT else 1
        if result.accepted != wanted:
            result.problems.append(f"{result.accepted} accepted stops, expected {wanted}")
        after_accept = [r for r in requests[1:] if platform.kind(requests[0].answer) == ACCEPTING]
        if after_accept:
            result.problems.append("DELETE after an accepted stop")
    _check_record(sidecar, requests[0].arrived if requests else None, result)
    everything = bytes(sidecar.stdout) + bytes(sidecar.stderr) + "".join(api_bodies).encode()
    for form in {token, quote(token, safe=""), quote(token)}:
        if form.encode() in everything:
            result.token_leaked = True
            result.problems.append("token leaked")
    return result


def _check_record(sidecar: Process, first_delete: float | None, result: CellResult) -> None:
    """One stop record, whole on its own line, on stdout before the first DELETE arrived."""
    out = bytes(sidecar.stdout)
    lines = out.split(b"\n")
    records = [line for line in lines if b'"sidecar.stop"' in line]
    if len(records) != 1:
        result.problems.append(f"{len(records)} stop records")
        return
    try:
        record = json.loads(records[0])
    except ValueError:
        result.problems.append(f"stop record not on a line of its own: {records[0][:120]!r}")
        return
    if record.get("event") != "sidecar.stop":
        result.problems.append("stop record malformed")
        return
    game_line = b"the quick brown fox jumps over the lazy dog " * 30
    for number, line in enumerate(lines[:-1]):
        is_record = line.startswith(b'{"event"')
        last_game_line = number == len(lines) - 2
        complete = line == game_line or (last_game_line and game_line.startswith(line))
        if result.mode == "run" and not is_record and not complete:
            result.problems.append(f"game line split: {line[:60]!r}…")
            return
    if first_delete is not None:
        written = sidecar.arrived_by(out.index(records[0]) + len(records[0]))
        # Both clocks are the test's loop: the record's bytes were read no later than the
        # DELETE (a few ms of scheduling between the two readers allowed).
        if written > first_delete + 0.05:
            result.problems.append(f"record {written - first_delete:.3f}s after the first DELETE")
    result.record_ok = not result.problems


ANSWERS = [*HostilePlatform().answers, "connection refused"]


def _report(results: list[CellResult]) -> None:
    path = os.environ.get("FAULT_MATRIX_REPORT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as report:
        for cell in results:
            report.write(json.dumps(asdict(cell)) + "\n")


@pytest.mark.faults
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("moment", MOMENTS)
async def test_fault_matrix(moment: str, mode: str) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)
    async with HostilePlatform() as platform:

        async def cell(index: int, answer: str) -> CellResult:
            async with gate:
                return await _run_cell(platform, answer, moment, mode, index)

        results = await asyncio.gather(*(cell(i, a) for i, a in enumerate(ANSWERS)))
    _report(results)
    failures = [f"{r.answer}: {'; '.join(r.problems)}" for r in results if r.problems]
    assert not failures, f"{moment} x {mode}:\n" + "\n".join(failures)
