"""The report: the markdown tables of the run (per failure mode, per platform condition), what
each figure means, and the findings, as printed and as written into docs/reliability.md."""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.fleet.accounting import FINDING_KINDS
from benchmarks.fleet.faults import CONDITIONS
from benchmarks.fleet.scenarios import LATE_TARGET, MODES
from benchmarks.reliability_doc import machine_lines

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
