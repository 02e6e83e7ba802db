"""The OpenAPI 3.1 document of the local API (SPEC §7), served at `GET /openapi.json`.

Request bodies come from the pydantic models the API validates with (`sidecar.models`), so the
document cannot drift from what is accepted. Responses are plain dicts built on the hot path
(see `sidecar.models`), so their shapes are written here as TypedDicts, documentation only,
and the same pydantic generator turns them into schemas; `tests/test_openapi_fuzz.py` holds
every live answer to them. Both kinds land in `components/schemas`, with pydantic's `$defs`
rewritten to component references.

The document describes the sidecar it is served by: with `SIDECAR_API_TOKEN` set, every `/v1/*`
operation requires the bearer scheme and may answer 401; without it, neither appears. It is
built once per variant and cached as bytes (~30 ms of imports and pydantic work, paid by the
first request, not by start-up).

Over 400 lines on purpose: the whole document (shapes, prose, per-route answers) in one place.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from pydantic.json_schema import JsonSchemaMode
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from sidecar import __version__, models
from sidecar.lifecycle import State, StopReason

REF_TEMPLATE = "#/components/schemas/{model}"
NO_CONTROL_CHARACTERS = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
# Answers carry exactly these fields: a new one must be documented here (the fuzz run fails).
_exact = with_config(ConfigDict(extra="forbid"))


# --- response shapes (documentation only) ------------------------------------------------------
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
class Healthz(TypedDict):
    status: Literal["ok"]


@_exact
class Heartbeat(TypedDict):
    ok: Literal[True]


@_exact
class PlayerCount(TypedDict):
    count: NonNegativeInt


@_exact
class Roster(TypedDict):
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
class MatchCounts(TypedDict):
    """SPEC §12: the matchmaker's players, in status and metrics."""

    match_id: str | None
    expected: Annotated[NonNegativeInt, Field(description="Tickets (0 without match data).")]
    arrived: Annotated[NonNegativeInt, Field(description="Tickets whose player arrived.")]


@_exact
class StopProgress(TypedDict):
    attempts: NonNegativeInt
    last_error: str | None
    last_status: int | None
    outcome: Literal["accepted", "already_gone", "failed", "dry_run"] | None
    log_storage: str | None
    log_storage_refused: Annotated[
        bool,
        Field(
            description="The platform answered 400 to log_storage: the stop went on without it "
            "(the deployment's default log storage applies)."
        ),
    ]


@_exact
class ResultDelivery(TypedDict):
    outcome: Annotated[
        Literal["off", "pending", "delivered", "failed"] | None,
        Field(
            description="The match result's delivery to SIDECAR_RESULT_URL (SPEC §12): off "
            "without one; null until a stop is decided."
        ),
    ]
    attempts: NonNegativeInt
    last_status: int | None
    last_error: str | None


@_exact
class DeploymentSummary(TypedDict):
    request_id: str | None
    public_ip: str | None
    ports: Annotated[
        list[int | None],
        Field(description="External port of each mapped port (the internal one when unknown)."),
    ]


@_exact
class Game(TypedDict):
    pid: int
    running: bool
    exit_code: int | None
    cpu_percent: float | None
    rss_bytes: int | None


@_exact
class Status(TypedDict):
    """The whole state of the sidecar; also the answer to every lifecycle call."""

    state: State
    stop_reason: StopReason | None
    stop_detail: str | None
    players: Roster
    players_peak: NonNegativeInt
    timers: Annotated[
        dict[TimerName, NonNegativeFloat],
        Field(description="Seconds left on each armed timer, the drain and the hold."),
    ]
    uptime_s: NonNegativeFloat
    ready_source: Literal["api", "port", "agones"] | None
    match_id: str | None
    match: MatchCounts
    dry_run: bool
    stop: StopProgress
    deployment: DeploymentSummary
    result_delivery: ResultDelivery
    drain_deadline_s: NotRequired[
        Annotated[
            NonNegativeFloat,
            Field(description="Only while draining: seconds until the self-stop call."),
        ]
    ]
    drain_deadline_unix: NotRequired[
        Annotated[float, Field(description="Only while draining: the same, as a Unix time.")]
    ]
    game: NotRequired[Annotated[Game, Field(description="Only in run and watch modes.")]]


@_exact
class Port(TypedDict):
    name: str
    internal: int | None
    external: int | None
    protocol: str | None


@_exact
class Deployment(TypedDict):
    """What the platform injected (ARBITRIUM_*, MM_*), parsed; never a token."""

    request_id: str | None
    public_ip: str | None
    ports: list[Port]
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
class Ticket(TypedDict):
    """One matchmaker ticket: one expected player (SPEC §12)."""

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
class Match(TypedDict):
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
    tickets: list[Ticket]
    teams: Annotated[dict[str, list[str]], Field(description="Team id -> ticket ids.")]
    result_delivery: Literal["delivered", "failed", "pending", "off"]


_REQUEST_MODELS: tuple[type[Any], ...] = (
    models.PlayerBody,
    models.ConnectBody,
    models.PlayersBody,
    models.HoldBody,
    models.MatchStartBody,
    models.MatchEndBody,
    models.ShutdownBody,
)
_RESPONSE_SHAPES: tuple[type[Any], ...] = (
    ErrorBody,
    Healthz,
    Heartbeat,
    PlayerCount,
    Roster,
    Status,
    Deployment,
    Match,
    Ticket,
)


# Prose for the request models, kept here so that `sidecar.models` stays validation only.
_REQUEST_NOTES: dict[str, dict[str, str]] = {
    "PlayerBody": {"player_id": "1-128 printable characters."},
    "ConnectBody": {
        "player_id": "1-128 printable characters; a player whose id is a ticket id brings it.",
        "ticket_id": "The matchmaker ticket this player brings (422 unknown_ticket when it is "
        "not one of the match's).",
    },
    "PlayersBody": {
        "": 'Exactly one of "player_ids" or "count" (422 otherwise).',
        "player_ids": "The whole roster (each id 1-128 printable characters).",
        "count": "That many anonymous players.",
    },
    "HoldBody": {"seconds": "Suspend idle stops this long; 0 ends the hold."},
    "MatchEndBody": {
        "result": "Any JSON, at most 16 KiB serialized; lands in the stop record.",
        "grace_seconds": "Overrides SIDECAR_MATCH_END_GRACE for this stop.",
    },
    "ShutdownBody": {
        "reason": "Free text for the stop record.",
        "grace_seconds": "Overrides SIDECAR_MATCH_END_GRACE for this stop.",
        "log_storage": "container_log_storage for this stop (true, false or a storage name).",
    },
}


def _components() -> dict[str, Any]:
    modes: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (shape.__name__, "validation", TypeAdapter(shape)) for shape in _REQUEST_MODELS
    ] + [(shape.__name__, "serialization", TypeAdapter(shape)) for shape in _RESPONSE_SHAPES]
    _, definitions = TypeAdapter.json_schemas(modes, ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = definitions["$defs"]
    # Part of the printable rule (`str.isprintable`, which no portable regex spells out): no
    # control characters. It keeps most generated ids valid.
    for player_id in (
        schemas["PlayerBody"]["properties"]["player_id"],
        schemas["ConnectBody"]["properties"]["player_id"],
        schemas["ConnectBody"]["properties"]["ticket_id"]["anyOf"][0],
        schemas["PlayersBody"]["properties"]["player_ids"]["anyOf"][0]["items"],
    ):
        player_id["pattern"] = NO_CONTROL_CHARACTERS
    # The model's "exactly one of" validator, which pydantic cannot express: without it a
    # generator takes `{}` for a valid roster (it is a 422).
    schemas["PlayersBody"]["anyOf"] = [
        {
            "required": ["player_ids"],
            "properties": {"player_ids": {"type": "array"}, "count": {"type": "null"}},
        },
        {
            "required": ["count"],
            "properties": {"count": {"type": "integer"}, "player_ids": {"type": "null"}},
        },
    ]
    for model, notes in _REQUEST_NOTES.items():
        for field_name, note in notes.items():
            target = schemas[model]["properties"][field_name] if field_name else schemas[model]
            target["description"] = note
    return schemas


# --- operations --------------------------------------------------------------------------------
def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=name)}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json_response(description, _ref("ErrorBody"))


_STATUS_200 = {"200": _json_response("The status after the change.", _ref("Status"))}
_STATUS_202 = {
    "202": _json_response(
        "The stop is decided (or already was: the call is idempotent); the current status.",
        _ref("Status"),
    )
}
_CONFLICT = {"409": _error("The change no longer applies: a stop is already decided.")}
_NOT_IN_MATCH = {
    "403": _error(
        "not_in_match: SIDECAR_MATCH_STRICT is on and a player brings none of the match's "
        "tickets (or the roster is a count); nothing changed."
    )
}


def _body_errors(required: bool) -> dict[str, Any]:
    malformed = "Malformed JSON (NaN and Infinity are not JSON)"
    return {
        "400": _error(malformed + (", or no body." if required else ".")),
        "408": _error("The body did not arrive within 10 s; the connection is closed."),
        "413": _error("The body is larger than 64 KiB."),
        "422": _error(
            "Valid JSON of the wrong shape: not an object, an unknown field, a value out of "
            "range, nesting deeper than 64 levels, or a roster over its cap of 10,000 ids; "
            "unknown_ticket for a connect naming a ticket the match does not have."
        ),
    }


def _body(model: str, required: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "required": required,
        "content": {"application/json": {"schema": _ref(model)}},
    }
    if not required:
        body["description"] = "Optional: an empty body means every field is omitted."
    return body


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    body: tuple[str, bool] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if body is not None:
        model, required = body
        operation["requestBody"] = _body(model, required)
        responses = {**responses, **_body_errors(required)}
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _paths() -> dict[str, dict[str, dict[str, Any]]]:
    status = _json_response("The whole state of the sidecar.", _ref("Status"))
    text = {"schema": {"type": "string"}}
    return {
        "/healthz": {
            "get": _operation(
                "healthz",
                "Sidecar liveness (never needs the token).",
                {"200": _json_response("The sidecar is up.", _ref("Healthz"))},
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus text exposition (never needs the token).",
                {
                    "200": {
                        "description": "Prometheus text format 0.0.4.",
                        "content": {"text/plain": text},
                    }
                },
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document (never needs the token).",
                {"200": _json_response("OpenAPI 3.1.", {"type": "object"})},
            )
        },
        "/v1/status": {"get": _operation("status", "The whole state.", {"200": status})},
        "/v1/ready": {
            "post": _operation(
                "ready",
                "The game is ready: starting -> ready (200 also when repeated).",
                {**_STATUS_200, **_CONFLICT},
            )
        },
        "/v1/health": {
            "post": _operation(
                "health",
                "Heartbeat: arms (then feeds) the health timer.",
                {"200": _json_response("Heartbeat taken.", _ref("Heartbeat"))},
            )
        },
        "/v1/activity": {
            "post": _operation(
                "activity",
                "Restart the running idle timer, as if a player had just left.",
                _STATUS_200,
            )
        },
        "/v1/players": {
            "get": _operation(
                "players",
                "The roster.",
                {"200": _json_response("The roster.", _ref("Roster"))},
            ),
            "put": _operation(
                "setPlayers",
                "Replace the whole roster: exactly these ids, or that many anonymous players.",
                {"200": _json_response("The new roster.", _ref("Roster")), **_NOT_IN_MATCH},
                body=("PlayersBody", True),
            ),
        },
        "/v1/players/connect": {
            "post": _operation(
                "playerConnected",
                "A player connected (idempotent per id), with the ticket it brings.",
                {"200": _json_response("The player count.", _ref("PlayerCount")), **_NOT_IN_MATCH},
                body=("ConnectBody", True),
            )
        },
        "/v1/players/disconnect": {
            "post": _operation(
                "playerDisconnected",
                "A player left (idempotent).",
                {"200": _json_response("The player count.", _ref("PlayerCount"))},
                body=("PlayerBody", True),
            )
        },
        "/v1/hold": {
            "post": _operation(
                "hold",
                "Suspend idle stops for n seconds (0 clears the hold).",
                _STATUS_200,
                body=("HoldBody", True),
            )
        },
        "/v1/match": {
            "get": _operation(
                "match",
                "The match the matchmaker made, its tickets and arrivals.",
                {"200": _json_response("The match.", _ref("Match"))},
            )
        },
        "/v1/match/tickets/{ticket_id}": {
            "get": {
                **_operation(
                    "ticket",
                    "One ticket: the game checks a joiner's ticket id in its handshake.",
                    {
                        "200": _json_response("The ticket.", _ref("Ticket")),
                        "404": _error("unknown_ticket: not one of this match's tickets."),
                    },
                ),
                "parameters": [
                    {
                        "name": "ticket_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
            }
        },
        "/v1/match/start": {
            "post": _operation(
                "matchStart",
                "A match started: -> active.",
                {**_STATUS_200, **_CONFLICT},
                body=("MatchStartBody", False),
            )
        },
        "/v1/match/end": {
            "post": _operation(
                "matchEnd",
                "The match ended: stop with match_ended after the grace.",
                _STATUS_202,
                body=("MatchEndBody", False),
            )
        },
        "/v1/shutdown": {
            "post": _operation(
                "shutdown",
                "Stop with shutdown_requested after the grace.",
                _STATUS_202,
                body=("ShutdownBody", False),
            )
        },
        "/v1/events": {
            "get": _operation(
                "events",
                "Server-Sent Events: the current status, then one `state` event per change.",
                {
                    "200": {
                        "description": "A never-ending stream; each `data:` is a Status object.",
                        "content": {"text/event-stream": text},
                    },
                    "429": _error("Too many subscribers (SPEC: at most 64 at a time)."),
                },
            )
        },
        "/v1/deployment": {
            "get": _operation(
                "deployment",
                "The parsed platform variables; never a token.",
                {"200": _json_response("The deployment.", _ref("Deployment"))},
            )
        },
    }


def _document(token_required: bool) -> dict[str, Any]:
    paths = _paths()
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "edgegap-sidecar local API",
            "version": __version__,
            "description": (
                "The game's side of the sidecar. Every error is "
                '`{"error": {"code", "message"}}`; an unknown path answers 404 and a method a '
                "path does not have answers 405 with `Allow`, both with that envelope."
            ),
        },
        "paths": paths,
        "components": {"schemas": _components()},
    }
    if token_required:
        document["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "SIDECAR_API_TOKEN; needed by every /v1/* call.",
            }
        }
        unauthorized = _error("Missing or wrong bearer token (also: not ASCII).")
        for path, item in paths.items():
            if path.startswith("/v1/"):
                for operation in item.values():
                    operation["security"] = [{"bearer": []}]
                    operation["responses"] = dict(
                        sorted({**operation["responses"], "401": unauthorized}.items())
                    )
    return document


def document(token_required: bool) -> dict[str, Any]:
    """The document as data (a fresh copy: callers may change it)."""
    parsed: dict[str, Any] = json.loads(document_bytes(token_required))
    return parsed


@functools.cache
def document_bytes(token_required: bool) -> bytes:
    """The served bytes, built once per variant."""
    return json.dumps(_document(token_required), separators=(",", ":")).encode()
