"""The status snapshot and its cached body (sidecar.status), on a fake clock; and the body held
to the schema the OpenAPI document gives it, offline and live."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jsonschema_rs
import pytest

from sidecar import edgegap, openapi
from sidecar.deployment import DeploymentInfo
from sidecar.game import Game, NoGame
from sidecar.lifecycle import Lifecycle, TimerSettings
from sidecar.outcomes import StopOutcome
from sidecar.status import StatusView, StopProgress
from sidecar.watchers import WatchedProcess
from tests.conftest import SidecarFactory


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def make_view(
    clock: FakeClock, game: Game | None = None, secrets: Sequence[str] = ()
) -> tuple[Lifecycle, StopProgress, StatusView]:
    lifecycle = Lifecycle(TimerSettings(), clock)
    progress = StopProgress()
    view = StatusView(
        lifecycle,
        progress,
        game or NoGame(),
        DeploymentInfo(request_id="r-1"),
        dry_run=True,
        secrets=secrets,
        clock=clock,
        wall_clock=lambda: 1_700_000_000.0,
    )
    return lifecycle, progress, view


class TestCachedBody:
    def test_the_body_is_reused_while_nothing_changes(self) -> None:
        """Games poll GET /v1/status: within one millisecond and without a change, the same
        encoded body is served again."""
        clock = FakeClock()
        _, _, view = make_view(clock)
        assert view.body() is view.body()

    def test_any_lifecycle_change_shows_at_once(self) -> None:
        """A change made straight on the lifecycle, by any adapter, is in the next body even
        within the same millisecond: the lifecycle announces it, nobody has to."""
        clock = FakeClock()
        lifecycle, _, view = make_view(clock)
        before = view.body()
        lifecycle.heartbeat()  # a STATUS announcement: no timer re-plan, but status changed
        assert "health" in json.loads(view.body())["timers"]
        lifecycle.player_connected("a")
        after = json.loads(view.body())
        assert after["players"] == {"count": 1, "ids": ["a"]}
        assert before != view.body()

    def test_stop_progress_shows_once_announced(self) -> None:
        """Stop attempts live outside the lifecycle; `changed()` makes the next body show them."""
        clock = FakeClock()
        _, progress, view = make_view(clock)
        view.body()
        progress.attempts = 1
        progress.outcome = StopOutcome.DRY_RUN
        view.changed()
        stop = json.loads(view.body())["stop"]
        assert (stop["attempts"], stop["outcome"]) == (1, "dry_run")

    def test_the_next_millisecond_rebuilds_the_body(self) -> None:
        """Every time in the body is rounded to the millisecond, so a new one is built when the
        clock moves on."""
        clock = FakeClock()
        _, _, view = make_view(clock)
        first = json.loads(view.body())
        clock.now += 0.001
        assert json.loads(view.body())["uptime_s"] == first["uptime_s"] + 0.001


class TestSnapshot:
    def test_serve_mode_has_no_game_section(self) -> None:
        """Without a game (serve mode), status has no `game` object."""
        _, _, view = make_view(FakeClock())
        assert "game" not in view.to_json()

    def test_a_watched_game_is_shown_with_its_pid(self) -> None:
        """In watch mode, `game` names the watched pid, running, with its resource use."""
        _, _, view = make_view(FakeClock(), game=WatchedProcess(os.getpid()))
        game = view.to_json()["game"]
        assert (game["pid"], game["running"], game["exit_code"]) == (os.getpid(), True, None)
        assert game["rss_bytes"] > 0

    def test_an_error_text_echoing_a_secret_is_redacted(self) -> None:
        """A platform error that echoes the token back never reaches status."""
        _, progress, view = make_view(FakeClock(), secrets=["s3cret"])
        progress.last_error = "HTTP 401: bad token s3cret"
        assert view.to_json()["stop"]["last_error"] == "HTTP 401: bad token <redacted>"
        assert progress.last_error == "HTTP 401: bad token s3cret"  # the record is untouched

    def test_draining_shows_the_deadline_in_seconds_and_unix_time(self) -> None:
        """While draining, status carries the drain deadline both ways, rounded to the ms."""
        clock = FakeClock()
        lifecycle, _, view = make_view(clock)
        lifecycle.match_ended(grace=2.5)
        clock.now += 0.0004
        body = view.to_json()
        assert body["drain_deadline_s"] == 2.5
        assert body["drain_deadline_unix"] == 1_700_000_002.5


def status_validator() -> Any:
    """A validator of the document's `StatusBody` component, its references resolved in the
    document itself."""
    components = openapi.document(token_required=False)["components"]
    return jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/StatusBody", "components": components}
    )


class TestTheDocumentedShape:
    def test_one_stop_outcome_enum(self) -> None:
        """The stop sequence's progress, the platform client and the document use the one
        `StopOutcome`, not three spellings of it."""
        assert edgegap.StopOutcome is StopOutcome
        assert StopProgress.__annotations__["outcome"] == "StopOutcome | None"

    def test_every_optional_part_validates(self) -> None:
        """A body with every optional part (a watched game, a drain deadline, a stop outcome)
        validates against the document's schema; the check is live: a renamed field fails."""
        clock = FakeClock()
        lifecycle, progress, view = make_view(clock, game=WatchedProcess(os.getpid()))
        lifecycle.match_ended(grace=2.5)
        progress.outcome = StopOutcome.DRY_RUN
        view.changed()
        body = json.loads(view.body())
        assert {"game", "drain_deadline_s", "drain_deadline_unix"} <= set(body)
        validator = status_validator()
        validator.validate(body)
        body["uptime"] = body.pop("uptime_s")
        with pytest.raises(jsonschema_rs.ValidationError):
            validator.validate(body)

    async def test_the_live_body_validates(self, sidecar: SidecarFactory) -> None:
        """`GET /v1/status` over loopback, and the same body as a lifecycle call's answer, at
        each stage of a match, is what the served document says it is."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="10s")
        validator = status_validator()
        answers = [
            await sc.call("GET", "/v1/status"),
            await sc.call("POST", "/v1/ready"),
            await sc.call("POST", "/v1/match/start", {"match_id": "m-1"}),
            await sc.call("POST", "/v1/match/end", {"result": None}),
            await sc.call("GET", "/v1/status"),
        ]
        assert [status for status, _ in answers] == [200, 200, 200, 202, 200]
        assert answers[-1][1]["state"] == "draining"
        for _, body in answers:
            validator.validate(body)
