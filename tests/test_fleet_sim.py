"""The fleet simulation's accounting (benchmarks/fleet/): the billing-safety figure is only
as good as the arithmetic behind it, so its pure parts are checked on made-up histories."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "benchmarks" / "fleet").is_dir():  # an sdist ships tests/ but not benchmarks/
    pytest.skip("benchmarks/ is not in this tree", allow_module_level=True)
sys.path.insert(0, str(ROOT))

from benchmarks.fleet import accounting as fleet_sim  # noqa: E402  (after sys.path above)
from benchmarks.fleet.faults import Window  # noqa: E402
from benchmarks.fleet.scenarios import LAST_GAME_LINE, SIGTERM_LINE  # noqa: E402

MODES = {mode.name: mode for mode in fleet_sim.MODES}


def call(status: int, at: float, took: float = 0.01, **extra: Any) -> dict[str, Any]:
    """A request-log entry answered at `at` after `took` seconds."""
    return {"status": status, "timestamp": at, "duration_ms": took * 1000, **extra}


def refused(status: int, at: float, retry_after: str | None = None) -> dict[str, Any]:
    fault = {"status": status, "retry_after": retry_after}
    return call(status, at, retry_after=retry_after, fault=fault)


def stop_record(reason: str) -> bytes:
    return json.dumps({"event": "sidecar.stop", "reason": reason}).encode()


class TestOverlap:
    def test_union_of_windows_inside_the_span(self) -> None:
        """Overlapping outages count once, and only inside [due, accepted]."""
        windows = [Window(0, 10, "a", True), Window(5, 15, "b", True), Window(20, 30, "c", True)]
        assert fleet_sim.overlap(windows, 2, 25) == pytest.approx(13 + 5)

    def test_no_window_no_outage(self) -> None:
        """A stop that met no fault is credited nothing."""
        assert fleet_sim.overlap([], 0, 100) == 0


class TestRetryRules:
    def test_backoff_steps_and_floored_retry_after(self) -> None:
        """After a refusal without Retry-After the full backoff step is allowed (0.5 s, then
        1 s); `Retry-After: 0` is floored at 0.5 s; every call's own time counts."""
        attempts = [
            refused(503, 1.0),
            refused(503, 2.0),
            refused(429, 3.0, retry_after="0"),
            call(200, 4.0),
        ]
        assert fleet_sim.retry_rules_allowance(attempts) == pytest.approx(
            4 * 0.01 + 0.5 + 1.0 + 0.5
        )

    def test_accepted_at_once_allows_only_the_call(self) -> None:
        """A stop accepted by its first DELETE is allowed that call's time alone."""
        assert fleet_sim.retry_rules_allowance([call(200, 1.0, took=0.2)]) == pytest.approx(0.2)

    def test_a_slow_accepted_call_is_a_real_accept(self) -> None:
        """A call only delayed by a fault and then processed is the platform's acceptance."""
        slow = call(200, 5.0, took=3.0, fault={"status": None, "delay_seconds": 3.0})
        assert fleet_sim.real_accept(slow)
        assert not fleet_sim.real_accept(refused(503, 5.0))


class TestLastBackoff:
    def test_storm_attempts_do_not_grow_the_step_after_them(self) -> None:
        """Two 429s paced by Retry-After: 0, then a 503 without one: the wait before the 4th
        attempt is the first backoff step (0.5 s; paced refusals do not count), flagged as
        following paced attempts."""
        attempts = [
            refused(429, 1.0, retry_after="0"),
            refused(429, 1.5, retry_after="0"),
            refused(503, 2.0),
            call(200, 4.0),
        ]
        assert fleet_sim.last_backoff(attempts) == (0.5, True)

    def test_retry_after_sets_the_wait(self) -> None:
        """After a refusal carrying Retry-After: 1 the allowed wait is 1 s, not a step."""
        assert fleet_sim.last_backoff([refused(429, 1.0, "1"), call(200, 2.0)]) == (1.0, False)
        assert fleet_sim.last_backoff([call(200, 2.0)]) == (None, False)


class TestDueTime:
    def test_timer_from_sidecar_start(self) -> None:
        """never_ready is due its ready timeout after the sidecar started."""
        events = [{"event": "start", "t": 101.0, "pid": 1, "sidecar_start": 100.0}]
        assert fleet_sim.due_time(MODES["never_ready"], events) == pytest.approx(108.0)

    def test_last_heartbeat_and_first_run_only(self) -> None:
        """hang is due after the last heartbeat of its first run; a restart does not move it."""
        events = [
            {"event": "start", "t": 0.0, "pid": 1, "sidecar_start": 0.0},
            {"event": "heartbeat", "t": 1.1, "sent": 1.0},
            {"event": "heartbeat", "t": 1.6, "sent": 1.5},
            {"event": "start", "t": 30.0, "pid": 2, "sidecar_start": 29.0},
            {"event": "heartbeat", "t": 31.1, "sent": 31.0},
        ]
        assert fleet_sim.due_time(MODES["hang"], events) == pytest.approx(4.5)

    def test_no_anchor_no_due(self) -> None:
        """A game that never got to its event has no due time (reported, not guessed)."""
        events = [{"event": "start", "t": 0.0, "pid": 1, "sidecar_start": 0.0}]
        assert fleet_sim.due_time(MODES["normal"], events) is None


class TestStoredRecord:
    def test_record_after_the_games_last_line(self) -> None:
        """A crash's logs: the game's unfinished line ended, then the record, then SIGTERM
        noise from the sidecar only."""
        logs = b"\n".join(
            [
                b"game tick 1",
                LAST_GAME_LINE,
                stop_record("game_crashed"),
                b"2026-01-01T00:00:00.000Z INFO    sidecar: self-stop accepted",
                b"",
            ]
        )
        assert fleet_sim.check_record(MODES["crash"], logs) == (True, "")

    def test_record_spliced_into_a_line_is_lost(self) -> None:
        """A record in the middle of the game's line is missed by line parsers: lost."""
        logs = b"game tick 1\ngame fatal: assert" + stop_record("game_crashed") + b"\n"
        kept, why = fleet_sim.check_record(MODES["crash"], logs)
        assert not kept
        assert "own" in why

    def test_record_quoted_in_a_log_line_is_lost(self) -> None:
        """A record only quoted inside a stderr warning is complete but not on a line of its
        own: lost, and the reason says where it was."""
        warning = b"2026-01-01T00:00:00Z WARNING sidecar.output: cannot write; record: "
        logs = warning + stop_record("game_crashed") + b"\n"
        kept, why = fleet_sim.check_record(MODES["broken_stdout"], logs)
        assert not kept
        assert "complete" in why
        assert "WARNING sidecar.output" in why

    def test_game_output_after_the_record(self) -> None:
        """The logs must end with the record: game output after it (but its SIGTERM answer)
        means the record does not explain the end."""
        ok = b"\n".join([stop_record("empty_timeout"), SIGTERM_LINE, b""])
        assert fleet_sim.check_record(MODES["empty"], ok)[0]
        late = b"\n".join([stop_record("empty_timeout"), b"game still playing", b""])
        assert not fleet_sim.check_record(MODES["empty"], late)[0]

    @pytest.mark.parametrize(
        "logs",
        [
            None,
            b"game tick 1\n",
            stop_record("match_ended") + b"\n" + stop_record("match_ended") + b"\n",
            stop_record("unhealthy") + b"\n",
        ],
        ids=["discarded", "missing", "twice", "wrong-reason"],
    )
    def test_lost_records(self, logs: bytes | None) -> None:
        """Discarded logs, no record, two records or the wrong reason all count as lost."""
        assert not fleet_sim.check_record(MODES["normal"], logs)[0]


# ---- the match simulation (benchmarks/fleet/matches/) ----------------------------------------

from benchmarks.fleet.matches import accounting as matches  # noqa: E402
from benchmarks.fleet.matches import scenarios as match_scenarios  # noqa: E402
from benchmarks.fleet.matches.main import main as run_matches  # noqa: E402

TIMINGS = match_scenarios.Timings(scale=0.1)
SCENARIOS = {s.name: s for s in match_scenarios.SCENARIOS}
RULE_ON, RULE_OFF = match_scenarios.RULES


class TestMatchScenarios:
    def test_every_block_plays_every_match_both_ways(self) -> None:
        """Eight launches in a row hold every scenario under both configurations, so the two
        meet the same load and the same outages."""
        seen = {(s.name, r.name) for s, r in map(match_scenarios.assignment, range(8))}
        assert len(seen) == 8

    def test_who_comes_and_what_is_playable(self) -> None:
        tickets = match_scenarios.tickets_of(3)
        assert tickets == {"blue": ["m0003blue0", "m0003blue1"], "red": ["m0003red0", "m0003red1"]}
        assert SCENARIOS["one_missing"].arriving(tickets) == [
            "m0003blue0",
            "m0003blue1",
            "m0003red1",
        ]
        assert SCENARIOS["team_missing"].arriving(tickets) == ["m0003blue0", "m0003blue1"]
        assert SCENARIOS["nobody"].arriving(tickets) == []
        assert SCENARIOS["one_missing"].playable
        assert not SCENARIOS["team_missing"].playable

    def test_zombie_anchor_is_the_players_window_with_or_without_the_rule(self) -> None:
        """A match whose team never came is unplayable from ready + the no-show length (60 s
        real, 6 s here), whatever the sidecar enforces; its stop is due by the rule in force."""
        events = [{"event": "ready", "t": 100.2, "sent": 100.0}]
        nobody = SCENARIOS["nobody"]
        assert match_scenarios.unplayable_since(nobody, TIMINGS, events) == pytest.approx(106.0)
        reason_off = match_scenarios.expected_reason(nobody, RULE_OFF)
        assert reason_off == "first_player_timeout"
        assert match_scenarios.due_time(reason_off, TIMINGS, events) == pytest.approx(112.0)
        played = [{"event": "match_end", "t": 50.1, "sent": 50.0}]
        full = SCENARIOS["full"]
        assert match_scenarios.unplayable_since(full, TIMINGS, played) == pytest.approx(50.5)

    def test_settings_follow_the_rule(self) -> None:
        on = match_scenarios.sidecar_env(TIMINGS, RULE_ON, "http://127.0.0.1:1/r", "tok")
        off = match_scenarios.sidecar_env(TIMINGS, RULE_OFF, "http://127.0.0.1:1/r", "tok")
        assert (on["SIDECAR_NO_SHOW_TIMEOUT"], on["SIDECAR_MATCH_QUORUM"]) == ("6s", "teams")
        assert off["SIDECAR_NO_SHOW_TIMEOUT"] == "0"
        assert on["SIDECAR_FIRST_PLAYER_TIMEOUT"] == off["SIDECAR_FIRST_PLAYER_TIMEOUT"] == "12s"


class TestMatchAccounting:
    def test_attempts_from_the_sidecar_log(self) -> None:
        """The count the last delivery line gives; else the retried attempts logged before the
        process ended; None when the delivery never logged an attempt."""
        retried = (
            b"2026-12-07T20:53:53.881Z WARNING sidecar: match result attempt 1: HTTP 503; "
            b"retrying in 0.50s\n"
            b"2026-12-07T20:53:54.394Z WARNING sidecar: match result attempt 2: HTTP 503; "
            b"retrying in 0.83s\n"
        )
        delivered = retried + (
            b"2026-12-07T20:53:55.395Z INFO    sidecar: match result delivered to "
            b"http://127.0.0.1:1/_emulator/results (HTTP 201 after 3 attempts)\n"
        )
        failed = b"ERROR sidecar: match result not delivered to http://x/ after 4 attempts: 404\n"
        assert matches.delivery_attempts(delivered) == 3
        assert matches.delivery_attempts(retried) == 2
        assert matches.delivery_attempts(failed) == 4
        assert matches.delivery_attempts(b"game tick\n") is None
        assert matches.delivery_attempts(None) is None

    def test_stop_records_on_their_own_lines_only(self) -> None:
        record = json.dumps({"event": "sidecar.stop", "reason": "no_show"}).encode()
        logs = b"game x\n" + record + b"\nWARNING quoted: " + record + b"\n"
        assert [r["reason"] for r in matches.stop_records(logs)] == ["no_show"]

    def test_sink_condition(self) -> None:
        """A stop due shortly before an outage still meets it (its grace and result wait
        overlap it); one after it is calm."""
        windows = [Window(100.0, 108.0, "long", True)]
        assert matches.sink_condition(99.0, windows) == "long"
        assert matches.sink_condition(109.0, windows) == "calm"
        assert matches.sink_condition(None, windows) == "calm"

    def base(self, **changes: Any) -> dict[str, Any]:
        match = {
            "index": 0, "scenario": "nobody", "rule": RULE_ON.name, "request_id": "r1",
            "expected_reason": "no_show", "reason": "no_show", "records": 1, "accepted": 1,
            "deletes": 1, "record_missing": ["a", "b"], "expected_missing": ["a", "b"],
            "delivered": 1,
            "delivered_result": None, "record_result": None, "sink": "calm",
            "result_delivery": "delivered", "attempts": 1, "token_leaked": False, "runs": 1,
            "orphan_game_pids": [], "terminated": True, "late_s": 0.1, "zombie_s": 0.1,
            "replays": 0,
        }  # fmt: skip
        return {**match, **changes}

    def test_a_clean_match_has_no_finding(self) -> None:
        assert matches.findings_of(self.base()) == []

    @pytest.mark.parametrize(
        ("changes", "kind"),
        [
            ({"delivered": 0, "result_delivery": "pending"}, "lost_calm"),
            ({"delivered": 2}, "duplicate_result"),
            ({"accepted": 2}, "duplicate_stop"),
            ({"reason": "first_player_timeout"}, "wrong_reason"),
            ({"record_missing": ["a", "c"]}, "missing_tickets"),
            ({"token_leaked": True}, "token_leaked"),
            ({"orphan_game_pids": [42]}, "orphan"),
        ],
    )
    def test_each_miss_is_a_finding(self, changes: dict[str, Any], kind: str) -> None:
        assert [k for k, _ in matches.findings_of(self.base(**changes))] == [kind]

    def test_a_result_lost_in_an_outage_is_counted_not_a_finding(self) -> None:
        """The receiver was down past the sidecar's life: lost, but kept in the stop record."""
        lost = self.base(delivered=0, result_delivery="pending", sink="long", attempts=3)
        assert matches.findings_of(lost) == []
        row = matches.summarise_group("long", [lost, self.base()], 0.1)
        assert (row["delivered"], row["lost"], row["lost_in_record"]) == (1, 1, 1)
        assert row["attempts_mean"] == 2.0


def test_a_tiny_fleet_of_matches(tmp_path: Path) -> None:
    """Eight real sidecars against the real emulator and its result sink (every match, both
    ways, timers at 0.05 of their length): each ends in the stop its scenario must cause, once;
    every result is delivered once, at the first attempt; the no-show rule cuts the zombie time
    of the matches that could not be played; no game is left running."""
    out = tmp_path / "matches.json"
    code = run_matches(
        ["--count", "8", "--rate", "4", "--scale", "0.05", "--no-faults", "--timeout", "60",
         "--json", str(out)]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["summary"]["findings"] == {}
    assert code == 0
    deployments = result["deployments"]
    assert len(deployments) == 8
    assert all(d["reason"] == d["expected_reason"] for d in deployments)
    assert all(d["accepted"] == 1 and d["delivered"] == 1 for d in deployments)
    assert all(d["attempts"] == 1 and d["result_delivery"] == "delivered" for d in deployments)
    assert sum(len(d["orphan_game_pids"]) for d in deployments) == 0
    zombie = {(d["scenario"], d["rule"]): d["zombie_s"] for d in deployments}
    for unplayable in ("team_missing", "nobody"):
        # Without the rule the timers add (patience + empty) or (first player - no-show): 3 s
        # at this scale, against the rule's own stop latency.
        assert zombie[(unplayable, RULE_OFF.name)] > zombie[(unplayable, RULE_ON.name)] + 2.0
