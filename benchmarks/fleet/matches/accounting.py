"""The match simulation's accounting, pure (data in, figures out): per match, the stop it got
against the one it had to get, when the platform accepted it against when the match could no
longer be played (zombie time), what became of its result (delivered once, or lost: in the stop
record only), how many attempts the delivery took; then the figures per group and the findings.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from benchmarks.fleet.accounting import (
    json_object,
    pid_alive,
    read_events,
    real_accept,
    started_at,
)
from benchmarks.fleet.faults import Window
from benchmarks.fleet.matches.scenarios import (
    RULES,
    SCENARIOS,
    Timings,
    due_time,
    expected_reason,
    unplayable_since,
)

if TYPE_CHECKING:  # the runner imports this module
    from benchmarks.fleet.matches.runner import MatchDeployment

# The sidecar's own log lines about the delivery (sidecar/result.py).
_RETRIED = re.compile(rb"match result attempt (\d+): ")
_ENDED = re.compile(rb"match result (?:not )?delivered to .*? after (\d+) attempt")
# How long around a sink outage a stop's delivery may meet it: a stop decided up to the grace +
# the result wait + a start-up's worth before the outage still has attempts inside it.
MEETS_BEFORE = 2.0


def stop_records(logs: bytes | None) -> list[dict[str, Any]]:
    """Every `sidecar.stop` record standing on a line of its own."""
    found = []
    for line in (logs or b"").split(b"\n"):
        if b'"sidecar.stop"' in line:
            record = json_object(line)
            if record is not None and record.get("event") == "sidecar.stop":
                found.append(record)
    return found


def delivery_attempts(logs: bytes | None) -> int | None:
    """The attempts the delivery made, from the sidecar's log: the count its last line gives
    (delivered or failed after N), else the retried attempts it logged (the process ended while
    it was still trying; an attempt then in flight is not counted). None: no attempt logged."""
    text = logs or b""
    ended = _ENDED.findall(text)
    if ended:
        return int(ended[-1])
    retried = _RETRIED.findall(text)
    return max(int(n) for n in retried) if retried else None


def sink_condition(due: float | None, windows: list[Window]) -> str:
    """Which result outage the stop's delivery met ("calm": none)."""
    if due is not None:
        for window in windows:
            if window.start - MEETS_BEFORE <= due <= window.end:
                return window.label
    return "calm"


def analyse(
    deployment: MatchDeployment,
    timings: Timings,
    terminated_at: float | None,
    all_deletes: list[dict[str, Any]],
    sink_results: list[dict[str, Any]],
    windows: list[Window],
    logs: bytes | None,
    end: float,
) -> dict[str, Any]:
    scenario, rule = deployment.scenario, deployment.rule
    events = read_events(deployment.events_path)
    reason = expected_reason(scenario, rule)
    due = due_time(reason, timings, events)
    unplayable = unplayable_since(scenario, timings, events)
    marker = f"/v1/self/stop/{deployment.request_id}/"
    deletes = sorted((d for d in all_deletes if marker in d["path"]), key=started_at)
    accepts = [d for d in deletes if real_accept(d)]
    accepted_at = float(accepts[0]["timestamp"]) if accepts else None
    stop_at = accepted_at if accepted_at is not None else end
    records = stop_records(logs)
    record = records[0] if len(records) == 1 else {}
    delivered = [r for r in sink_results if r["body"].get("match_id") == deployment.match_id]
    starts = [e for e in events if e["event"] == "start"]
    match_part = record.get("match") or {}
    return {
        "index": deployment.index,
        "scenario": scenario.name,
        "rule": rule.name,
        "request_id": deployment.request_id,
        "match_id": deployment.match_id,
        "expected_reason": reason,
        "reason": record.get("reason"),
        "records": len(records),
        "due": due,
        "late_s": None if due is None else stop_at - due,
        "zombie_s": None if unplayable is None else max(0.0, stop_at - unplayable),
        "accepted": len(accepts),
        "deletes": len(deletes),
        "sink": sink_condition(due, windows),
        "delivered": len(delivered),
        "replays": sum(int(r.get("replays", 0)) for r in delivered),
        "delivered_result": delivered[0]["body"].get("result") if delivered else None,
        "result_delivery": record.get("result_delivery"),
        "record_result": record.get("match_result"),
        "record_missing": sorted(match_part.get("missing", [])),
        "expected_missing": sorted(
            t for ids in deployment.tickets.values() for t in ids if t not in deployment.arriving
        ),
        "attempts": delivery_attempts(logs),
        "token_leaked": deployment.token.encode() in (logs or b""),
        "terminated": terminated_at is not None,
        "runs": len(starts),
        "orphan_game_pids": [int(e["pid"]) for e in starts if pid_alive(int(e["pid"]))],
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def summarise_group(name: str, group: list[dict[str, Any]], scale: float) -> dict[str, Any]:
    zombie = sum(d["zombie_s"] or 0.0 for d in group)
    late = [d["late_s"] for d in group if d["late_s"] is not None]
    attempts = [d["attempts"] for d in group if d["attempts"] is not None]
    per_1000 = zombie / 60 / len(group) * 1000
    return {
        "group": name,
        "n": len(group),
        "wrong_reason": sum(1 for d in group if d["reason"] != d["expected_reason"]),
        "worst_late_s": round(max(late), 3) if late else None,
        "zombie_min_per_1000": round(per_1000, 1),
        "zombie_min_per_1000_real": round(per_1000 / scale, 1),
        "delivered": sum(1 for d in group if d["delivered"]),
        "lost": sum(1 for d in group if not d["delivered"]),
        "lost_in_record": sum(1 for d in group if not d["delivered"] and d["records"] == 1),
        "attempts_mean": _mean([float(a) for a in attempts]),
        "attempts_max": max(attempts) if attempts else None,
        "max_deliveries": max(d["delivered"] for d in group),
        "replays": sum(d["replays"] for d in group),
        "max_accepted": max(d["accepted"] for d in group),
        "orphans": sum(len(d["orphan_game_pids"]) for d in group),
        "not_terminated": sum(1 for d in group if not d["terminated"]),
        "restarts": sum(max(0, d["runs"] - 1) for d in group),
    }


FINDING_KINDS = {
    "wrong_reason": "stopped for another reason than the one its scenario must cause",
    "no_stop": "no accepted stop",
    "duplicate_stop": "more than one accepted stop",
    "record": "not exactly one sidecar.stop record in the stored logs",
    "missing_tickets": "a no_show record whose missing tickets are not the absent players'",
    "duplicate_result": "more than one delivery kept for one match",
    "wrong_result": "a delivered match_ended result that is not the game's",
    "lost_calm": "a result lost without a receiver outage around its stop",
    "token_leaked": "the result token in the stored logs",
    "restarted": "restarted by the platform (the sidecar exited without stopping it)",
    "orphan": "game still running after the deployment ended",
    "not_terminated": "deployment never terminated",
}


def findings_of(d: dict[str, Any]) -> list[tuple[str, str]]:
    where = f"{d['scenario']}/{d['rule']} #{d['index']} ({d['request_id']})"
    checks = [
        ("wrong_reason", d["reason"] != d["expected_reason"],
         f"{d['reason']!r}, expected {d['expected_reason']!r}"),
        ("no_stop", d["accepted"] == 0, f"{d['deletes']} DELETEs"),
        ("duplicate_stop", d["accepted"] > 1, f"{d['accepted']} accepted"),
        ("record", d["records"] != 1, f"{d['records']} records"),
        ("missing_tickets",
         d["reason"] == "no_show" and d["record_missing"] != d["expected_missing"],
         f"the record's missing {d['record_missing']}, absent {d['expected_missing']}"),
        ("duplicate_result", d["delivered"] > 1, f"{d['delivered']} deliveries"),
        ("wrong_result",
         d["delivered"] == 1 and d["reason"] == "match_ended"
         and d["delivered_result"] != d["record_result"],
         f"{d['delivered_result']!r} vs {d['record_result']!r}"),
        ("lost_calm", not d["delivered"] and d["sink"] == "calm",
         f"result_delivery {d['result_delivery']!r}, {d['attempts']} attempts"),
        ("token_leaked", d["token_leaked"], "token found"),
        ("restarted", d["runs"] > 1, f"{d['runs'] - 1} time(s)"),
        ("orphan", bool(d["orphan_game_pids"]), f"pids {d['orphan_game_pids']}"),
        ("not_terminated", not d["terminated"], "still there at the end of the run"),
    ]  # fmt: skip
    return [(kind, f"{where}: {text}") for kind, failed, text in checks if failed]


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    deployments = result["deployments"]
    scale = float(result["scale"])
    by_match = [
        summarise_group(f"{scenario.name} / {rule.name}", group, scale)
        for scenario in SCENARIOS
        for rule in RULES
        if (
            group := [
                d for d in deployments if d["scenario"] == scenario.name and d["rule"] == rule.name
            ]
        )
    ]
    by_rule = [
        summarise_group(rule.name, group, scale)
        for rule in RULES
        if (group := [d for d in deployments if d["rule"] == rule.name])
    ]
    labels = ["calm", *(w["label"] for w in result["sink_windows"])]
    by_sink = [
        summarise_group(label, group, scale)
        for label in labels
        if (group := [d for d in deployments if d["sink"] == label])
    ]
    findings: dict[str, list[str]] = {}
    for d in deployments:
        for kind, text in findings_of(d):
            findings.setdefault(kind, []).append(text)
    return {
        "by_match": by_match,
        "by_rule": by_rule,
        "by_sink": by_sink,
        "total": summarise_group("all", deployments, scale),
        "findings": {kind: findings[kind] for kind in FINDING_KINDS if kind in findings},
        "ok": not findings,
    }
