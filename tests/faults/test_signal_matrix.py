"""The signal matrix: every catchable signal that would end a process by default x every mode x
the moment it arrives, each cell a real sidecar process (forked by `forkserver.py`), a real
game where the mode has one, and a real platform on loopback.

What each cell must show, by what the signal is in that mode:
* termination (SIGTERM, SIGINT, SIGQUIT): one `sidecar.terminate` record naming the signal and
  the decided stop (`stop_reason` null before a decision), exit 0, no DELETE once the record is
  out; in run mode the game received the very signal and ended; a watched game is left running.
* forwarded (run mode: SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGPWR): the game received it, twice
  when sent twice, with one log line; the sidecar still serves, then self-stops exactly once.
* ignored (every other one, and the forwarded ones beside the game): one log line for two
  deliveries, the game (run or watched) never received it, the sidecar still serves, then
  self-stops exactly once.

Moments: before ready (`starting`), while a decided stop drains its grace, and while the stop
is being retried (the platform answers 500 until the cell says otherwise). Nothing waits a
fixed time: a cell follows the sidecar's stdout and stderr, the platform's requests and the
process exits. `pytest tests/faults/test_signal_matrix.py -k "run and sighup"` runs a slice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from spawner import ForkedProcess, OutputPipe, Spawner

from sidecar import signals as table
from tests.conftest import base_env
from tests.faults.cells import run_cells, selected_cells

HERE = Path(__file__).resolve().parent
GAME = HERE.parent / "games" / "signal_log.py"
DOCS = HERE.parent.parent / "docs" / "integration.md"

# What the contract says, written out here rather than read from sidecar.signals: the table in
# the code is checked against it (test_the_table_is_the_contract).
TERMINATION = ("SIGTERM", "SIGINT", "SIGQUIT")
FORWARDED_IN_RUN_MODE = ("SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPWR")
IGNORED = (
    "SIGXCPU",
    "SIGVTALRM",
    "SIGPROF",
    "SIGSYS",
    "SIGTRAP",
    "SIGIO",
    "SIGSTKFLT",
    "SIGABRT",
    "SIGRTMIN",
    "SIGRTMAX",
)
SIGNALS = [n for n in (*TERMINATION, *FORWARDED_IN_RUN_MODE, *IGNORED) if hasattr(signal, n)]
MODES = ("serve", "watch", "run")
STARTING = "before ready"
DRAINING = "while draining"
RETRYING = "while retrying"
MOMENTS = (STARTING, DRAINING, RETRYING)

# Long enough that a loaded machine delivers the signal well inside it; a cell that needs the
# stop to go on waits it out once.
DRAIN_GRACE = 1.0
# Cells at once: most of a cell is waiting (a drain grace, a retry's backoff), and the CPU of
# the whole matrix (~25 s on 2 cores) is the limit beyond this.
CONCURRENCY = int(os.environ.get("SIGNAL_MATRIX_CONCURRENCY", "24"))
CELL_TIMEOUT = 40.0
MATRIX_TIMEOUT = float(os.environ.get("SIGNAL_MATRIX_TIMEOUT", "240"))
LISTEN_LINE = re.compile(rb"listening on http://127\.0\.0\.1:(\d+) ")


@dataclass(frozen=True)
class Cell:
    signal: str
    mode: str
    moment: str

    @property
    def expected(self) -> str:
        if self.signal in TERMINATION:
            return "terminate"
        if self.signal in FORWARDED_IN_RUN_MODE and self.mode == "run":
            return "forward"
        return "ignore"

    @property
    def id(self) -> str:
        moment = re.sub(r"[^a-z]+", "_", self.moment)
        return f"{self.mode}-{moment}-{self.signal.lower()}"


@dataclass
class Delete:
    answer: int
    after_terminate: bool  # the sidecar had written its terminate record when it arrived


@dataclass
class CellPlatform:
    """One cell's self-stop endpoint: 500 while `failing`, 200 otherwise."""

    failing: bool = False
    deletes: list[Delete] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    stdout: OutputPipe | None = None

    @property
    def accepted(self) -> int:
        return sum(1 for delete in self.deletes if delete.answer == 200)


class Platform:
    """The self-stop endpoint of every cell, one path per cell, on one loopback port."""

    def __init__(self) -> None:
        self.cells: dict[str, CellPlatform] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Platform:
        app = web.Application()
        app.router.add_delete("/stop/{cell}", self._delete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, cell: str) -> str:
        self.cells[cell] = CellPlatform()
        return f"http://127.0.0.1:{self.port}/stop/{cell}"

    async def _delete(self, request: web.Request) -> web.Response:
        cell = self.cells[request.match_info["cell"]]
        after = False
        if cell.stdout is not None:
            cell.stdout.drain()  # what the sidecar wrote before sending this DELETE
            after = _complete_record(bytes(cell.stdout.data), "sidecar.terminate")
        answer = 500 if cell.failing else 200
        cell.deletes.append(Delete(answer, after))
        cell.arrived.set()
        return web.Response(status=answer)


class CellRun:
    """One cell: its sidecar (and game), what it is sent and what it did."""

    def __init__(self, cell: Cell, spawner: Spawner, platform: Platform, http: Any) -> None:
        self.cell = cell
        self.spawner = spawner
        self.http: aiohttp.ClientSession = http
        self._platform = platform
        self.platform: CellPlatform | None = None  # once the cell has its URL
        self.number = int(getattr(signal, cell.signal))
        self.problems: list[str] = []
        self.stdout = OutputPipe()
        self.stderr = OutputPipe()
        self.proc: asyncio.subprocess.Process | ForkedProcess | None = None
        self.watched: asyncio.subprocess.Process | None = None
        self.watched_out = bytearray()
        self.url = ""

    async def run(self) -> list[str]:
        try:
            async with asyncio.timeout(CELL_TIMEOUT):
                await self._drive()
        except TimeoutError:
            self.problems.append(f"cell did not end within {CELL_TIMEOUT:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            # The local API (or the process) went away under the cell: a sidecar that died.
            self.problems.append(f"lost the sidecar ({type(exc).__name__}: {exc})")
        except Exception as exc:  # a cell reports, it does not end the matrix
            self.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            await self._cleanup()
        if self.problems:
            tail = bytes(self.stderr.data[-1500:]).decode(errors="replace")
            self.problems.append("stderr tail: " + tail)
        return self.problems

    # --- the run -------------------------------------------------------------------------------
    async def _drive(self) -> None:
        cell = self.cell
        url = self._platform.url(cell.id)
        platform = self.platform = self._platform.cells[cell.id]
        platform.stdout = self.stdout
        env = base_env(
            SIDECAR_PORT="0",
            ARBITRIUM_DELETE_URL=url,
            ARBITRIUM_DELETE_TOKEN="signal-matrix-token",
            ARBITRIUM_REQUEST_ID=cell.id,
            SIDECAR_STOP_RETRY_BUDGET="60s",
            SIDECAR_STOP_ATTEMPT_TIMEOUT="5s",
            SIDECAR_TERM_GRACE="5s",
        )
        if cell.mode == "serve":
            argv = ["serve"]
        elif cell.mode == "run":
            argv = ["run", "--", sys.executable, "-u", str(GAME)]
        else:
            self.watched = await asyncio.create_subprocess_exec(
                sys.executable,
                "-u",
                str(GAME),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
            await self._watched_says(b"ready")
            argv = ["serve", "--watch-pid", str(self.watched.pid)]
        self.proc = await self.spawner.spawn(argv, env, self.stdout.write_fd, self.stderr.write_fd)
        self.stdout.child_started()
        self.stderr.child_started()
        if not await self.stderr.until(lambda data: LISTEN_LINE.search(data) is not None):
            self.problems.append(f"sidecar exited at start: {await self.proc.wait()}")
            return
        found = LISTEN_LINE.search(bytes(self.stderr.data))
        assert found is not None
        self.url = f"http://127.0.0.1:{int(found.group(1))}"
        if cell.mode == "run" and not await self.stdout.until(lambda data: b"ready" in data):
            self.problems.append("the game never said ready")
            return

        # The moment.
        if cell.moment == DRAINING:
            await self._shutdown(DRAIN_GRACE, expect="draining")
        elif cell.moment == RETRYING:
            platform.failing = True
            await self._shutdown(0, expect=None)
            await platform.arrived.wait()  # the first attempt got its 500

        self.proc.send_signal(self.number)
        if cell.expected == "terminate":
            await self._check_terminated()
        else:
            await self._check_survived()

    async def _shutdown(self, grace: float, expect: str | None) -> None:
        body = {"grace_seconds": grace}
        async with self.http.post(self.url + "/v1/shutdown", json=body) as response:
            status = await response.json()
        if response.status != 202 or (expect is not None and status["state"] != expect):
            self.problems.append(f"shutdown answered {response.status} {status.get('state')}")

    async def _check_terminated(self) -> None:
        cell, problems = self.cell, self.problems
        assert self.proc is not None
        assert self.platform is not None
        code = await self.proc.wait()
        await self.stdout.until(lambda _: False)  # to end-of-file: the game may hold it too
        if code != 0:
            problems.append(f"exit {code}, expected 0")
        out = bytes(self.stdout.data)
        terminates = _records(out, "sidecar.terminate")
        reason = None if cell.moment == STARTING else "shutdown_requested"
        if len(terminates) != 1:
            problems.append(f"{len(terminates)} terminate records")
        elif (terminates[0]["signal"], terminates[0].get("stop_reason")) != (cell.signal, reason):
            problems.append(f"terminate record {terminates[0]}, expected {cell.signal}/{reason}")
        wanted_deletes = 1 if cell.moment == RETRYING else 0
        if len(self.platform.deletes) < wanted_deletes or any(
            d.after_terminate for d in self.platform.deletes
        ):
            problems.append(f"DELETEs: {self.platform.deletes}")
        if cell.mode == "run":
            if f"got {cell.signal}".encode() not in out:
                problems.append("the game did not receive the signal as sent")
        elif cell.mode == "watch" and await self._watched_signals() != [b"SIGTERM"]:
            problems.append(f"the watched game got {await self._watched_signals()}")

    async def _check_survived(self) -> None:
        cell, problems = self.cell, self.problems
        assert self.proc is not None
        assert self.platform is not None
        got = f"got {cell.signal}".encode()
        logged = f"{cell.signal} received".encode()
        if cell.expected == "forward":
            if not await self.stdout.until(lambda data: got in data):
                problems.append("the game never received the signal")
                return
            self.proc.send_signal(self.number)
            if not await self.stdout.until(lambda data: data.count(got) >= 2):
                problems.append("the game never received the second one")
                return
        else:
            if not await self.stderr.until(lambda data: logged in data):
                problems.append("no log line for the ignored signal")
                return
            self.proc.send_signal(self.number)
        async with self.http.get(self.url + "/healthz") as response:
            if response.status != 200:
                problems.append(f"/healthz answered {response.status}")
        # Now the stop goes on to its end.
        if cell.moment == STARTING:
            await self._shutdown(0, expect=None)
        elif cell.moment == RETRYING:
            self.platform.failing = False
        while self.platform.accepted == 0:
            self.platform.arrived.clear()
            await self.platform.arrived.wait()
        await self._until_state("stopped")
        self.proc.send_signal(signal.SIGTERM)  # the platform's, after an accepted stop
        code = await self.proc.wait()
        await self.stdout.until(lambda _: False)
        if code != 0:
            problems.append(f"exit {code}, expected 0")
        out, err = bytes(self.stdout.data), bytes(self.stderr.data)
        if self.platform.accepted != 1 or self.platform.deletes[-1].answer != 200:
            problems.append(f"DELETEs: {self.platform.deletes}")
        if err.count(logged) != 1:
            problems.append(f"{err.count(logged)} log lines for two deliveries, expected 1")
        if len(_records(out, "sidecar.stop")) != 1:
            problems.append("not one stop record")
        terminates = _records(out, "sidecar.terminate")
        if [(r["signal"], r.get("stop_reason")) for r in terminates] != [
            ("SIGTERM", "shutdown_requested")
        ]:
            problems.append(f"terminate records {terminates}")
        if cell.expected == "ignore" and got in out:
            problems.append("the game received an ignored signal")
        if self.watched is not None and await self._watched_signals() != [b"SIGTERM"]:
            problems.append(f"the watched game got {await self._watched_signals()}")

    async def _until_state(self, state: str) -> None:
        # The platform has answered 200; the sidecar records it right after: a short poll.
        while True:
            async with self.http.get(self.url + "/v1/status") as response:
                if (await response.json())["state"] == state:
                    return
            await asyncio.sleep(0.02)

    async def _watched_says(self, text: bytes) -> None:
        assert self.watched is not None
        assert self.watched.stdout is not None
        while text not in self.watched_out:
            chunk = await self.watched.stdout.read(4096)
            if not chunk:
                raise AssertionError("the watched game ended at start")
            self.watched_out += chunk

    async def _watched_signals(self) -> list[bytes]:
        """Every signal the watched game received, ours included: it is still running if
        it is not ours to end, so the SIGTERM we send it now ends its list."""
        assert self.watched is not None
        assert self.watched.stdout is not None
        if self.watched.returncode is None:
            self.watched.send_signal(signal.SIGTERM)
            self.watched_out += await self.watched.stdout.read()
            await self.watched.wait()
        return re.findall(rb"got (\S+)", bytes(self.watched_out))

    async def _cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            await self._end_sidecar()
        # A sidecar that died of the signal orphaned its game (the bug this matrix is about):
        # the game must not outlive the test either.
        started = re.search(rb"^ready (\d+)$", bytes(self.stdout.data), re.MULTILINE)
        if self.cell.mode == "run" and started is not None:
            with contextlib.suppress(psutil.Error):
                game = psutil.Process(int(started.group(1)))
                if str(GAME) in game.cmdline():  # that pid, if free again, may be anyone's
                    game.kill()
        if self.watched is not None:
            if self.watched.returncode is None:
                self.watched.send_signal(signal.SIGKILL)
            await self.watched.wait()
        self.stdout.close()
        self.stderr.close()

    async def _end_sidecar(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _records(out: bytes, event: str) -> list[dict[str, Any]]:
    prefix = f'{{"event": "{event}"'.encode()
    return [json.loads(line) for line in out.split(b"\n") if line.startswith(prefix)]


def _complete_record(out: bytes, event: str) -> bool:
    at = out.find(f'"event": "{event}"'.encode())
    return at >= 0 and out.find(b"\n", at) >= 0


CELLS = [Cell(name, mode, moment) for mode in MODES for moment in MOMENTS for name in SIGNALS]


async def run_matrix(cells: list[Cell]) -> dict[Cell, list[str]]:
    async with Spawner() as spawner, Platform() as platform, aiohttp.ClientSession() as http:
        # Longest first (a retried stop waits out backoffs), so the last to finish are short.
        ordered = sorted(cells, key=lambda cell: MOMENTS.index(cell.moment), reverse=True)
        finished = await run_cells(
            ordered,
            lambda cell: CellRun(cell, spawner, platform, http).run(),
            concurrency=CONCURRENCY,
            timeout=MATRIX_TIMEOUT,
        )
    return {
        cell: ["the matrix ran out of time"] if problems is None else problems
        for cell, problems in finished.items()
    }


@pytest.fixture(scope="session")
def signal_matrix(request: pytest.FixtureRequest) -> dict[Cell, list[str]]:
    """Run every selected cell at once, the first time a cell's test needs the results."""
    selected = selected_cells(request, "signal_cell")
    started = time.monotonic()
    results = asyncio.run(run_matrix(selected))
    print(f"signal matrix: {len(selected)} cells in {time.monotonic() - started:.1f}s")
    return results


@pytest.mark.faults
@pytest.mark.timeout(MATRIX_TIMEOUT + 60)
@pytest.mark.parametrize("signal_cell", [pytest.param(c, id=c.id) for c in CELLS])
def test_signal_cell(signal_matrix: dict[Cell, list[str]], signal_cell: Cell) -> None:
    """The signal does what the signal table says in this mode at this moment, and nothing
    ends the sidecar silently."""
    problems = signal_matrix[signal_cell]
    assert not problems, f"{signal_cell.id} ({signal_cell.expected}): " + "; ".join(problems)


class TestTable:
    def test_the_table_is_the_contract(self) -> None:
        """sidecar.signals says, per mode, what the contract says: termination, forwarded in
        run mode (ignored beside the game), the rest logged once and ignored."""
        for mode, forwards in ((table.RUN, True), (table.SERVE, False), (table.WATCH, False)):
            plan = {table.signal_name(n): action for n, action in table.plan(mode).items()}
            for name in TERMINATION:
                assert plan[name] is table.TERMINATE, (mode, name)
            for name in FORWARDED_IN_RUN_MODE:
                if hasattr(signal, name):
                    assert plan[name] is (table.FORWARD if forwards else table.IGNORE)
            for name, action in plan.items():
                if name not in (*TERMINATION, *FORWARDED_IN_RUN_MODE):
                    assert action is table.IGNORE, (mode, name)
            for left in ("SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGCHLD"):
                assert left not in plan, left
            if hasattr(signal, "SIGRTMIN"):
                assert "SIGRTMIN+1" in plan
                assert "SIGRTMAX" in plan

    def test_the_docs_show_the_table(self) -> None:
        """docs/integration.md shows the signal table as the code has it."""
        assert table.markdown_table() in DOCS.read_text(encoding="utf-8")
