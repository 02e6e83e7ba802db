"""The accounting, pure (data in, figures out): per deployment, when its stop was due, when the
platform accepted it, the time the platform made it lose, what the retry rules allowed, whether
its stored logs kept the stop record; then the figures per group and the findings."""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from benchmarks.fleet.faults import CONDITIONS, Window
from benchmarks.fleet.scenarios import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    LAST_GAME_LINE,
    LATE_TARGET,
    MIN_RETRY,
    MODES,
    SIGTERM_LINE,
    Mode,
)

if TYPE_CHECKING:  # the run's record of a deployment; the runner imports this module
    from benchmarks.fleet.runner import Deployment


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
        record = json_object(line)
        if record is not None and record.get("event") == "sidecar.stop":
            records.append((number, record))
        else:
            embedded.append(line)
    if not records:
        if embedded:
            start = embedded[0].find(b"{")
            inside = json_object(embedded[0][start:]) if start >= 0 else None
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


def json_object(text: bytes) -> dict[str, Any] | None:
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
