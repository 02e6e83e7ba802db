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
