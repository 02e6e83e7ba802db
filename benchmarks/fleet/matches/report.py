"""The match simulation's report: what was played, what each figure means, the tables (per
scenario and configuration, per configuration, per result-receiver condition) and the
findings, as printed and as written into docs/reliability.md."""

from __future__ import annotations

from typing import Any

from benchmarks.fleet.matches.accounting import FINDING_KINDS
from benchmarks.fleet.matches.scenarios import RULES, SCENARIOS, Timings, expected_reason
from benchmarks.reliability_doc import machine_lines

STOP_COLUMNS = [
    ("group", "match / sidecar"),
    ("n", "n"),
    ("wrong_reason", "wrong reason"),
    ("worst_late_s", "worst stop after due s"),
    ("zombie_min_per_1000", "zombie-min / 1000 (simulated)"),
    ("zombie_min_per_1000_real", "zombie-min / 1000 (real timer lengths)"),
    ("max_accepted", "max accepted stops"),
    ("restarts", "restarts"),
    ("orphans", "orphans"),
    ("not_terminated", "not terminated"),
]

RESULT_COLUMNS = [
    ("group", "result receiver"),
    ("n", "n"),
    ("delivered", "results delivered"),
    ("lost", "lost"),
    ("lost_in_record", "lost but in the stop record"),
    ("attempts_mean", "attempts / result"),
    ("attempts_max", "max attempts"),
    ("max_deliveries", "max kept per match"),
    ("replays", "repeats answered from the key"),
    ("zombie_min_per_1000", "zombie-min / 1000 (simulated)"),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[key]) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def scenarios_table() -> str:
    lines = ["| match | who comes | stop with the no-show rule | stop with player timers only |"]
    lines.append("|---|---|---|---|")
    for s in SCENARIOS:
        with_rule, without = (f"`{expected_reason(s, r)}`" for r in RULES)
        lines.append(f"| {s.name} | {s.describe} | {with_rule} | {without} |")
    return "\n".join(lines)


def timings_line(timings: Timings) -> str:
    names = [
        ("no_show", "SIDECAR_NO_SHOW_TIMEOUT"),
        ("first_player", "SIDECAR_FIRST_PLAYER_TIMEOUT"),
        ("empty", "SIDECAR_EMPTY_TIMEOUT"),
        ("grace", "SIDECAR_MATCH_END_GRACE"),
        ("result_wait", "SIDECAR_RESULT_WAIT"),
        ("patience", "the half-empty lobby's patience"),
        ("play", "a played match"),
    ]
    parts = [f"{label} {getattr(timings, n):g} s → {timings.s(n):g} s" for n, label in names]
    return f"Timers at {timings.scale:g} times their real length: " + "; ".join(parts) + "."


def definitions(timings: Timings) -> str:
    return (
        "*stop after due* = when the platform accepted the stop (the first real 2xx in the "
        "emulator's request log) minus when the sidecar's rule made it due (from the game's own "
        "times). *zombie* = billing after the match could no longer be played: from the played "
        "match's end plus the grace the game asked for, or, when players did not all come, from "
        "the end of the matched players' window (ready + the no-show length) whether or not the "
        "sidecar enforces it, until the platform accepted the stop; summed per 1000 matches. "
        f"*(real timer lengths)* divides by the scale ({timings.scale:g}): the timer-made part "
        "is what it would be at the real settings; the sidecar's own latency (well under a "
        "second) is overstated by the same factor. *delivered* = a delivery for the match kept "
        "by the emulator's result sink; *lost* = none (the sidecar ended, after its stop was "
        "accepted, while the receiver was still down); *lost but in the stop record* = the "
        "`sidecar.stop` record in the stored logs still carries the match and its "
        "`match_result`, with `result_delivery` pending or failed. *attempts / result* = the "
        "delivery's attempts as the sidecar logged them. *repeats answered from the key* = "
        "attempts that reached the sink after it had kept the delivery, answered from the "
        "`Idempotency-Key` (a delivery is never kept twice)."
    )


def report(result: dict[str, Any], summary: dict[str, Any], timings: Timings) -> str:
    load = result["load"]
    windows = "; ".join(
        f"{w['label']}: 503 from {w['start_s']:g} s to {w['end_s']:g} s"
        for w in result["sink_windows"]
    )
    misses = sum(len(texts) for texts in summary["findings"].values())
    verdict = "met" if summary["ok"] else f"missed ({misses} findings)"
    lines = [
        f"{result['count']} matchmaker deployments (real sidecars in run mode with the match "
        f"game, 2 teams of 2 tickets each) launched at {result['rate']:g}/s "
        f"({result['launch_s']} s), whole run {result['wall_s']} s; machine CPU "
        f"{load['cpu_mean_pct']} % mean, {load['cpu_max_pct']} % max during the run "
        f"({load['cpu_before_pct']} % just before it, from other work); memory peak "
        f"{load['mem_peak_gib']} GiB.",
        "",
        *machine_lines(),
        "",
        timings_line(timings),
        "",
        "Matches (round-robin; each under both sidecar configurations, alternating blocks):",
        "",
        scenarios_table(),
        "",
        "Result receiver (the emulator's result sink, every sidecar's `SIDECAR_RESULT_URL`): "
        + (f"fleet-wide outages, {windows} (seconds from the first launch)." if windows else "up."),
        "",
        definitions(timings),
        "",
        table(summary["by_match"] + summary["by_rule"] + [summary["total"]], STOP_COLUMNS),
        "",
        "Results, by what the receiver did around each stop:",
        "",
        table(summary["by_sink"] + [summary["total"]], RESULT_COLUMNS),
        "",
    ]
    for key, what in (("request_log_dropped", "request log"), ("sink_dropped", "result sink")):
        if result.get(key):
            lines += [f"Warning: the {what} dropped {result[key]} entries.", ""]
    lines.append(
        "Target (the stop each scenario must cause, exactly one accepted stop and one stop "
        "record each, at most one delivery kept per match, no result lost without an outage, "
        f"no token in any log, no game left running): **{verdict}**."
    )
    for kind, texts in summary["findings"].items():
        lines += ["", f"{len(texts)} x {FINDING_KINDS[kind]}:", ""]
        lines += [f"* {text}" for text in texts[:8]]
        if len(texts) > 8:
            lines.append(f"* ... and {len(texts) - 8} more (see `--json`)")
    return "\n".join(lines) + "\n"
