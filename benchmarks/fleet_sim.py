"""Fleet simulation: N real sidecars in run mode, each playing one failure mode, against one
emulator that injects platform faults. Does every deployment stop once, on time, with its logs?

Each deployment is a real emulator deployment backed by a local process,
`python -m sidecar run -- python benchmarks/games/fleet_game.py`, started by the emulator with
its own `ARBITRIUM_DELETE_URL`/token (so the emulator's request log tells every deployment's
DELETEs apart) and its own local API port (`SIDECAR_PORT=0`: the kernel picks a free one at
bind time, and the game learns it from `SIDECAR_URL`). The emulator stores the process's stdout
and stderr as its container logs, keeps them when the stop asks for log storage, and SIGTERMs
the process once the stop is accepted, as the platform does. The restart policy is `always`,
the platform default: a sidecar that exits without stopping its deployment shows up as a
restart. Everything runs on loopback; the run ends by itself (`--timeout` bounds the wait).

Failure modes, round-robin over the fleet. "Stop due" is computed from the game's own record
of the event the sidecar's timer runs from, each time taken *before* the call that starts the
timer (so a due time is never later than the sidecar's own, and lateness is never
under-reported); see MODES for the rule of each.

Platform conditions, one per deployment (rotating so that every mode meets every condition),
each a fault scoped to that deployment's self-stop and timed so that its stop falls inside it:
an outage (503, no Retry-After) of `--outage` seconds, 429 storms of `--storm` seconds with
`Retry-After: 0` (the floor of SPEC §11) and `Retry-After: 1`, slow answers (every call held
`--slow` seconds, then processed) for `--storm` seconds, an outage answering `Retry-After: 2`,
or nothing. On top, one fleet-wide outage of `--outage` seconds hits every
deployment whose stop falls in it, all retrying at once.

Per deployment: the due time; when the platform accepted the stop (the first real 2xx in the
request log); every DELETE; the time the platform made it lose (the refusing windows that
apply to it and the Retry-After waits it asked for, inside [due, accepted], plus the time the
accepting call was held); whether its
stored logs hold the `sidecar.stop` record (exactly once, on a line of its own, with the
expected reason, no game output after it but the game's answer to SIGTERM). Exit 1 when a
target is missed.

Usage: ``scripts/fleet-sim [--quick] [--count 100] [--rate 1.5] [--outage 10] [--json PATH]
[--doc docs/reliability.md]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import math
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reliability_doc import machine_lines, write_section  # noqa: E402

from sidecar.emulator import EmulatorOptions, EmulatorServer  # noqa: E402
from sidecar.emulator.store import TIME_FORMAT  # noqa: E402

GAME = ROOT / "benchmarks" / "games" / "fleet_game.py"
BROKEN = ROOT / "benchmarks" / "games" / "broken_stdout.py"

LATE_TARGET = 1.0  # seconds beyond the stop's window + the platform's outage
MIN_RETRY = 0.5  # SPEC §11: no retry sooner than this after the previous answer
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0  # SPEC §6
# Roughly what a sidecar and its game take to start (python, aiohttp, the API, the game).
STARTUP_GUESS = 1.5
PLAY = 4.0  # seconds of "match" in the modes that play one
GRACE = 1.0  # match end / shutdown grace
SIGTERM_LINE = b"game got SIGTERM"
LAST_GAME_LINE = b"game fatal: assertion failed in physics step"

# Every sidecar gets these; each mode then sets the timer it is about.
BASE_ENV = {
    "SIDECAR_PORT": "0",
    "SIDECAR_LOG_STORAGE": "true",
    "SIDECAR_READY_TIMEOUT": "60s",
    "SIDECAR_MATCH_END_GRACE": f"{GRACE:g}s",
    "SIDECAR_STOP_RETRY_BUDGET": "3m",
    "SIDECAR_TERM_GRACE": "2s",
    "SIDECAR_LOG_LEVEL": "info",
    "FLEET_PLAY": f"{PLAY:g}",
    "FLEET_GRACE": f"{GRACE:g}",
}


@dataclass(frozen=True)
class Mode:
    name: str
    reason: str
    anchor: str  # the game's event the timer runs from ("sidecar_start": the sidecar's start)
    timer: float  # seconds from the anchor to the stop
    rule: str  # how "stop due" is computed, for the output
    nominal: float  # roughly when the stop is due, seconds after the launch (to time faults)
    env: dict[str, str] = field(default_factory=dict)
    game_exits: bool = False  # the stop follows the game's exit: all its output precedes it


MODES = [
    Mode("normal", "match_ended", "match_end", GRACE,
         f"match end sent + {GRACE:g} s grace", PLAY + GRACE),
    Mode("crash", "game_crashed", "exit", 0.0,
         "game exit (code 3, mid-line)", PLAY, game_exits=True),
    Mode("hang", "unhealthy", "heartbeat", 3.0,
         "last heartbeat sent + 3 s SIDECAR_HEALTH_TIMEOUT", PLAY - 0.5 + 3.0,
         {"SIDECAR_HEALTH_TIMEOUT": "3s"}),
    Mode("never_ready", "ready_timeout", "sidecar_start", 8.0,
         "sidecar start + 8 s SIDECAR_READY_TIMEOUT", 8.0, {"SIDECAR_READY_TIMEOUT": "8s"}),
    Mode("no_players", "first_player_timeout", "ready", 5.0,
         "ready sent + 5 s SIDECAR_FIRST_PLAYER_TIMEOUT", 5.0,
         {"SIDECAR_FIRST_PLAYER_TIMEOUT": "5s"}),
    Mode("empty", "empty_timeout", "disconnect", 4.0,
         "last disconnect sent + 4 s SIDECAR_EMPTY_TIMEOUT", PLAY + 4.0,
         {"SIDECAR_EMPTY_TIMEOUT": "4s"}),
    Mode("never_ends", "max_duration", "sidecar_start", 12.0,
         "sidecar start + 12 s SIDECAR_MAX_DURATION", 12.0, {"SIDECAR_MAX_DURATION": "12s"}),
    Mode("ignore_term", "shutdown_requested", "shutdown", GRACE,
         f"shutdown sent + {GRACE:g} s grace (game ignores SIGTERM)", PLAY + GRACE),
    Mode("broken_stdout", "game_crashed", "exit", 0.0,
         "game exit (code 3), sidecar stdout a broken pipe", PLAY, game_exits=True),
]  # fmt: skip


@dataclass(frozen=True)
class Condition:
    """The platform one deployment meets: a fault on its own self-stop, from `lead` seconds
    before its stop is expected, for `length(args)` seconds."""

    name: str
    describe: Callable[[argparse.Namespace], str]
    status: int | None = None
    retry_after: str | None = None
    delay: Callable[[argparse.Namespace], float] = lambda args: 0.0
    length: Callable[[argparse.Namespace], float] = lambda args: 0.0

    @property
    def active(self) -> bool:
        return self.name != "calm"


CONDITIONS = [
    Condition("calm", lambda a: "no fault of its own"),
    Condition("outage", lambda a: f"503 without Retry-After for {a.outage:g} s",
              503, None, length=lambda a: a.outage),
    Condition("storm_ra0", lambda a: f"429 with Retry-After: 0 for {a.storm:g} s",
              429, "0", length=lambda a: a.storm),
    Condition("storm_ra1", lambda a: f"429 with Retry-After: 1 for {a.storm:g} s",
              429, "1", length=lambda a: a.storm),
    Condition("slow", lambda a: f"every answer held {a.slow:g} s for {a.storm:g} s",
              None, None, delay=lambda a: a.slow, length=lambda a: a.storm),
    Condition("outage_ra2", lambda a: f"503 with Retry-After: 2 for {a.outage:g} s",
              503, "2", length=lambda a: a.outage),
]  # fmt: skip


@dataclass
class Window:
    """A span (wall-clock seconds) in which the platform refused or held a self-stop."""

    start: float
    end: float
    label: str
    refusing: bool  # False: calls are held (slow answers), then processed


@dataclass
class Deployment:
    index: int
    mode: Mode
    condition: Condition
    request_id: str
    events_path: Path
    launched: float
    windows: list[Window] = field(default_factory=list)


def command(python: str, broken: bool) -> str:
    argv = [python, "-m", "sidecar", "run", "--", python, str(GAME)]
    if broken:
        argv = [python, str(BROKEN), *argv]
    return "exec " + shlex.join(argv)


def condition_for(index: int) -> Condition:
    # Every mode meets every condition over the rounds, and every round holds every condition.
    return CONDITIONS[(index % len(MODES) + index // len(MODES)) % len(CONDITIONS)]


async def add_window(
    emu: EmulatorServer,
    *,
    label: str,
    status: int | None,
    retry_after: str | None,
    delay: float,
    starts_in: float,
    duration: float,
    request_id: str | None = None,
) -> Window:
    """Queue a timed fault on the emulator's clock; return its span on the wall clock."""
    before = time.time()
    await emu.add_fault(
        status=status,
        count=None,
        delay=delay,
        retry_after=retry_after,
        request_id=request_id,
        starts_in=starts_in,
        duration=duration,
    )
    after = time.time()
    # The fault's clock started between `before` and `after`: credit the platform only with
    # the span it certainly covered, so an outage never excuses more lateness than it caused.
    return Window(after + starts_in, before + starts_in + duration, label, status is not None)


# ---- the run --------------------------------------------------------------------------------


async def simulate(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    python = sys.executable
    options = EmulatorOptions(
        port=0,
        status_step_seconds=0.0,
        game_port=0,
        # The fleet's games bind no port: READY must not wait for the port readiness check.
        game_port_check=False,
        apps={"fleet": command(python, False), "fleet-broken": command(python, True)},
        restart_policy="always",
        stop_grace_seconds=5.0,
        restart_delay_seconds=1.0,
        # The emulator's per-deployment psutil sampling is not under test; keep it cheap.
        metrics_interval_seconds=60.0,
    )
    load = LoadSampler()
    # Other work on the machine skews every figure: say how busy it was before we started.
    baseline = psutil.cpu_percent(interval=2.0)
    wall_start = time.time()
    async with EmulatorServer(options) as emu, aiohttp.ClientSession() as http:
        sampler = asyncio.create_task(load.run())
        t0 = time.time()
        fleet_windows: list[Window] = []
        if args.faults and args.fleet_outage_at is not None:
            fleet_windows.append(
                await add_window(
                    emu,
                    label=f"fleet-wide outage 503 {args.outage:g} s",
                    status=503,
                    retry_after=None,
                    delay=0.0,
                    starts_in=args.fleet_outage_at,
                    duration=args.outage,
                )
            )
        fleet: list[Deployment] = []
        for index in range(args.count):
            await asyncio.sleep(max(0.0, t0 + index / args.rate - time.time()))
            fleet.append(await launch(emu, args, index, workdir))
        launch_s = time.time() - t0
        deadline = time.time() + args.timeout
        terminated = [await wait_terminated(emu, d.request_id, deadline) for d in fleet]
        end = time.time()
        _, request_log = await emu.call(
            "GET", "/_emulator/requests", params={"method": "DELETE"}, auth=False
        )
        all_deletes = request_log["requests"]
        results = []
        for deployment, done in zip(fleet, terminated, strict=True):
            logs = await raw_logs(http, emu.url, deployment.request_id)
            if args.logs_dir is not None and logs is not None:
                name = f"{deployment.index:04d}-{deployment.mode.name}-{deployment.request_id}.log"
                (args.logs_dir / name).write_bytes(logs)
            results.append(analyse(deployment, done, all_deletes, fleet_windows, logs, end))
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return {
        "count": args.count,
        "rate": args.rate,
        "outage_s": args.outage,
        "storm_s": args.storm,
        "slow_s": args.slow,
        "faults": args.faults,
        "launch_s": round(launch_s, 2),
        "wall_s": round(time.time() - wall_start, 2),
        "fleet_windows": [
            {"label": w.label, "start_s": round(w.start - t0, 2), "end_s": round(w.end - t0, 2)}
            for w in fleet_windows
        ],
        "request_log_dropped": request_log["dropped"],
        "load": {**load.summary(), "cpu_before_pct": baseline},
        "deployments": results,
    }


async def launch(
    emu: EmulatorServer, args: argparse.Namespace, index: int, workdir: Path
) -> Deployment:
    mode = MODES[index % len(MODES)]
    condition = condition_for(index) if args.faults else CONDITIONS[0]
    events = workdir / f"{index:04d}-{mode.name}.jsonl"
    env = {
        **BASE_ENV,
        **mode.env,
        "FLEET_MODE": mode.name,
        "FLEET_EVENTS": str(events),
        "PYTHONPATH": str(ROOT),
    }
    launched = time.time()
    request_id = await emu.deploy(
        app="fleet-broken" if mode.name == "broken_stdout" else "fleet",
        environment_variables=[
            {"key": key, "value": value, "is_hidden": False} for key, value in env.items()
        ],
    )
    deployment = Deployment(index, mode, condition, request_id, events, launched)
    if condition.active:
        # When the stop would be due if nothing took time to start: the real due time comes a
        # start-up later (0.5-3 s, with the load), so the stop meets the fault inside it.
        starts_in = max(0.0, launched + mode.nominal - time.time())
        deployment.windows.append(
            await add_window(
                emu,
                label=condition.name,
                status=condition.status,
                retry_after=condition.retry_after,
                delay=condition.delay(args),
                starts_in=starts_in,
                duration=condition.length(args),
                request_id=request_id,
            )
        )
    return deployment


async def wait_terminated(emu: EmulatorServer, request_id: str, deadline: float) -> float | None:
    """When the deployment terminated (wall clock), or None if it had not by `deadline`.

    One deployment at a time: a single connection, whatever the size of the fleet."""
    while (left := deadline - time.time()) > 0:
        try:
            body = await emu.wait_for_status(
                request_id, "Status.TERMINATED", timeout=min(60.0, left)
            )
        except TimeoutError:
            continue
        removed = datetime.datetime.strptime(body["removal_time"], TIME_FORMAT)
        return removed.replace(tzinfo=datetime.UTC).timestamp()
    return None


async def raw_logs(http: aiohttp.ClientSession, base: str, request_id: str) -> bytes | None:
    async with http.get(f"{base}/_emulator/deployments/{request_id}/logs") as response:
        return await response.read() if response.status == 200 else None


class LoadSampler:
    """Machine CPU and memory once a second: lateness on a saturated machine means little."""

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.used_gib: list[float] = []

    async def run(self) -> None:
        psutil.cpu_percent(interval=None)
        while True:
            await asyncio.sleep(1.0)
            self.cpu.append(psutil.cpu_percent(interval=None))
            self.used_gib.append(psutil.virtual_memory().used / 2**30)

    def summary(self) -> dict[str, float | None]:
        if not self.cpu:
            return {"cpu_mean_pct": None, "cpu_max_pct": None, "mem_peak_gib": None}
        return {
            "cpu_mean_pct": round(sum(self.cpu) / len(self.cpu), 1),
            "cpu_max_pct": round(max(self.cpu), 1),
            "mem_peak_gib": round(max(self.used_gib), 2),
        }


# ---- analysis (pure: data in, figures out) -------------------------------------------------


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def due_time(mode: Mode, events: list[dict[str, Any]]) -> float | None:
    """When the stop was due, from the game's first run (a restart is a failure in itself)."""
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    if not starts:
        return None
    first_run = events[: starts[1]] if len(starts) > 1 else events
    if mode.anchor == "sidecar_start":
        return float(first_run[0]["sidecar_start"]) + mode.timer
    anchors = [e for e in first_run if e["event"] == mode.anchor]
    if not anchors:
        return None
    last = anchors[-1]  # the last heartbeat / disconnect is what the timer runs from
    return float(last.get("sent", last["t"])) + mode.timer


def started_at(entry: dict[str, Any]) -> float:
    return float(entry["timestamp"]) - float(entry["duration_ms"]) / 1000


def injected_refusal(entry: dict[str, Any]) -> bool:
    fault = entry.get("fault")
    return fault is not None and fault.get("status") is not None


def real_accept(entry: dict[str, Any]) -> bool:
    """The platform itself took the stop: a 2xx not answered by an injected fault."""
    return 200 <= entry["status"] < 300 and not injected_refusal(entry)


def overlap(windows: list[Window], start: float, end: float) -> float:
    """Length of the union of `windows` inside [start, end]."""
    spans = sorted((max(w.start, start), min(w.end, end)) for w in windows)
    total, reach = 0.0, start
    for lo, hi in spans:
        lo = max(lo, reach)
        if hi > lo:
            total += hi - lo
            reach = hi
    return total


def retry_rules_allowance(attempts: list[dict[str, Any]]) -> float:
    """The longest the retry rules let the stop take: every call's time at the platform, plus
    after each refusal the longest wait §6/§11 allow (Retry-After floored at 0.5 s, else the
    full backoff step 0.5 s doubling, cap 30 s; jitter only shortens it). The backoff exponent
    counts only the refusals without Retry-After, as the client does."""
    total = 0.0
    unpaced = 0
    for entry in attempts:
        total += float(entry["duration_ms"]) / 1000
        if real_accept(entry):
            break
        retry_after = entry.get("retry_after")
        if retry_after is not None and str(retry_after).isdigit():
            total += max(MIN_RETRY, float(retry_after))
        else:
            unpaced += 1
            total += min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(unpaced - 1, 16))
    return total


def last_backoff(attempts: list[dict[str, Any]]) -> tuple[float | None, bool]:
    """(the longest wait the rules allowed before the last attempt, whether that wait was a
    backoff step that came after attempts paced by Retry-After). The backoff exponent counts
    only the refusals without Retry-After, so a paced storm no longer inflates the step after it;
    the flag says whether there were paced attempts before the step all the same."""
    if len(attempts) < 2:
        return None, False
    previous = attempts[-2]  # the refusal the last wait followed
    retry_after = previous.get("retry_after")
    if retry_after is not None and str(retry_after).isdigit():
        return max(MIN_RETRY, float(retry_after)), False
    unpaced = sum(
        1
        for entry in attempts[:-1]
        if not (entry.get("retry_after") is not None and str(entry["retry_after"]).isdigit())
    )
    step = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(unpaced - 1, 16))
    paced = any(entry.get("retry_after") is not None for entry in attempts[:-2])
    return step, paced


def check_record(mode: Mode, logs: bytes | None) -> tuple[bool, str]:
    """(kept, why not): the stored logs hold the stop record exactly once, on a line of its
    own (SPEC 11), with the expected reason, and end with it (no game output after it but the
    game's answer to SIGTERM); for a game exit, the game's last (unfinished) line precedes it.

    A record found only inside another line (spliced into a game line, or quoted in a log
    warning) is complete but invisible to a one-object-per-line parser: it counts as lost, and
    the reason says where it was."""
    if logs is None:
        return False, "no stored logs (discarded at the stop)"
    lines = logs.split(b"\n")
    records: list[tuple[int, dict[str, Any]]] = []
    embedded: list[bytes] = []
    for number, line in enumerate(lines):
        if b'"sidecar.stop"' not in line:
            continue
        record = _json_object(line)
        if record is not None and record.get("event") == "sidecar.stop":
            records.append((number, record))
        else:
            embedded.append(line)
    if not records:
        if embedded:
            start = embedded[0].find(b"{")
            inside = _json_object(embedded[0][start:]) if start >= 0 else None
            whole = "complete" if inside is not None else "cut"
            return False, (
                f"the record is only inside another line ({whole}), not on a line of its "
                f"own: {embedded[0][: max(start, 0) + 40]!r}..."
            )
        return False, "no sidecar.stop record in the stored logs"
    if len(records) > 1:
        return False, f"{len(records)} sidecar.stop records"
    number, record = records[0]
    if record.get("reason") != mode.reason:
        return False, f"record says {record.get('reason')!r}, expected {mode.reason!r}"
    after = [
        line
        for line in lines[number + 1 :]
        if line.startswith(b"game ") and line.rstrip(b"\r") != SIGTERM_LINE
    ]
    if after:
        return False, f"game output after the record: {after[0][:80]!r}"
    if mode.game_exits and mode.name != "broken_stdout" and LAST_GAME_LINE not in lines[:number]:
        return False, "the game's last line is not on a line of its own before the record"
    return True, ""


def _json_object(text: bytes) -> dict[str, Any] | None:
    """`text` as one JSON object and nothing else (trailing whitespace aside), or None."""
    stripped = text.decode("utf-8", "replace").strip()
    try:
        value, end = json.JSONDecoder().raw_decode(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) and end == len(stripped) else None


def pid_alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def analyse(
    deployment: Deployment,
    terminated_at: float | None,
    all_deletes: list[dict[str, Any]],
    fleet_windows: list[Window],
    logs: bytes | None,
    end: float,
) -> dict[str, Any]:
    mode = deployment.mode
    events = read_events(deployment.events_path)
    due = due_time(mode, events)
    marker = f"/v1/self/stop/{deployment.request_id}/"
    deletes = sorted((d for d in all_deletes if marker in d["path"]), key=started_at)
    accepts = [d for d in deletes if real_accept(d)]
    accepted = accepts[0] if accepts else None
    accepted_at = float(accepted["timestamp"]) if accepted else None
    until_accept = deletes[: deletes.index(accepted) + 1] if accepted else deletes
    windows = [w for w in deployment.windows + fleet_windows if w.refusing]
    # A refusal that says Retry-After: N keeps the platform closed to us for N s more: that
    # wait is the platform's, not the sidecar's (the 0.5 s floor under it is the sidecar's).
    windows += [
        Window(float(d["timestamp"]), float(d["timestamp"]) + float(d["retry_after"]), "ra", True)
        for d in until_accept
        if injected_refusal(d) and str(d.get("retry_after")).isdigit()
    ]
    met_fault = any(d.get("fault") is not None for d in deletes)
    late = outage = beyond = beyond_rules = zombie = None
    if due is not None:
        stop_at = accepted_at if accepted_at is not None else end
        late = stop_at - due
        outage = overlap(windows, due, stop_at)
        if accepted is not None and accepted.get("fault") is not None:
            outage += float(accepted["duration_ms"]) / 1000  # held by a slow platform
        beyond = late - outage
        zombie = max(0.0, beyond)
        if accepted is not None:
            beyond_rules = late - retry_rules_allowance(until_accept)
    recovery_wait = None
    if accepted is not None and due is not None:
        refusals = [d for d in until_accept if injected_refusal(d)]
        back = due
        if refusals:
            last = float(refusals[-1]["timestamp"])
            back = max([due, last] + [w.end for w in windows if w.start <= last <= w.end])
        recovery_wait = round(started_at(accepted) - back, 3)
    last_step, paced_before = last_backoff(until_accept)
    gaps = [
        started_at(later) - float(earlier["timestamp"])
        for earlier, later in itertools.pairwise(until_accept)
    ]
    kept, problem = check_record(mode, logs)
    starts = [e for e in events if e["event"] == "start"]
    orphans = [int(e["pid"]) for e in starts if pid_alive(int(e["pid"]))]
    return {
        "index": deployment.index,
        "mode": mode.name,
        "condition": deployment.condition.name,
        "request_id": deployment.request_id,
        "due": due,
        "first_attempt_s": (
            None if not deletes or due is None else round(started_at(deletes[0]) - due, 3)
        ),
        "accepted_at": accepted_at,
        "late_s": late,
        "outage_s": outage,
        "beyond_s": beyond,
        "beyond_rules_s": beyond_rules,
        "zombie_s": zombie,
        "recovery_wait_s": recovery_wait,
        "last_step_s": last_step,
        "paced_before_last_step": paced_before,
        "deletes": len(deletes),
        "refused": sum(1 for d in deletes if injected_refusal(d)),
        "accepted": len(accepts),
        "after_accept": len(deletes) - len(until_accept) if accepted else 0,
        "met_fault": met_fault,
        "statuses": [d["status"] for d in deletes],
        "min_retry_gap_s": round(min(gaps), 3) if gaps else None,
        "terminated": terminated_at is not None,
        "terminated_after_accept_s": (
            None
            if terminated_at is None or accepted_at is None
            else round(terminated_at - accepted_at, 3)
        ),
        "runs": len(starts),
        "orphan_game_pids": orphans,
        "record_kept": kept,
        "record_problem": problem,
    }


def _worst(values: list[float]) -> float | None:
    return round(max(values), 3) if values else None


def summarise_group(name: str, group: list[dict[str, Any]]) -> dict[str, Any]:
    def values(key: str) -> list[float]:
        return [d[key] for d in group if d[key] is not None]

    zombie_s = sum(values("zombie_s"))
    return {
        "group": name,
        "n": len(group),
        "met_fault": sum(1 for d in group if d["met_fault"]),
        "worst_first_attempt_s": _worst(values("first_attempt_s")),
        "worst_late_s": _worst(values("late_s")),
        "worst_beyond_s": _worst(values("beyond_s")),
        "worst_beyond_rules_s": _worst(values("beyond_rules_s")),
        "zombie_min_per_1000": round(zombie_s / 60 / len(group) * 1000, 2),
        "deletes_per_stop": round(sum(d["deletes"] for d in group) / len(group), 2),
        "max_accepted": max(d["accepted"] for d in group),
        "after_accept": sum(d["after_accept"] for d in group),
        "records_lost": sum(1 for d in group if not d["record_kept"]),
        "min_retry_gap_s": round(min(gaps), 3) if (gaps := values("min_retry_gap_s")) else None,
        "worst_terminate_s": _worst(values("terminated_after_accept_s")),
        "restarts": sum(max(0, d["runs"] - 1) for d in group),
        "orphans": sum(len(d["orphan_game_pids"]) for d in group),
        "not_terminated": sum(1 for d in group if not d["terminated"]),
    }


# What each kind of finding means, in the order the report lists them.
FINDING_KINDS = {
    "late_backoff": "late beyond window + outage, but within the retry rules + 1 s: after the "
    "platform came back, the next attempt waited out the retry rules' backoff step (0.5 s "
    "doubling, cap 30 s, equal jitter: after the n-th failed attempt the wait is between half "
    "and all of 0.5 * 2^(n-1) s). An outage of T s leaves "
    "the step near T, so the stop can come up to ~T s (at most 30 s) after the platform is "
    "back; meeting +1 s would need retries at least once a second through an outage",
    "late_sidecar": "late beyond window + outage AND beyond the retry rules + 1 s: the sidecar "
    "itself was slow",
    "never_accepted": "stop never accepted",
    "no_due": "no due time (the game never got that far)",
    "duplicate": "more than one accepted stop",
    "record_lost": "record lost",
    "retry_storm": "a retry sooner than 0.5 s after the previous answer",
    "restarted": "restarted by the platform (the sidecar exited without stopping it)",
    "orphan": "game still running after the deployment ended",
    "not_terminated": "deployment never terminated",
}


def findings_of(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, text) for every target this deployment missed."""
    where = f"{d['mode']}/{d['condition']} #{d['index']} ({d['request_id']})"
    found = []
    if d["due"] is None:
        found.append(("no_due", where))
    elif d["accepted_at"] is None:
        found.append(("never_accepted", f"{where}: DELETE answers {d['statuses']}"))
    elif d["beyond_s"] > LATE_TARGET:
        kind = "late_backoff" if d["beyond_rules_s"] <= LATE_TARGET else "late_sidecar"
        found.append(
            (
                kind,
                f"{where}: accepted {d['late_s']:.2f} s after due, {d['beyond_s']:.2f} s beyond "
                f"window + outage ({d['outage_s']:.2f} s); the accepting attempt came "
                f"{d['recovery_wait_s']:.2f} s after the platform was back; "
                f"{d['beyond_rules_s']:+.2f} s against the retry rules; answers {d['statuses']}",
            )
        )
    if d["accepted"] > 1:
        found.append(("duplicate", f"{where}: {d['accepted']} accepted, {d['statuses']}"))
    if not d["record_kept"]:
        found.append(("record_lost", f"{where}: {d['record_problem']}"))
    if d["min_retry_gap_s"] is not None and d["min_retry_gap_s"] < MIN_RETRY - 0.01:
        found.append(("retry_storm", f"{where}: {d['min_retry_gap_s']:.3f} s"))
    if d["runs"] > 1:
        found.append(("restarted", f"{where}: {d['runs'] - 1} time(s)"))
    if d["orphan_game_pids"]:
        found.append(("orphan", f"{where}: pids {d['orphan_game_pids']}"))
    if not d["terminated"]:
        found.append(("not_terminated", where))
    return found


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    deployments = result["deployments"]
    by_mode = [
        summarise_group(mode.name, group)
        for mode in MODES
        if (group := [d for d in deployments if d["mode"] == mode.name])
    ]
    by_condition = [
        summarise_group(condition.name, group)
        for condition in CONDITIONS
        if (group := [d for d in deployments if d["condition"] == condition.name])
    ]
    total = summarise_group("all", deployments)
    findings: dict[str, list[str]] = {}
    for d in deployments:
        for kind, text in findings_of(d):
            findings.setdefault(kind, []).append(text)
    return {
        "by_mode": by_mode,
        "by_condition": by_condition,
        "total": total,
        "findings": {kind: findings[kind] for kind in FINDING_KINDS if kind in findings},
        "ok": not findings,
    }


# ---- output ---------------------------------------------------------------------------------

COLUMNS = [
    ("group", "mode"),
    ("n", "n"),
    ("met_fault", "met a fault"),
    ("worst_first_attempt_s", "worst first DELETE after due s"),
    ("worst_late_s", "worst late s"),
    ("worst_beyond_s", "worst beyond window + outage s"),
    ("worst_beyond_rules_s", "worst beyond retry rules s"),
    ("zombie_min_per_1000", "zombie-min / 1000"),
    ("deletes_per_stop", "DELETEs / stop"),
    ("max_accepted", "max accepted"),
    ("after_accept", "DELETEs after accept"),
    ("records_lost", "records lost"),
    ("min_retry_gap_s", "min retry gap s"),
    ("worst_terminate_s", "worst accept to terminated s"),
    ("restarts", "restarts"),
    ("orphans", "orphans"),
    ("not_terminated", "not terminated"),
]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict[str, Any]], first: str = "mode") -> str:
    headers = [first if key == "group" else title for key, title in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(key, row[key]) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def modes_table() -> str:
    lines = ["| mode | stop reason | stop due |", "|---|---|---|"]
    lines += [f"| {m.name} | `{m.reason}` | {m.rule} |" for m in MODES]
    return "\n".join(lines)


def conditions_table(args: argparse.Namespace) -> str:
    lines = ["| condition | the deployment's own self-stop fault |", "|---|---|"]
    lines += [f"| {c.name} | {c.describe(args)} |" for c in CONDITIONS]
    return "\n".join(lines)


DEFINITIONS = (
    "*first DELETE after due* = when the sidecar's first self-stop call reached the platform, "
    "minus when the stop was due: the sidecar's own reaction, whatever the platform does. "
    "*late* = when the platform accepted the stop (the first real 2xx in the emulator's "
    "request log) minus when it was due. *outage* = the time, inside [due, accepted], that a "
    "refusing fault (503/429) applied to that deployment (its own and the fleet-wide one) or "
    "that the platform asked it to wait (the Retry-After of each refusal), plus the time a slow "
    "platform held the accepting call. *beyond window + outage* = late - "
    f"outage; target <= {LATE_TARGET:g} s. *beyond retry rules* = late minus the longest the "
    "retry rules allow (each call's time at the platform, plus after each refusal its "
    "Retry-After floored at 0.5 s, else the full backoff step 0.5 s doubling, cap 30 s): over 0 "
    "means the sidecar waited longer than the retry rules let it. *zombie-min / 1000* = minutes "
    "beyond window + outage, summed, per 1000 matches (a stop never accepted counts until the "
    "end of the run). *max accepted* = the most real 2xx answers one deployment got (target "
    "<= 1); *DELETEs after accept* = calls that still reached the platform after it had "
    "accepted. *records lost* = stored logs without the `sidecar.stop` record exactly once, on "
    "a line of its own, with the expected reason and no game output after it (the game's "
    "answer to SIGTERM excepted). *min retry gap* = the shortest time between an answer and the "
    "next attempt (the retry rules' floor: >= 0.5 s). *accept to terminated* = from the "
    "accepted stop until "
    "the emulator had the process gone (SIGTERM, the sidecar's SIDECAR_TERM_GRACE of 2 s for a "
    "game that ignores it; the platform would SIGKILL at 5 s)."
)


def report(
    result: dict[str, Any],
    summary: dict[str, Any],
    args: argparse.Namespace,
    shown_per_kind: int = 8,
) -> str:
    load = result["load"]
    windows = "; ".join(
        f"{w['label']} from {w['start_s']:g} s to {w['end_s']:g} s" for w in result["fleet_windows"]
    )
    misses = sum(len(texts) for texts in summary["findings"].values())
    verdict = "met" if summary["ok"] else f"missed ({misses} findings)"
    lines = [
        f"{result['count']} sidecars in run mode launched at {result['rate']:g}/s "
        f"({result['launch_s']} s), whole run {result['wall_s']} s; machine CPU "
        f"{load['cpu_mean_pct']} % mean, {load['cpu_max_pct']} % max during the run "
        f"({load['cpu_before_pct']} % just before it, from other work); memory peak "
        f"{load['mem_peak_gib']} GiB.",
        "",
        *machine_lines(),
        "",
        "Failure modes (round-robin) and how *stop due* is computed (times the game took just "
        "before its call, so a due time is never later than the sidecar's own):",
        "",
        modes_table(),
        "",
        "Platform conditions (one per deployment, rotating so every mode meets each; the fault "
        "starts when the stop would be due if the sidecar and the game took no time to start, "
        "so the stop meets it a start-up time, 0.5-3 s, into it):"
        if result["faults"]
        else "Platform faults: none (`--no-faults`).",
        "",
    ]
    if result["faults"]:
        lines += [conditions_table(args), ""]
        lines += [f"Fleet-wide: {windows or 'none'} (seconds from the first launch).", ""]
    lines += [
        DEFINITIONS,
        "",
        markdown_table(summary["by_mode"] + [summary["total"]]),
        "",
    ]
    if result["faults"]:
        lines += [
            "By platform condition:",
            "",
            markdown_table(summary["by_condition"], "condition"),
        ]
        lines.append("")
    if result.get("request_log_dropped"):
        lines += [f"Warning: the request log dropped {result['request_log_dropped']} entries.", ""]
    lines.append(
        f"Target (every stop accepted within its window + {LATE_TARGET:g} s + outage, at most "
        f"one accepted stop each, no record lost, no game left running): **{verdict}**."
    )
    for kind, texts in summary["findings"].items():
        lines += ["", f"{len(texts)} x {FINDING_KINDS[kind]}:", ""]
        if kind == "late_backoff":
            lines += [backoff_reading(result["deployments"]), ""]
        lines += [f"* {text}" for text in texts[:shown_per_kind]]
        if len(texts) > shown_per_kind:
            lines.append(f"* ... and {len(texts) - shown_per_kind} more (see `--json`)")
    return "\n".join(lines) + "\n"


def backoff_reading(deployments: list[dict[str, Any]]) -> str:
    late = [
        d
        for d in deployments
        if d["beyond_s"] is not None
        and d["beyond_s"] > LATE_TARGET
        and d["beyond_rules_s"] is not None
        and d["beyond_rules_s"] <= LATE_TARGET
    ]
    steps = [d["last_step_s"] for d in late if d["last_step_s"] is not None]
    paced = [d for d in late if d["paced_before_last_step"]]
    return (
        f"In these {len(late)} stops the last wait allowed before the accepting attempt was a "
        f"backoff step of {min(steps, default=0):g} to {max(steps, default=0):g} s (median "
        f"{sorted(steps)[len(steps) // 2] if steps else 0:g} s); in {len(paced)} of them that "
        "step followed attempts paced by Retry-After (a 429 storm, or an outage answering "
        "Retry-After), which do not grow the backoff exponent."
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=100, help="sidecars")
    parser.add_argument("--rate", type=float, default=1.5, help="launches per second")
    parser.add_argument("--outage", type=float, default=10.0, help="outage length, seconds")
    parser.add_argument("--storm", type=float, default=6.0, help="429 storm length, seconds")
    parser.add_argument("--slow", type=float, default=3.0, help="slow answers' hold, seconds")
    parser.add_argument(
        "--fleet-outage-at",
        type=float,
        default=None,
        help="start of the fleet-wide outage, seconds after the first launch "
        "(default: 40%% of the launch span; negative: none)",
    )
    parser.add_argument(
        "--no-faults",
        dest="faults",
        action="store_false",
        help="no platform faults (faults: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=150.0, help="seconds after the last launch to give up"
    )
    parser.add_argument("--quick", action="store_true", help="18 deployments (2 per mode)")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "bench-results" / "fleet-sim.json",
        help="where every deployment's figures go",
    )
    parser.add_argument("--doc", type=Path, help="write the 'Fleet simulation' section here")
    parser.add_argument("--logs-dir", type=Path, help="keep every deployment's stored logs here")
    args = parser.parse_args(argv)
    if args.logs_dir is not None:
        args.logs_dir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.count = 2 * len(MODES)
        args.rate = max(args.rate, 2.0)
    if args.count <= 0 or args.rate <= 0 or args.timeout <= 0:
        parser.error("--count, --rate and --timeout must be positive")
    if min(args.outage, args.storm, args.slow) <= 0 or not math.isfinite(args.outage):
        parser.error("--outage, --storm and --slow must be positive")
    if args.fleet_outage_at is None:
        args.fleet_outage_at = 0.4 * args.count / args.rate + STARTUP_GUESS + 4.0
    elif args.fleet_outage_at < 0:
        args.fleet_outage_at = None
    return args


def raise_fd_limit() -> None:
    """Each deployment holds pipes and connections in this process: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="fleet-sim-") as tmp:
        result = asyncio.run(simulate(args, Path(tmp)))
    summary = summarise(result)
    text = report(result, summary, args)
    print(text, end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**result, "summary": summary}, indent=2) + "\n")
    if args.doc:
        shown = " ".join(["scripts/fleet-sim", *(argv if argv is not None else sys.argv[1:])])
        header = f"`{shown}`\n\n"
        write_section(args.doc, "Fleet simulation", header + text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
