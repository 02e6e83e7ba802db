"""The status snapshot: one typed picture of the sidecar, rendered as `GET /v1/status` (also the
answer to every lifecycle call), as the data of every SSE `state` event, and as `/metrics`
(metrics.py).

`StatusView` builds snapshots from the lifecycle, the stop progress, the game and the
deployment. It keeps `GET /v1/status` (what games poll) cheap: the encoded body is reused until
something changes — the lifecycle announces its own changes (`Lifecycle.on_change`), the stop
sequence and the agent call `changed()` for theirs — or the clock moves to the next
millisecond (every time in the body is rounded to the millisecond).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sidecar.deployment import DeploymentInfo
from sidecar.game import Game, GameStats
from sidecar.lifecycle import Change, Lifecycle, ReadySource, State, StopReason
from sidecar.outcomes import DeliveryOutcome, StopOutcome
from sidecar.redaction import redact

if TYPE_CHECKING:
    # The body's one definition, also the OpenAPI document's schema. For typing only: it is
    # documentation built with pydantic, which start-up does not load.
    from sidecar.responses import StatusBody, StatusDeployment, TimerName


@dataclass
class StopProgress:
    """The self-stop as it goes: written by the stop sequence, read by every snapshot."""

    attempts: int = 0
    last_error: str | None = None
    last_status: int | None = None
    outcome: StopOutcome | None = None
    log_storage: str | None = None
    # The platform answered 400 to the log choice; the stop went on without it (SPEC §11).
    log_storage_refused: bool = False


@dataclass
class DeliveryProgress:
    """The result delivery as it goes: written by sidecar.result, read by every snapshot.
    `outcome` is None until a stop is decided (with SIDECAR_RESULT_URL set)."""

    outcome: DeliveryOutcome | None = None
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None


# Snapshots are plain slotted dataclasses, not frozen ones: a frozen dataclass sets each field
# through object.__setattr__, which doubled the cost of building a status (built at most once a
# millisecond under load, and for every lifecycle call's answer and SSE event). Treat them as
# read-only.
@dataclass(slots=True)
class GameStatus:
    pid: int
    running: bool
    exit_code: int | None
    stats: GameStats | None


@dataclass(slots=True)
class Status:
    """Everything status, events and metrics show, at one moment. Times are unrounded seconds;
    `to_json` rounds them as the API shows them."""

    state: State
    stop_reason: StopReason | None
    stop_detail: str | None
    player_count: int
    player_ids: list[str]
    players_peak: int
    timers_left: dict[str, float]  # armed timers, the drain and the hold
    uptime: float
    ready_source: ReadySource | None
    match_id: str | None
    match_expected: int  # the matchmaker's tickets (SPEC §12; 0 without match data)
    match_arrived: int  # the tickets that arrived
    dry_run: bool
    stop: StopProgress  # a copy, with its error text redacted
    deployment: dict[str, Any]  # DeploymentInfo.summary()
    drain_deadline_in: float | None  # only while draining
    drain_deadline_unix: float | None
    game: GameStatus | None  # only in run and watch modes
    result_delivery: DeliveryProgress  # a copy (SPEC §12)

    def to_json(self) -> StatusBody:
        """The `/v1/status` body, field for field as `responses.StatusBody` defines it (mypy
        holds this function to it; the document's schema is generated from it). Enum members go
        in as they are: they are strings, and JSON-encode as their values."""
        stop = self.stop
        delivery = self.result_delivery
        timers = {name: round(left, 3) for name, left in self.timers_left.items()}
        body: StatusBody = {
            "state": self.state,
            "stop_reason": self.stop_reason,
            "stop_detail": self.stop_detail,
            "players": {"count": self.player_count, "ids": self.player_ids},
            "players_peak": self.players_peak,
            # The lifecycle names its timers with plain strings; tests/test_match_api.py holds
            # them to TimerName.
            "timers": cast("dict[TimerName, float]", timers),
            "uptime_s": round(self.uptime, 3),
            "ready_source": self.ready_source,
            "match_id": self.match_id,
            "match": {
                "match_id": self.match_id,
                "expected": self.match_expected,
                "arrived": self.match_arrived,
            },
            "dry_run": self.dry_run,
            "stop": {
                "attempts": stop.attempts,
                "last_error": stop.last_error,
                "last_status": stop.last_status,
                "outcome": stop.outcome,
                "log_storage": stop.log_storage,
                "log_storage_refused": stop.log_storage_refused,
            },
            # DeploymentInfo.summary() builds exactly this shape, untyped.
            "deployment": cast("StatusDeployment", self.deployment),
            "result_delivery": {
                "outcome": delivery.outcome,
                "attempts": delivery.attempts,
                "last_status": delivery.last_status,
                "last_error": delivery.last_error,
            },
        }
        if self.drain_deadline_in is not None and self.drain_deadline_unix is not None:
            body["drain_deadline_s"] = round(self.drain_deadline_in, 3)
            body["drain_deadline_unix"] = round(self.drain_deadline_unix, 3)
        game = self.game
        if game is not None:
            stats = game.stats
            body["game"] = {
                "pid": game.pid,
                "running": game.running,
                "exit_code": game.exit_code,
                "cpu_percent": stats.cpu_percent if stats else None,
                "rss_bytes": stats.rss_bytes if stats else None,
            }
        return body


class StatusView:
    """Snapshots on demand, and the cached `/v1/status` body."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        progress: StopProgress,
        game: Game,
        deployment: DeploymentInfo,
        *,
        dry_run: bool,
        secrets: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        delivery: DeliveryProgress | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.delivery = delivery if delivery is not None else DeliveryProgress(DeliveryOutcome.OFF)
        self.progress = progress
        self.game = game
        self.deployment = deployment
        self.dry_run = dry_run
        self._secrets = list(secrets)
        self._clock = clock
        self._wall_clock = wall_clock
        self._version = 0
        self._cache: tuple[tuple[int, int], bytes] | None = None
        lifecycle.on_change(self._on_change)

    def changed(self) -> None:
        """Something status shows changed outside the lifecycle (a stop attempt, the game's
        exit): the next body is built afresh."""
        self._version += 1

    def _on_change(self, change: Change) -> None:
        self._version += 1

    def snapshot(self) -> Status:
        lc = self.lifecycle
        decision = lc.decision
        p = self.progress
        stop = StopProgress(
            p.attempts,
            p.last_error,
            p.last_status,
            p.outcome,
            p.log_storage,
            p.log_storage_refused,
        )
        if self._secrets and stop.last_error:
            # Belt and braces: nothing in status is built from a secret, but an error text from
            # the platform could echo one back.
            stop.last_error = redact(stop.last_error, self._secrets)
        drain = lc.drain_deadline_in()
        game = self.game
        pid = game.pid
        game_status = None
        if pid is not None:
            ended = game.exit
            game_status = GameStatus(
                pid=pid,
                running=ended is None,
                exit_code=ended.exit_code if ended else None,
                stats=game.stats(),
            )
        return Status(
            state=lc.state,
            stop_reason=decision.reason if decision else None,
            stop_detail=decision.detail if decision else None,
            player_count=lc.player_count,
            player_ids=lc.player_ids,
            players_peak=lc.players_peak,
            timers_left=lc.timers_left(),
            uptime=lc.uptime(),
            ready_source=lc.ready_source,
            match_id=lc.match_id,
            match_expected=lc.expected_count,
            match_arrived=lc.arrived_count,
            dry_run=self.dry_run,
            stop=stop,
            deployment=self.deployment.summary(),
            drain_deadline_in=drain,
            drain_deadline_unix=self._wall_clock() + drain if drain is not None else None,
            game=game_status,
            result_delivery=DeliveryProgress(
                self.delivery.outcome,
                self.delivery.attempts,
                self.delivery.last_status,
                self.delivery.last_error,
            ),
        )

    def to_json(self) -> StatusBody:
        """The status as JSON data (SSE events carry it)."""
        return self.snapshot().to_json()

    def body(self) -> bytes:
        """The encoded `/v1/status` body, reused while nothing changed within a millisecond."""
        key = (self._version, int(self._clock() * 1000))
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        body = json.dumps(self.to_json(), separators=(",", ":")).encode()
        self._cache = (key, body)
        return body
