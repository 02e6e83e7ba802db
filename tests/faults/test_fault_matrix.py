"""The fault matrix (issue 8, SPEC §6, §8, §11): every hostile platform answer x the moment it
meets the stop path x every mode, each cell a real sidecar process against its own
`HostilePlatform` on its own port.

Each cell must end with:
* the right number of DELETEs reaching the platform, at most one of them accepted (exactly one
  unless the answer is permanent or the platform's SIGTERM came first), none after an accepted
  one, none sent once the sidecar had handled the SIGTERM (`_sent_after_the_handler`), and never
  two less than 0.5 s apart;
* the right final state (`stopped` / `failed` / `terminating`) and exit code, and a sidecar
  that waits for the platform's SIGTERM after an accepted stop rather than exiting by itself;
* one `sidecar.stop` record, on a line of its own (in run mode: no game line split either),
  complete on stdout when the first DELETE arrived;
* the token nowhere: not in stdout, stderr, `/v1/events`, `/v1/status` or `/metrics`, raw or
  URL-encoded;
* the log choice (SPEC §11 Round 2): no `container_log_storage` when none is set; in the cells of
  the platform that answers 400 to it (`LOG_STORAGE_400`, with SIDECAR_LOG_STORAGE set) the
  parameter on every attempt up to that 400 and on none after it, one
  `sidecar.log_storage_refused` record (complete on stdout when the next DELETE arrived), and
  `stop.log_storage_refused` in the status; in every other cell neither.

The cells run concurrently in one event loop (`CONCURRENCY` at a time): most of a cell is
spent waiting on the sidecar's timers. The sidecars are forked from `forkserver.py`, which
imported the sidecar once (an interpreter start-up is ~0.5 s of CPU; 360 of them would be the
whole budget), so a 2-core machine runs the whole matrix in about 30 s. Nothing waits a fixed
time for something to happen: a cell follows the sidecar's `/v1/events` stream, the platform's
request log and the process exit. (Two short windows watch for things that have no event:
`_in_flight` and `STAYS_UP_WINDOW`.)

The matrix runs once per session (the `matrix` fixture), for the cells that were selected; each
cell is then its own test, so a failing cell fails by name:
`pytest tests/faults -k "run and sigterm and hang"`.
`FAULT_MATRIX_REPORT=path` also writes one JSON line per cell (after a `meta` line), which
`benchmarks/fault_matrix_table.py` renders as the table in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import platform as host
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import aiohttp
import psutil
import pytest
from forkserver import PROBE
from hostile_platform import (
    ACCEPTING,
    ANSWERS,
    LOG_STORAGE_400,
    PERMANENT,
    REFUSED,
    REQUEST_DEPENDENT,
    RETRYABLE,
    HostilePlatform,
    Request,
    answer_named,
    carries_log_storage,
)
from spawner import ForkedProcess, OutputPipe, Spawner

from tests.conftest import base_env
from tests.faults.cells import run_cells, selected_cells

HERE = Path(__file__).resolve().parent
GAMES = HERE.parent / "games"

FIRST = "first attempt"
RETRIES = "during retries"
SIGTERM = "during SIGTERM"
DRAIN = "during drain grace"
MOMENTS = (FIRST, RETRIES, SIGTERM, DRAIN)
MODES = ("serve", "run", "watch")

# Cells at once. Each holds a sidecar (and in run and watch modes a game) that mostly waits:
# measured on 2 cores, 6 at a time take 55 s, 12 take 28 s, 24 take 24 s (the CPU, ~25 s in
# all, is then the limit, and a loaded machine starts to stretch the cells' timings).
CONCURRENCY = int(os.environ.get("FAULT_MATRIX_CONCURRENCY", "16"))
# Long enough that a loaded machine never times out an answer that did come (that would be a
# second DELETE for an accepted stop), short enough that hanging answers cost little.
ATTEMPT_TIMEOUT = 2.0
DRAIN_GRACE = 0.4
# SPEC §11: no retry sooner than 0.5 s after the previous attempt. Arrivals are stamped on the
# test's loop, which a loaded machine may run late for one of the two: 0.2 s of slack (what
# this guards against, a resend or a storm, comes within milliseconds).
ARRIVAL_SLACK = 0.2
RETRY_FLOOR = 0.5 - ARRIVAL_SLACK
# The first DELETE after the stop is due (the shutdown call, plus the grace): SPEC §11 lets a
# slow stdout hold it back 1 s at most; 1 s more for a loaded machine (measured: under 0.2 s on
# an idle 2-core machine, 0.8 s with ten busy loops competing for its cores).
FIRST_DELETE_LIMIT = 2.0
# The sidecar's peak memory once it met the answer (~40 MiB; a 300 MB body read whole was
# ~390 MiB): SPEC §11 reads at most 64 KiB of an answer.
RSS_LIMIT_MIB = 150
# How long a settled sidecar is watched for exiting by itself when it should wait for SIGTERM.
STAYS_UP_WINDOW = 0.3
# A cell that has not ended by then is reported as hung (with what it saw), not waited for.
CELL_TIMEOUT = 60.0
# The whole matrix, however many cells hang: about 30 s on an idle 2-core machine (several
# minutes with FAULT_MATRIX_SPAWN=exec: raise it with FAULT_MATRIX_TIMEOUT).
MATRIX_TIMEOUT = float(os.environ.get("FAULT_MATRIX_TIMEOUT", "300"))
LISTEN_LINE = re.compile(rb"listening on http://127\.0\.0\.1:(\d+) ")
GAME_LINE = b"the quick brown fox jumps over the lazy dog " * 30  # chatter_game.py's line
# SIDECAR_LOG_STORAGE in the LOG_STORAGE_400 cells: issue 15's value, which the platform refuses.
LOG_STORAGE = "s3 logs"


@dataclass(frozen=True)
class Cell:
    answer: str
    moment: str
    mode: str

    @property
    def kind(self) -> str:
        return answer_named(self.answer).kind

    @property
    def log_storage(self) -> str | None:
        """SIDECAR_LOG_STORAGE for this cell: set only where the platform refuses it."""
        return LOG_STORAGE if self.answer == LOG_STORAGE_400 else None

    @property
    def id(self) -> str:
        return "-".join(
            re.sub(r"[^a-z0-9]+", "_", part.lower()).strip("_")
            for part in (self.mode, self.moment, self.answer)
        )


@dataclass
class CellResult:
    answer: str
    moment: str
    mode: str
    kind: str
    state: str | None = None  # where the stop path ended (before the platform's SIGTERM)
    state_at_sigterm: str | None = None  # the SIGTERM moment: where the stop path was then
    exit_code: int | None = None
    deletes: int = 0  # DELETEs that reached the platform
    attempts: int | None = None  # as the sidecar counted them (refused ones included)
    accepted: int = 0
    record_ok: bool = False
    token_leaked: bool = False
    # Watch mode: the watched game still running once the sidecar had exited (it must not be
    # after the exit fallback; after the platform's SIGTERM the platform ends it).
    watched_left_running: bool | None = None
    first_delete_s: float | None = None  # the first DELETE, seconds after the stop was due
    # The first DELETE by the sidecar's own clock: handed to the kernel, seconds after the stop
    # was due (the probe's mark; None without it). `first_delete_s` adds how late the test's
    # loop read it.
    first_sent_s: float | None = None
    rss_mib: float | None = None  # the sidecar's peak memory, once it met the answer
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    stderr_tail: str = ""  # the sidecar's last log lines, kept for a cell that failed


def script_for(cell: Cell) -> list[str]:
    """What the platform answers attempt 1, 2, …; a plain 200 after that."""
    if cell.moment == RETRIES:
        return ["500", cell.answer]
    if cell.moment == SIGTERM:
        # Anything after the signal would be a DELETE the sidecar must not send: make it one
        # that would be retried, so a sidecar that ignored the signal shows it.
        return [cell.answer] + ["500"] * 10
    return [cell.answer]


def expected_deletes(cell: Cell) -> int:
    """DELETEs reaching the platform (for the SIGTERM moment: at least this many)."""
    if cell.moment == SIGTERM:
        return 0 if cell.answer == REFUSED else 1
    before = 1 if cell.moment == RETRIES else 0
    this = 0 if cell.answer == REFUSED else 1
    after = 1 if cell.kind == RETRYABLE else 0  # the 200 that ends the retries
    return before + this + after


def expected_state(cell: Cell) -> str:
    if cell.moment == SIGTERM:
        return "terminating"
    return "failed" if cell.kind == PERMANENT else "stopped"


def expected_exit(cell: Cell) -> int:
    # A stop that failed for good exits 1 (SIDECAR_ON_STOP_FAILURE=exit; in run mode the game is
    # terminated first and exits 0, so the failure's 1 stands). Otherwise the platform's SIGTERM
    # ends the sidecar with 0: serve and watch modes exit 0, run mode the game's 0.
    return 1 if expected_state(cell) == "failed" else 0


def _token() -> str:
    # `+`, `/` and `=` differ in their URL-encoded form: both forms are checked.
    return "tok+" + base64.b64encode(os.urandom(18)).decode() + "/="


class Events:
    """The sidecar's `/v1/events` stream: every status it published, as it arrives."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.statuses: list[dict[str, Any]] = []
        self.ended = False
        self._changed = asyncio.Event()
        self.on_status: Callable[[dict[str, Any]], None] | None = None

    async def follow(self, http: aiohttp.ClientSession, url: str) -> None:
        try:
            async with http.get(url + "/v1/events") as response:
                async for line in response.content:
                    self.raw += line
                    if line.startswith(b"data: "):
                        status = json.loads(line[6:])
                        self.statuses.append(status)
                        if self.on_status is not None:
                            self.on_status(status)
                        self._changed.set()
        except (aiohttp.ClientError, ConnectionError):
            pass  # the sidecar exited: the stream ends with it
        finally:
            self.ended = True
            self._changed.set()

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The first status (already seen or to come) that satisfies `predicate`; None if the
        stream ended without one."""
        seen = 0
        while True:
            for status in self.statuses[seen:]:
                if predicate(status):
                    return status
            seen = len(self.statuses)
            if self.ended:
                return None
            self._changed.clear()
            await self._changed.wait()

    @property
    def states(self) -> list[str]:
        """Distinct states in the order they came."""
        states: list[str] = []
        for status in self.statuses:
            if not states or states[-1] != status["state"]:
                states.append(status["state"])
        return states

    @property
    def attempts(self) -> int:
        return max((s["stop"]["attempts"] for s in self.statuses), default=0)


class CellRun:
    """One cell: its platform, its sidecar (and game), and what they did."""

    def __init__(self, cell: Cell, spawner: Spawner) -> None:
        self.cell = cell
        self.spawner = spawner
        self.result = CellResult(cell.answer, cell.moment, cell.mode, cell.kind)
        self.token = _token()
        self.deployment = "cell-" + cell.id.replace("_", "-")
        self.platform = HostilePlatform(
            script_for(cell),
            on_request=self._on_request,
            # A platform that refuses the parameter refuses it on every attempt.
            then=LOG_STORAGE_400 if cell.log_storage is not None else "200 json",
        )
        self.events = Events()
        self.events.on_status = self._on_status
        self.api_bodies: list[bytes] = []
        self.record_at_first_delete: bool | None = None
        # Whether the `sidecar.log_storage_refused` record was out when the DELETE after the
        # refusal arrived (None: no such DELETE).
        self.refusal_record_at_next_delete: bool | None = None
        # DELETEs the test read once the sidecar's `sidecar.terminate` record was on stdout: only
        # the fallback of `_sent_after_the_handler` (reading can come long after the arrival).
        self.after_terminate: list[Request] = []
        self.decided_at = 0.0
        self.stdout = OutputPipe()
        self.stderr = OutputPipe(on_data=self._on_stderr)
        self._port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.sigterm_at: float | None = None
        self.proc: asyncio.subprocess.Process | ForkedProcess | None = None
        self.watched: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # --- observations --------------------------------------------------------------------------
    def _on_request(self, request: Request) -> None:
        # Everything the sidecar had written before it sent this DELETE is in the pipe now.
        self.stdout.drain()
        out = bytes(self.stdout.data)
        if self.record_at_first_delete is None:
            self.record_at_first_delete = _complete_record(out, "sidecar.stop")
        if _complete_record(out, "sidecar.terminate"):
            self.after_terminate.append(request)
        if self.refusal_record_at_next_delete is None and any(
            _refused_storage(earlier) for earlier in self.platform.requests[:-1]
        ):
            self.refusal_record_at_next_delete = _complete_record(
                out, "sidecar.log_storage_refused"
            )

    def _on_status(self, status: dict[str, Any]) -> None:
        # An attempt the sidecar counted that never reached the platform was refused: let the
        # next one through (unless the SIGTERM is what this cell is about).
        refused = status["stop"]["attempts"] > len(self.platform.requests)
        if refused and self.platform.refusing and self.cell.moment != SIGTERM:
            self.platform.resume()

    def _on_stderr(self) -> None:
        if not self._port.done():
            found = LISTEN_LINE.search(self.stderr.data)
            if found:
                self._port.set_result(int(found.group(1)))

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    # --- the run -------------------------------------------------------------------------------
    async def run(self) -> CellResult:
        started = time.monotonic()
        async with self.platform:
            try:
                async with asyncio.timeout(CELL_TIMEOUT):
                    await self._drive()
            except TimeoutError:
                self.result.problems.append(
                    f"cell did not end within {CELL_TIMEOUT:g}s (states {self.events.states}, "
                    f"{len(self.platform.requests)} DELETEs, exit {self._returncode()})"
                )
            except (aiohttp.ClientError, OSError) as exc:
                # The local API went away under the test: a sidecar that exited too early.
                self.result.problems.append(
                    f"lost the local API ({type(exc).__name__}; states {self.events.states}, "
                    f"exit {self._returncode()})"
                )
            finally:
                await self._cleanup()
        self.result.seconds = round(time.monotonic() - started, 2)
        self._evaluate()
        return self.result

    async def _drive(self) -> None:
        cell = self.cell
        env = base_env(
            SIDECAR_PORT="0",
            ARBITRIUM_DELETE_URL=self.platform.url(self.deployment),
            ARBITRIUM_DELETE_TOKEN=self.token,
            ARBITRIUM_REQUEST_ID=self.deployment,
            SIDECAR_STOP_ATTEMPT_TIMEOUT=f"{ATTEMPT_TIMEOUT:g}s",
            SIDECAR_STOP_RETRY_BUDGET="30s",
            SIDECAR_MATCH_END_GRACE="0s",
            SIDECAR_TERM_GRACE="5s",
            # With `stay`, a permanent answer leaves the sidecar up for the SIGTERM to find.
            SIDECAR_ON_STOP_FAILURE="stay" if cell.moment == SIGTERM else "exit",
        )
        if cell.log_storage is not None:
            env["SIDECAR_LOG_STORAGE"] = cell.log_storage
        if cell.mode == "serve":
            argv = ["serve"]
        elif cell.mode == "run":
            argv = ["run", "--", sys.executable, str(HERE / "chatter_game.py")]
        else:
            # stdin kept open: the idle game exits when it reaches end-of-file.
            self.watched = await asyncio.create_subprocess_exec(
                sys.executable,
                str(GAMES / "idle.py"),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            argv = ["serve", "--watch-pid", str(self.watched.pid)]
        self.proc = await self.spawner.spawn(argv, env, self.stdout.write_fd, self.stderr.write_fd)
        self.stdout.child_started()
        self.stderr.child_started()
        exited = asyncio.ensure_future(self.proc.wait())
        self._tasks.append(exited)
        await asyncio.wait([self._port, exited], return_when=asyncio.FIRST_COMPLETED)
        if not self._port.done():
            self.result.problems.append(f"sidecar exited at start with {self.proc.returncode}")
            return
        url = f"http://127.0.0.1:{self._port.result()}"
        async with aiohttp.ClientSession() as http:
            self._spawn(self.events.follow(http, url))
            await self.events.until(lambda s: True)  # subscribed: no change can be missed now
            if cell.mode == "run":
                # The game is up (its SIGTERM handler set) and writing: the stop meets it
                # mid-line.
                await self.stdout.until(lambda data: len(data) >= 4096)
            await self._decide_stop(http, url)
            if cell.moment == SIGTERM:
                await self._sigterm_mid_stop(http, url)
            else:
                await self._until_settled(http, url)
            self.result.exit_code = await self.proc.wait()
            if self.watched is not None:
                if expected_state(cell) == "failed":
                    # The exit fallback terminates the watched game too (SPEC §4): SIGTERM,
                    # which the idle game does not handle. Its exit reaches this loop a moment
                    # after the sidecar's.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self.watched.wait()), 5)
                self.result.watched_left_running = self.watched.returncode is None
            await self.stdout.closed.wait()
            await self.stderr.closed.wait()

    async def _decide_stop(self, http: aiohttp.ClientSession, url: str) -> None:
        self.decided_at = asyncio.get_running_loop().time()  # no later than the sidecar decides
        if self.cell.moment != DRAIN:
            async with http.post(url + "/v1/shutdown", json={"reason": "fault matrix"}) as r:
                if r.status != 202 and r.status != 200:
                    self.result.problems.append(f"POST /v1/shutdown answered {r.status}")
            return
        body = {"reason": "drain", "grace_seconds": DRAIN_GRACE}
        async with http.post(url + "/v1/shutdown", json=body) as r:
            if r.status not in (200, 202):
                self.result.problems.append(f"POST /v1/shutdown answered {r.status}")
        # Further triggers inside the grace are idempotent (SPEC §7): 202, no second stop.
        for path, again in (("/v1/shutdown", {"reason": "again"}), ("/v1/match/end", {})):
            async with http.post(url + path, json=again) as r:
                if r.status != 202:
                    self.result.problems.append(f"{path} inside the grace answered {r.status}")

    async def _sigterm_mid_stop(self, http: aiohttp.ClientSession, url: str) -> None:
        """SIGTERM once the first attempt has been answered (the sidecar waits to retry, or has
        settled: a permanent answer leaves it `failed` and, with `stay`, up), or while it is in
        flight for an answer that never comes."""
        if self.cell.kind == PERMANENT:
            reported = asyncio.ensure_future(self.events.until(lambda s: s["state"] == "failed"))
        else:
            reported = asyncio.ensure_future(
                self.events.until(lambda s: s["stop"]["attempts"] >= 1)
            )
        waits = [reported]
        if answer_named(self.cell.answer).hangs:
            waits.append(asyncio.ensure_future(self._in_flight()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        if self.cell.kind == PERMANENT and not await self._stays_up():
            self.result.problems.append(
                "exited after a failed stop with SIDECAR_ON_STOP_FAILURE=stay"
            )
            self.result.state = self.events.states[-1] if self.events.statuses else None
            return
        await self._fetch_api(http, url)
        assert self.proc is not None
        self.result.state_at_sigterm = self.events.states[-1]
        self.sigterm_at = asyncio.get_running_loop().time()
        self.proc.send_signal(signal.SIGTERM)
        await self.events.until(lambda s: False)  # to the end of the stream
        self.result.state = self.events.states[-1] if self.events.statuses else None

    async def _in_flight(self) -> None:
        await self.platform.first_request.wait()
        await asyncio.sleep(0.2)  # the attempt is now waiting on a status line that never ends

    async def _until_settled(self, http: aiohttp.ClientSession, url: str) -> None:
        settled = await self.events.until(lambda s: s["state"] in ("stopped", "failed"))
        assert self.proc is not None
        if settled is None:
            self.result.state = self.events.states[-1] if self.events.statuses else None
            return
        self.result.state = settled["state"]
        if settled["state"] == "failed":
            return  # SIDECAR_ON_STOP_FAILURE=exit: the sidecar ends by itself
        if not await self._stays_up():
            self.result.problems.append("exited after an accepted stop, before the SIGTERM")
            return
        await self._fetch_api(http, url)
        self.sigterm_at = asyncio.get_running_loop().time()
        self.proc.send_signal(signal.SIGTERM)  # the platform ends the stopped deployment

    async def _stays_up(self) -> bool:
        """Whether the sidecar is still running a moment after it settled. It should be: it
        waits for the platform's SIGTERM (stopped), or stays (failed, `stay`). A negative can
        only be watched for a while: STAYS_UP_WINDOW."""
        assert self.proc is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), STAYS_UP_WINDOW)
        except TimeoutError:
            return True
        return False

    async def _fetch_api(self, http: aiohttp.ClientSession, url: str) -> None:
        """Status and metrics for the token check, and the sidecar's memory once the stop path
        has met the answer."""
        assert self.proc is not None
        rss = _peak_rss_mib(self.proc.pid)
        if rss is not None:
            self.result.rss_mib = round(rss, 1)
            if rss > RSS_LIMIT_MIB:
                self.result.problems.append(f"peak RSS {rss:.0f} MiB")
        for path in ("/v1/status", "/metrics"):
            async with http.get(url + path) as response:
                self.api_bodies.append(await response.read())
                if response.status != 200:
                    self.result.problems.append(f"GET {path} answered {response.status}")

    def _returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def _cleanup(self) -> None:
        """Whatever happened, leave no process behind (the game of a killed sidecar included)."""
        for proc in (self.proc, self.watched):
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
            proc.kill()
            await proc.wait()
        if self.watched is not None and self.watched.stdin is not None:
            self.watched.stdin.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stdout.close()
        self.stderr.close()

    # --- the verdict ---------------------------------------------------------------------------
    def _evaluate(self) -> None:
        cell, result, problems = self.cell, self.result, self.result.problems
        requests = self.platform.requests
        result.deletes = len(requests)
        result.attempts = self.events.attempts
        result.accepted = sum(1 for r in requests if ANSWERS[r.answer].kind == ACCEPTING)
        if result.state != expected_state(cell):
            problems.append(f"state {result.state}, expected {expected_state(cell)}")
        if result.exit_code != expected_exit(cell):
            problems.append(f"exit {result.exit_code}, expected {expected_exit(cell)}")
        if cell.moment == SIGTERM:
            # The first attempt, and any retry the sidecar sent before the signal reached it.
            if (result.deletes == 0) != (cell.answer == REFUSED):
                problems.append(f"{result.deletes} DELETEs before the SIGTERM")
        elif result.deletes != expected_deletes(cell):
            answers = ", ".join(r.answer for r in requests)
            problems.append(
                f"{result.deletes} DELETEs ({answers}), expected {expected_deletes(cell)}"
            )
        wanted = 1 if cell.kind != PERMANENT and cell.moment != SIGTERM else 0
        if cell.moment == SIGTERM:
            if result.accepted > 1:
                problems.append(f"{result.accepted} accepted stops")
        elif result.accepted != wanted:
            problems.append(f"{result.accepted} accepted stops, expected {wanted}")
        if cell.moment != SIGTERM and result.attempts != result.deletes + (cell.answer == REFUSED):
            problems.append(f"the sidecar counted {result.attempts} attempts")
        accepted_at = [i for i, r in enumerate(requests) if ANSWERS[r.answer].kind == ACCEPTING]
        if accepted_at and accepted_at[0] != len(requests) - 1:
            problems.append("a DELETE after an accepted stop")
        late_ones = self._sent_after_the_handler(requests)
        if late_ones:
            problems.append(
                f"{len(late_ones)} DELETE(s) after the SIGTERM was handled ({late_ones[0]})"
            )
        if result.watched_left_running and expected_state(cell) == "failed":
            problems.append("the watched game was left running after the exit fallback")
        self._check_requests(requests)
        self._check_record()
        self._check_log_storage(requests)
        self._check_secrets()
        self._check_stderr()
        if result.problems:
            result.stderr_tail = bytes(self.stderr.data[-3000:]).decode(errors="replace")

    def _sent_after_the_handler(self, requests: list[Request]) -> list[str]:
        """The DELETEs the sidecar sent once it had handled the platform's SIGTERM (SPEC §7: no
        self-stop call from then on); how each was found out.

        "Sent after the handler" means a request head handed to the kernel after the handler
        (which cancels the stop task) returned: an attempt whose request was on the wire before
        may still be answered; one sent after it was started, or resumed, after the SIGTERM was
        handled. The forked sidecar's probe (`forkserver.install_probe`) writes both marks on
        stderr in the order they happened, so this is an order, not a comparison of clocks.

        Not when the test read the request: with 16 cells on its loop and a loaded machine, it
        reads a DELETE up to ~0.5 s after it was sent, and the sidecar handles a SIGTERM sent in
        between; the retry it sent just before the signal was then read after the
        `sidecar.terminate` record and counted as sent after the SIGTERM. That reading-time
        check (`after_terminate`) remains only where the probe is not: FAULT_MATRIX_SPAWN=exec,
        or a DELETE the probe did not see.
        """
        probe = Probe.of(bytes(self.stderr.data))
        if probe.handled is None or len(probe.sent) < len(requests):
            return ["DELETE read after the terminate record" for _ in self.after_terminate]
        handled = probe.handled
        return [
            f"sent {(sent - handled) * 1000:.1f} ms after the handler returned"
            for sent in probe.sent_after
        ]

    def _check_requests(self, requests: list[Request]) -> None:
        problems = self.result.problems
        storage = self.cell.log_storage
        refused = False
        for request in requests:
            if request.method != "DELETE" or not request.path.endswith(f"/{self.deployment}/ap-1"):
                problems.append(f"unexpected request {request.method} {request.path}")
            if request.headers.get("authorization") != self.token:
                problems.append("the DELETE did not carry the raw token in `authorization`")
            carried = parse_qs(request.query).get("container_log_storage")
            if storage is None and carries_log_storage(request):
                problems.append("container_log_storage sent although no storage choice is set")
            elif storage is not None and refused and carries_log_storage(request):
                problems.append("container_log_storage sent again after the platform refused it")
            elif storage is not None and not refused and carried != [storage]:
                problems.append(f"container_log_storage {carried} before the refusal")
            refused = refused or _refused_storage(request)
        for before, after in itertools.pairwise(requests):
            gap = after.arrived - before.arrived
            if gap < RETRY_FLOOR:
                problems.append(f"a retry {gap:.3f}s after the previous attempt")
            if before.answer == "429 Retry-After 1" and gap < 1.0 - ARRIVAL_SLACK:
                problems.append(f"Retry-After: 1 not honoured (next attempt after {gap:.3f}s)")
        if requests:
            grace = DRAIN_GRACE if self.cell.moment == DRAIN else 0.0
            due = self.decided_at + grace
            late = requests[0].arrived - due
            self.result.first_delete_s = round(late, 3)
            if late < -0.01:
                problems.append(f"the first DELETE came {-late:.3f}s before the grace ended")
            # How late the sidecar sent it, by the probe (the same monotonic clock as the loop):
            # what the sidecar is answerable for, without the test's own lag in reading it.
            probe = Probe.of(bytes(self.stderr.data))
            if probe.sent and self.cell.answer != REFUSED:
                late = probe.sent[0] - due
                self.result.first_sent_s = round(late, 3)
            if late > FIRST_DELETE_LIMIT and self.cell.answer != REFUSED:
                problems.append(f"the first DELETE came {late:.3f}s after the stop was due")

    def _check_record(self) -> None:
        """One stop record, whole on its own line, on stdout before the first DELETE arrived."""
        problems = self.result.problems
        out = bytes(self.stdout.data)
        lines = out.split(b"\n")
        records = [line for line in lines if b'"sidecar.stop"' in line]
        if len(records) != 1:
            problems.append(f"{len(records)} stop records")
            return
        try:
            record = json.loads(records[0])
        except ValueError:
            problems.append(f"stop record not on a line of its own: {records[0][:100]!r}")
            return
        if record.get("event") != "sidecar.stop" or record.get("request_id") != self.deployment:
            problems.append("stop record malformed")
            return
        # SPEC §7: the SIGTERM is answered with its own record (and no self-stop call). SPEC §11
        # lets a record that stdout did not take in time go to stderr, with a warning: at exit a
        # loaded machine can leave the writer no time (seen once in ~20 runs, with busy loops
        # competing for the cores), and the record is still in the container's logs.
        terminates = [line for line in lines if _is_record(line) and b"sidecar.terminate" in line]
        err = bytes(self.stderr.data)
        if b"records are written to stderr instead" in err:
            terminates += [
                line
                for line in err.split(b"\n")
                if line.startswith(b'{"event": "sidecar.terminate"')
            ]
        wanted = 0 if self.sigterm_at is None else 1
        if len(terminates) != wanted:
            problems.append(f"{len(terminates)} sidecar.terminate records, expected {wanted}")
            return
        if terminates and json.loads(terminates[0]).get("signal") != "SIGTERM":
            problems.append(f"terminate record malformed: {terminates[0][:100]!r}")
            return
        if self.cell.mode == "run" and not _game_lines_whole(out):
            problems.append("a game line split (the relay lost, reordered or cut output)")
            return
        if self.record_at_first_delete is False:
            problems.append("the stop record was not complete on stdout when the first DELETE came")
            return
        self.result.record_ok = True

    def _check_log_storage(self, requests: list[Request]) -> None:
        """A refused log choice shows once in the stored logs and in the status; an accepted or
        absent one shows nowhere."""
        problems = self.result.problems
        refused = any(_refused_storage(request) for request in requests)
        if self.cell.log_storage is not None and not refused:
            problems.append("the platform never got to refuse the log choice")
        records = [
            line
            for line in bytes(self.stdout.data).split(b"\n")
            if _is_record(line) and b'"sidecar.log_storage_refused"' in line
        ]
        if len(records) != int(refused):
            problems.append(f"{len(records)} sidecar.log_storage_refused records")
        elif records and json.loads(records[0]).get("log_storage") != self.cell.log_storage:
            problems.append(f"log_storage_refused record malformed: {records[0][:200]!r}")
        shown = any(s["stop"].get("log_storage_refused", False) for s in self.events.statuses)
        if shown != refused:
            problems.append(f"status stop.log_storage_refused {shown}, refused {refused}")
        if self.refusal_record_at_next_delete is False:
            problems.append("the refusal record was not on stdout when the next DELETE came")

    def _check_secrets(self) -> None:
        everything = b"".join(
            [
                bytes(self.stdout.data),
                bytes(self.stderr.data),
                bytes(self.events.raw),
                *self.api_bodies,
            ]
        )
        for form in {self.token, quote(self.token, safe=""), quote(self.token)}:
            if form.encode() in everything:
                self.result.token_leaked = True
                self.result.problems.append("token leaked")
                return

    def _check_stderr(self) -> None:
        err = bytes(self.stderr.data)
        if err.count(b"Traceback") > 1:
            self.result.problems.append(f"{err.count(b'Traceback')} tracebacks on stderr")
        for sign in (b"never retrieved", b"background task"):
            if sign in err:
                self.result.problems.append(f"stderr: {sign.decode()!r}")
        lines = err.count(b"\n") - err.count(PROBE)
        if lines > 200:
            self.result.problems.append(f"stderr flooded ({lines} lines)")


@dataclass
class Probe:
    """What `forkserver.install_probe` marked on a forked sidecar's stderr: when each DELETE was
    handed to the kernel, and when the termination-signal handler first returned (monotonic
    seconds, the loop's clock), in the order they happened."""

    sent: list[float] = field(default_factory=list)
    handled: float | None = None
    sent_after: list[float] = field(default_factory=list)  # marked after `handled`: the order

    @classmethod
    def of(cls, err: bytes) -> Probe:
        probe = cls()
        for line in err.split(b"\n"):
            if not line.startswith(PROBE):
                continue
            words = line[len(PROBE) :].split()
            if words[:2] == [b"DELETE", b"sent"]:
                probe.sent.append(float(words[2]))
                if probe.handled is not None:
                    probe.sent_after.append(float(words[2]))
            elif words[:1] == [b"signal"] and words[2:3] == [b"handled"] and probe.handled is None:
                probe.handled = float(words[3])
        return probe


def _peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident memory so far (Linux: VmHWM), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


def _is_record(line: bytes) -> bool:
    return line.startswith(b'{"event": "sidecar.')


def _game_lines_whole(out: bytes) -> bool:
    """Run-mode stdout is the game's lines and the sidecar's records, each whole. SPEC §11 allows
    one kind of cut: a line the game left unfinished for 250 ms is ended before a record and
    goes on after it. The game's last line may be unfinished (it was stopped mid-block)."""
    *lines, tail = out.split(b"\n")
    lines.append(tail)  # the unfinished end, b"" when the output ends with a newline
    number = 0
    while number < len(lines):
        line = lines[number]
        if line == GAME_LINE or _is_record(line):
            number += 1
            continue
        after = number + 1
        while after < len(lines) and _is_record(lines[after]):
            after += 1
        if after == len(lines):  # the last line, possibly after records: unfinished
            return GAME_LINE.startswith(line)
        if after > number + 1:  # head, records, tail
            joined = line + lines[after]
            if joined == GAME_LINE or (after == len(lines) - 1 and GAME_LINE.startswith(joined)):
                number = after + 1
                continue
        if after == len(lines) - 1 and lines[after] == b"" and GAME_LINE.startswith(line):
            number = after + 1  # the relay ended the game's unfinished last line
            continue
        return False
    return True


def _refused_storage(request: Request) -> bool:
    """The platform answered 400 to a DELETE that carried the log choice."""
    return request.answer == "400" and carries_log_storage(request)


def _complete_record(out: bytes, event: str) -> bool:
    at = out.find(f'"event": "{event}"'.encode())
    return at >= 0 and out.find(b"\n", at) >= 0


CELLS = [
    Cell(answer, moment, mode)
    for mode in MODES
    for moment in MOMENTS
    for answer in [*ANSWERS, *REQUEST_DEPENDENT]
]


def _estimated_seconds(cell: Cell) -> float:
    """Longest first, so the last cells to finish are short ones."""
    seconds = 1.0 + (1.0 if cell.moment == RETRIES else 0.0) + (0.5 if cell.mode == "run" else 0)
    if answer_named(cell.answer).hangs:
        seconds += ATTEMPT_TIMEOUT
    if cell.answer.startswith("429 Retry-After") and "0" not in cell.answer:
        seconds += 1.0
    return seconds


async def run_matrix(cells: list[Cell]) -> dict[Cell, CellResult]:
    ordered = sorted(cells, key=_estimated_seconds, reverse=True)
    async with Spawner(probe=True) as spawner:
        finished = await run_cells(
            ordered,
            lambda cell: CellRun(cell, spawner).run(),
            concurrency=CONCURRENCY,
            timeout=MATRIX_TIMEOUT,
        )
    results = {}
    for cell, result in finished.items():
        if result is None:
            result = CellResult(cell.answer, cell.moment, cell.mode, cell.kind)
            result.problems.append(f"the matrix ran out of time ({MATRIX_TIMEOUT:g}s) first")
        results[cell] = result
    return results


def _cpu_seconds() -> tuple[float, float]:
    """CPU time of this process and of its reaped descendants (sidecars and their games)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _report(results: dict[Cell, CellResult], seconds: float, cpu: tuple[float, float]) -> None:
    path = os.environ.get("FAULT_MATRIX_REPORT")
    if not path:
        return
    meta = {
        "meta": {
            "cells": len(results),
            "seconds": round(seconds, 1),
            "cpu_seconds_test": round(cpu[0], 1),
            "cpu_seconds_processes": round(cpu[1], 1),
            "cores": os.cpu_count(),
            "concurrency": CONCURRENCY,
            "spawn": os.environ.get("FAULT_MATRIX_SPAWN", "fork"),
            "python": host.python_version(),
            "machine": host.machine(),
            "date": time.strftime("%Y-%m-%d"),
        }
    }
    with open(path, "w", encoding="utf-8") as report:
        report.write(json.dumps(meta) + "\n")
        for cell in CELLS:
            if cell in results:
                report.write(json.dumps(asdict(results[cell])) + "\n")


@pytest.fixture(scope="session")
def matrix(request: pytest.FixtureRequest) -> dict[Cell, CellResult]:
    """Run every selected cell at once, the first time a cell's test needs the results."""
    selected = selected_cells(request, "cell")
    started, cpu_before = time.monotonic(), _cpu_seconds()
    results = asyncio.run(run_matrix(selected))
    cpu = tuple(after - before for after, before in zip(_cpu_seconds(), cpu_before, strict=True))
    _report(results, time.monotonic() - started, (cpu[0], cpu[1]))
    return results


@pytest.mark.faults
# The first cell's set-up runs the whole matrix, which bounds itself and each cell.
@pytest.mark.timeout(MATRIX_TIMEOUT + 60)
@pytest.mark.parametrize("cell", [pytest.param(c, id=c.id) for c in CELLS])
def test_cell(matrix: dict[Cell, CellResult], cell: Cell) -> None:
    """The cell's stop path ends as SPEC §6/§11 say, whatever the platform answered when."""
    result = matrix[cell]
    assert not result.problems, f"{cell.mode} / {cell.moment} / {cell.answer}: " + "; ".join(
        result.problems
    )


def test_reliability_doc_lists_every_cell() -> None:
    """docs/reliability.md's fault-matrix table has a row for every answer in every moment, with
    a column per mode: regenerate it (benchmarks/fault_matrix_table.py) when the matrix grows."""
    doc = (HERE.parent.parent / "docs" / "reliability.md").read_text(encoding="utf-8")
    begin = doc.index("<!-- fault-matrix table: generated by benchmarks/fault_matrix_table.py -->")
    table = doc[begin : doc.index("<!-- end of fault-matrix table -->")]
    listed: set[tuple[str, str]] = set()
    moment = None
    for line in table.splitlines():
        if line.startswith("#### "):
            moment = line[5:].strip()
        elif moment is not None and line.startswith("| ") and not line.startswith("| answer"):
            answer, kind, *modes = (part.strip() for part in line.strip("|").split("|"))
            assert kind == answer_named(answer).kind, line
            assert len(modes) == len(MODES), line
            listed.add((answer, moment))
        elif moment is not None and line.startswith("| answer"):
            assert line.split("|")[3:-1] == [f" {mode} " for mode in MODES], line
    # The request-dependent answers' rows (LOG_STORAGE_400, issue 15) are checked when present
    # but not yet required: the document is regenerated on main, which owns it.
    optional = {(answer, moment) for answer in REQUEST_DEPENDENT for moment in MOMENTS}
    assert listed - optional == {(answer, moment) for answer in ANSWERS for moment in MOMENTS}
