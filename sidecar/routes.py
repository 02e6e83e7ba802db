"""The local API's route table: each route declared once — method, path, the `LocalApi` method
that handles it, tag, summary, request body, answer, error answers — and read by both the app
(`LocalApi.build_app` registers exactly these) and the OpenAPI document (`sidecar.openapi`
generates its paths from them). A route cannot be served and undocumented, or the reverse.

Plain data, imported at start-up: no pydantic, no aiohttp. Request bodies and answer shapes are
named, not imported: the request models are `sidecar.models` (pydantic) for the document and
their compiled checkers `sidecar.bodies` (no pydantic) for the app, loaded after start-up; the
response shapes (`sidecar.responses`) load only with the document.

What the table does not spell out is derived, the same way for the app and the document: every
`/v1/*` route needs the token (401); a route with a body may answer 400, 408, 413 and 422; a
path parameter (`{ticket_id}`) is a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

JSON = "application/json"


class Tag(StrEnum):
    """Route groups: generated clients get one API class per tag."""

    LIFECYCLE = "lifecycle"
    PLAYERS = "players"
    MATCH = "match"
    EVENTS = "events"
    STATUS = "status"
    SERVICE = "service"


TAG_DESCRIPTIONS: dict[Tag, str] = {
    Tag.LIFECYCLE: "Ready, heartbeats, activity, hold and the stop calls.",
    Tag.PLAYERS: "The roster: who is connected.",
    Tag.MATCH: "The match the matchmaker made, its tickets, its start and end.",
    Tag.EVENTS: "Server-Sent Events: every state change as it happens.",
    Tag.STATUS: "The whole state of the sidecar, and the deployment it runs in.",
    Tag.SERVICE: "The sidecar itself: liveness, metrics, this document (never need the token).",
}


# NamedTuples, not dataclasses: this module is imported at start-up, where a dataclass's code
# generation costs: the module's import took 2.1 ms with two frozen dataclasses, 1.1 ms with
# these (best of 60 reloads, shared 2-core machine).
class Answer(NamedTuple):
    """A route's successful answer."""

    status: int
    description: str
    # A TypedDict of sidecar.responses, by name; None: `schema` below describes the content.
    shape: str | None = None
    media_type: str = JSON
    schema_type: str = "object"


class Route(NamedTuple):
    method: str
    path: str
    handler: str  # the LocalApi method, called (request) or (request, body)
    operation_id: str
    tag: Tag
    summary: str
    answer: Answer
    # The request model, by name: in sidecar.models for the document, in sidecar.bodies (the
    # same model compiled) for the app, which checks the body with it before calling the
    # handler, which gets the checked body.
    body: str | None = None
    body_required: bool = True
    # Error answers of this route's own (4xx with the error envelope): status -> description.
    errors: Mapping[int, str] = MappingProxyType({})

    @property
    def needs_token(self) -> bool:
        return self.path.startswith("/v1/")


# --- answers and errors several routes share --------------------------------------------------
STATUS_AFTER = Answer(200, "The status after the change.", "StatusBody")
STOP_DECIDED = Answer(
    202,
    "The stop is decided (or already was: the call is idempotent); the current status.",
    "StatusBody",
)
PLAYER_COUNT = Answer(200, "The player count.", "PlayerCountBody")
CONFLICT = {409: "The change no longer applies: a stop is already decided."}
NOT_IN_MATCH = {
    403: "not_in_match: SIDECAR_MATCH_STRICT is on and a player brings none of the match's "
    "tickets (or the roster is a count); nothing changed."
}
UNAUTHORIZED = "Missing or wrong bearer token (also: not ASCII)."


def body_errors(required: bool) -> dict[int, str]:
    """What any route with a body may answer about the body (api_wire's limits)."""
    malformed = "Malformed JSON (NaN and Infinity are not JSON)"
    return {
        400: malformed + (", or no body." if required else "."),
        408: "The body did not arrive within 10 s; the connection is closed.",
        413: "The body is larger than 64 KiB.",
        422: "Valid JSON of the wrong shape: not an object, an unknown field, a value out of "
        "range, nesting deeper than 64 levels, or a roster over its cap of 10,000 ids; "
        "unknown_ticket for a connect naming a ticket the match does not have.",
    }


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/healthz",
        "healthz",
        "healthz",
        Tag.SERVICE,
        "Sidecar liveness (never needs the token).",
        Answer(200, "The sidecar is up.", "HealthzBody"),
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "metrics",
        Tag.SERVICE,
        "Prometheus text exposition (never needs the token).",
        Answer(200, "Prometheus text format 0.0.4.", media_type="text/plain", schema_type="string"),
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        "openapi",
        Tag.SERVICE,
        "This document (never needs the token).",
        Answer(200, "OpenAPI 3.1."),
    ),
    Route(
        "GET",
        "/v1/status",
        "status",
        "status",
        Tag.STATUS,
        "The whole state.",
        Answer(200, "The whole state of the sidecar.", "StatusBody"),
    ),
    Route(
        "POST",
        "/v1/ready",
        "ready",
        "ready",
        Tag.LIFECYCLE,
        "The game is ready: starting -> ready (200 also when repeated).",
        STATUS_AFTER,
        errors=CONFLICT,
    ),
    Route(
        "POST",
        "/v1/health",
        "health",
        "health",
        Tag.LIFECYCLE,
        "Heartbeat: arms (then feeds) the health timer.",
        Answer(200, "Heartbeat taken.", "HeartbeatBody"),
    ),
    Route(
        "POST",
        "/v1/activity",
        "activity",
        "activity",
        Tag.LIFECYCLE,
        "Restart the running idle timer, as if a player had just left.",
        STATUS_AFTER,
    ),
    Route(
        "GET",
        "/v1/players",
        "players",
        "players",
        Tag.PLAYERS,
        "The roster.",
        Answer(200, "The roster.", "RosterBody"),
    ),
    Route(
        "PUT",
        "/v1/players",
        "set_players",
        "setPlayers",
        Tag.PLAYERS,
        "Replace the whole roster: exactly these ids, or that many anonymous players.",
        Answer(200, "The new roster.", "RosterBody"),
        body="PlayersBody",
        errors=NOT_IN_MATCH,
    ),
    Route(
        "POST",
        "/v1/players/connect",
        "connect",
        "playerConnected",
        Tag.PLAYERS,
        "A player connected (idempotent per id), with the ticket it brings.",
        PLAYER_COUNT,
        body="ConnectBody",
        errors=NOT_IN_MATCH,
    ),
    Route(
        "POST",
        "/v1/players/disconnect",
        "disconnect",
        "playerDisconnected",
        Tag.PLAYERS,
        "A player left (idempotent).",
        PLAYER_COUNT,
        body="PlayerBody",
    ),
    Route(
        "POST",
        "/v1/hold",
        "hold",
        "hold",
        Tag.LIFECYCLE,
        "Suspend idle stops for n seconds (0 clears the hold).",
        STATUS_AFTER,
        body="HoldBody",
    ),
    Route(
        "GET",
        "/v1/match",
        "match",
        "match",
        Tag.MATCH,
        "The match the matchmaker made, its tickets and arrivals.",
        Answer(200, "The match.", "MatchBody"),
    ),
    Route(
        "GET",
        "/v1/match/tickets/{ticket_id}",
        "ticket",
        "ticket",
        Tag.MATCH,
        "One ticket: the game checks a joiner's ticket id in its handshake.",
        Answer(200, "The ticket.", "TicketBody"),
        errors={404: "unknown_ticket: not one of this match's tickets."},
    ),
    Route(
        "POST",
        "/v1/match/start",
        "match_start",
        "matchStart",
        Tag.MATCH,
        "A match started: -> active.",
        STATUS_AFTER,
        body="MatchStartBody",
        body_required=False,
        errors=CONFLICT,
    ),
    Route(
        "POST",
        "/v1/match/end",
        "match_end",
        "matchEnd",
        Tag.MATCH,
        "The match ended: stop with match_ended after the grace.",
        STOP_DECIDED,
        body="MatchEndBody",
        body_required=False,
    ),
    Route(
        "POST",
        "/v1/shutdown",
        "shutdown",
        "shutdown",
        Tag.LIFECYCLE,
        "Stop with shutdown_requested after the grace.",
        STOP_DECIDED,
        body="ShutdownBody",
        body_required=False,
    ),
    Route(
        "GET",
        "/v1/events",
        "events",
        "events",
        Tag.EVENTS,
        "Server-Sent Events: the current status, then one `state` event per change.",
        Answer(
            200,
            "A never-ending stream; each `data:` is a status object (StatusBody).",
            media_type="text/event-stream",
            schema_type="string",
        ),
        errors={429: "Too many subscribers (at most 64 at a time)."},
    ),
    Route(
        "GET",
        "/v1/deployment",
        "deployment",
        "deployment",
        Tag.STATUS,
        "The parsed platform variables; never a token.",
        Answer(200, "The deployment.", "DeploymentBody"),
    ),
)


def by_path() -> dict[str, list[Route]]:
    """The routes grouped by path, in table order (the app answers 405 per path)."""
    paths: dict[str, list[Route]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, []).append(route)
    return paths
