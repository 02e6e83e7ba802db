"""The JSON answers of the local API, typed once: TypedDicts that the renderers are checked
against (mypy: `status.Status.to_json` returns a `StatusBody`) and that the OpenAPI document turns
into its response schemas (pydantic's generator, in `sidecar.openapi`).

Documentation and typing only: nothing here runs on the hot path. The answers themselves are plain
dicts, built by the API and status modules (a JSON dump of a dict is cheaper than a model per
request), and `status.py` imports this module for its type only, so pydantic is not loaded at
start-up by it. `tests/test_openapi_fuzz.py` and `tests/test_status.py` hold live answers to these
shapes.

The names end in `Body` (a whole answer) or name their parent (`StatusStop`: the `stop` object
inside a status), so that none collides with the domain classes they render (`status.Status`,
`status.StopProgress`, `result.ResultDelivery`, ...) and generated clients get distinct models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from sidecar.lifecycle import ReadySource, State, StopReason
from sidecar.outcomes import DeliveryOutcome, StopOutcome

# Answers carry exactly these fields: a new one must be documented here (the fuzz run fails).
_exact = with_config(ConfigDict(extra="forbid"))

NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


@_exact
class ErrorDetail(TypedDict):
    code: Annotated[
        str,
        Field(
            description="Machine-readable: bad_request, unauthorized, not_found, "
            "method_not_allowed, conflict, payload_too_large, invalid_body, ..."
        ),
    ]
    message: str


@_exact
class ErrorBody(TypedDict):
    """The error envelope every 4xx of the local API carries."""

    error: ErrorDetail


@_exact
class HealthzBody(TypedDict):
    status: Literal["ok"]


@_exact
class HeartbeatBody(TypedDict):
    ok: Literal[True]


@_exact
class PlayerCountBody(TypedDict):
    count: NonNegativeInt


@_exact
class RosterBody(TypedDict):
    count: NonNegativeInt
    ids: Annotated[
        list[str],
        Field(description="Named players; anonymous ones (PUT with count) are only counted."),
    ]


# lifecycle.TIMER_NAMES plus the drain and the hold (tests/test_match_api.py holds them equal).
TimerName = Literal[
    "ready",
    "health",
    "max_duration",
    "no_show",
    "first_player",
    "empty",
    "network_idle",
    "drain",
    "hold",
]


@_exact
class StatusMatch(TypedDict):
    """The matchmaker's players, in status and metrics."""

    match_id: str | None
    expected: Annotated[NonNegativeInt, Field(description="Tickets (0 without match data).")]
    arrived: Annotated[NonNegativeInt, Field(description="Tickets whose player arrived.")]


@_exact
class StatusStop(TypedDict):
    attempts: NonNegativeInt
    last_error: str | None
    last_status: int | None
    outcome: StopOutcome | None
    log_storage: str | None
    log_storage_refused: Annotated[
        bool,
        Field(
            description="The platform answered 400 to log_storage: the stop went on without it "
            "(the deployment's default log storage applies)."
        ),
    ]


@_exact
class StatusResultDelivery(TypedDict):
    outcome: Annotated[
        DeliveryOutcome | None,
        Field(
            description="The match result's delivery to SIDECAR_RESULT_URL: off without one; "
            "null until a stop is decided."
        ),
    ]
    attempts: NonNegativeInt
    last_status: int | None
    last_error: str | None


@_exact
class StatusDeployment(TypedDict):
    request_id: str | None
    public_ip: str | None
    ports: Annotated[
        list[int | None],
        Field(description="External port of each mapped port (the internal one when unknown)."),
    ]


@_exact
class StatusGame(TypedDict):
    pid: int
    running: bool
    exit_code: int | None
    cpu_percent: float | None
    rss_bytes: int | None


@_exact
class StatusBody(TypedDict):
    """The whole state of the sidecar; also the answer to every lifecycle call."""

    state: State
    stop_reason: StopReason | None
    stop_detail: str | None
    players: RosterBody
    players_peak: NonNegativeInt
    timers: Annotated[
        dict[TimerName, NonNegativeFloat],
        Field(description="Seconds left on each armed timer, the drain and the hold."),
    ]
    uptime_s: NonNegativeFloat
    ready_source: ReadySource | None
    match_id: str | None
    match: StatusMatch
    dry_run: bool
    stop: StatusStop
    deployment: StatusDeployment
    result_delivery: StatusResultDelivery
    drain_deadline_s: NotRequired[
        Annotated[
            NonNegativeFloat,
            Field(description="Only while draining: seconds until the self-stop call."),
        ]
    ]
    drain_deadline_unix: NotRequired[
        Annotated[float, Field(description="Only while draining: the same, as a Unix time.")]
    ]
    game: NotRequired[Annotated[StatusGame, Field(description="Only in run and watch modes.")]]


@_exact
class DeploymentPort(TypedDict):
    name: str
    internal: int | None
    external: int | None
    protocol: str | None


@_exact
class DeploymentBody(TypedDict):
    """What the platform injected (ARBITRIUM_*, MM_*), parsed; never a token."""

    request_id: str | None
    public_ip: str | None
    ports: list[DeploymentPort]
    location: dict[str, Any] | None
    tags: list[str]
    host_id: str | None
    vcpu_units: int | None
    memory_mb: int | None
    matchmaker: dict[str, Any]
    warnings: Annotated[
        list[str], Field(description="One line per platform variable that was malformed.")
    ]


@_exact
class TicketBody(TypedDict):
    """One matchmaker ticket: one expected player."""

    id: str
    team_id: Annotated[
        str | None, Field(description="The ticket's team_id, else the team MM_TEAMS gives it.")
    ]
    group_id: str | None
    player_ip: Annotated[
        str | None, Field(description="The address the matchmaker saw: a hint, not an identity.")
    ]
    attributes: dict[str, Any] | None
    arrived: Annotated[bool, Field(description="A player brought it; it stays arrived.")]
    player_id: Annotated[str | None, Field(description="The first player that brought it.")]


@_exact
class MatchBody(TypedDict):
    """The match the matchmaker made (MM_* variables) and its arrivals."""

    match_id: Annotated[
        str | None, Field(description="MM_MATCH_ID, else the id given to match start.")
    ]
    profile: str | None
    expansion: Annotated[str | None, Field(description="MM_EXPANSION or MM_EXPANSION_STAGE.")]
    expected: NonNegativeInt
    arrived: NonNegativeInt
    quorum: Annotated[
        Annotated[int, Field(ge=1)] | Literal["all", "teams"],
        Field(description="SIDECAR_MATCH_QUORUM as configured."),
    ]
    no_show_deadline_s: Annotated[
        NonNegativeFloat | None,
        Field(description="Seconds left before a no_show stop; null when not armed."),
    ]
    tickets: list[TicketBody]
    teams: Annotated[dict[str, list[str]], Field(description="Team id -> ticket ids.")]
    result_delivery: DeliveryOutcome


# Every answer a route table entry may name (`routes.Answer.shape`), by name.
SHAPES: dict[str, type[Any]] = {
    shape.__name__: shape
    for shape in (
        ErrorBody,
        HealthzBody,
        HeartbeatBody,
        PlayerCountBody,
        RosterBody,
        StatusBody,
        DeploymentBody,
        MatchBody,
        TicketBody,
    )
}
