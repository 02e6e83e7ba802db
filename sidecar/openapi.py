"""The OpenAPI 3.1 document of the local API, served at `GET /openapi.json`: generated from the
route table (`sidecar.routes`), the request models (`sidecar.models`) and the response shapes
(`sidecar.responses`), so it cannot drift from what the app serves, accepts and answers.

Both kinds of shape land in `components/schemas` through the same pydantic generator, with
pydantic's `$defs` rewritten to component references; what pydantic cannot express about the
request models (the printable-id rule, the roster's "exactly one of", prose) is added here.

For code generators: `servers` names the loopback address with the port as a variable (default
SIDECAR_PORT's default), every operation is tagged by route group (one API class each in a
generated client), and the roster's body is a `oneOf` of two named objects rather than a bare
`anyOf` of constraints, which generators drop.

The document describes the sidecar it is served by: with `SIDECAR_API_TOKEN` set, every `/v1/*`
operation requires the bearer scheme and may answer 401; without it, neither appears. It is
built once per variant and cached as bytes (~30 ms of imports and pydantic work, paid by the
first request, not by start-up).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from sidecar import __version__, models, responses
from sidecar.config import Settings
from sidecar.routes import ROUTES, TAG_DESCRIPTIONS, UNAUTHORIZED, Route, body_errors

REF_TEMPLATE = "#/components/schemas/{model}"
NO_CONTROL_CHARACTERS = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")

# Prose for the request models, kept here so that `sidecar.models` stays validation only.
_REQUEST_NOTES: dict[str, dict[str, str]] = {
    "PlayerBody": {"player_id": "1-128 printable characters."},
    "ConnectBody": {
        "player_id": "1-128 printable characters; a player whose id is a ticket id brings it.",
        "ticket_id": "The matchmaker ticket this player brings (422 unknown_ticket when it is "
        "not one of the match's).",
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


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=name)}


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The branch of an optional field's schema that is not `null`."""
    (branch,) = [s for s in schema["anyOf"] if s.get("type") != "null"]
    return dict(branch)


def _roster_alternatives(players: dict[str, Any]) -> dict[str, Any]:
    """PlayersBody's "exactly one of", which its model validator holds and pydantic cannot
    express, as two named objects: generators make a class of each and a union of the body
    (an `anyOf` of bare `required` lists makes openapi-python-client drop the operation). The
    wire is unchanged: these are the bodies the model accepts, without the explicit nulls."""
    fields = players["properties"]
    alternatives = {
        "PlayersByIds": ("player_ids", "The whole roster (each id 1-128 printable characters)."),
        "PlayersByCount": ("count", "That many anonymous players."),
    }
    schemas: dict[str, Any] = {}
    for name, (field_name, note) in alternatives.items():
        schemas[name] = {
            "type": "object",
            "title": name,
            "properties": {field_name: {**_non_null(fields[field_name]), "description": note}},
            "required": [field_name],
            "additionalProperties": False,
        }
    schemas["PlayersBody"] = {
        "title": "PlayersBody",
        "description": 'Exactly one of "player_ids" or "count" (422 otherwise).',
        "oneOf": [_ref(name) for name in alternatives],
    }
    return schemas


def _components() -> dict[str, Any]:
    request_models = sorted({route.body for route in ROUTES if route.body is not None})
    modes: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (name, "validation", TypeAdapter(getattr(models, name))) for name in request_models
    ] + [(name, "serialization", TypeAdapter(shape)) for name, shape in responses.SHAPES.items()]
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
    for model, notes in _REQUEST_NOTES.items():
        for field_name, note in notes.items():
            schemas[model]["properties"][field_name]["description"] = note
    schemas.update(_roster_alternatives(schemas["PlayersBody"]))
    return dict(sorted(schemas.items()))


# --- operations --------------------------------------------------------------------------------
def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json_response(description, _ref("ErrorBody"))


def _operation(route: Route, token_required: bool) -> dict[str, Any]:
    answer = route.answer
    schema = _ref(answer.shape) if answer.shape else {"type": answer.schema_type}
    responses_: dict[str, Any] = {
        str(answer.status): {
            "description": answer.description,
            "content": {answer.media_type: {"schema": schema}},
        }
    }
    errors = dict(route.errors)
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag.value],
    }
    parameters = _PATH_PARAMETER.findall(route.path)
    if parameters:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in parameters
        ]
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
        if not route.body_required:
            operation["requestBody"]["description"] = (
                "Optional: an empty body means every field is omitted."
            )
        errors.update(body_errors(route.body_required))
    if token_required and route.needs_token:
        operation["security"] = [{"bearer": []}]
        errors[401] = UNAUTHORIZED
    for status, description in errors.items():
        responses_[str(status)] = _error(description)
    operation["responses"] = dict(sorted(responses_.items()))
    return operation


def _paths(token_required: bool) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, token_required)
    return paths


def _document(token_required: bool) -> dict[str, Any]:
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
        "servers": [
            {
                "url": "http://127.0.0.1:{port}",
                "description": "The sidecar beside the game, on loopback.",
                "variables": {
                    "port": {"default": str(Settings().port), "description": "SIDECAR_PORT."}
                },
            }
        ],
        "tags": [
            {"name": tag.value, "description": description}
            for tag, description in TAG_DESCRIPTIONS.items()
        ],
        "paths": _paths(token_required),
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
    return document


def document(token_required: bool) -> dict[str, Any]:
    """The document as data (a fresh copy: callers may change it)."""
    parsed: dict[str, Any] = json.loads(document_bytes(token_required))
    return parsed


@functools.cache
def document_bytes(token_required: bool) -> bytes:
    """The served bytes, built once per variant."""
    return json.dumps(_document(token_required), separators=(",", ":")).encode()
