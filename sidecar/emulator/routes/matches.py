"""`POST /_emulator/matches`: a deployment made the way Edgegap's matchmaker makes one, with the
`MM_*` variables of the match (`matches.py`), through the v2 deploy path. Control API: behind
`--api-token` like the other `/_emulator/` routes.

    POST /_emulator/matches {"app": NAME, "profile"?: str, "tickets": [{"id"?, "team"?,
                             "group"?, "player_ip"?, "attributes"?}], "deploy"?: {v2 deploy
                             fields}}
         → 201 {"request_id", "match_id", "ticket_ids"}; a body that does not fit → 400
         {"message", "details"?}; what the deploy itself refuses, as the deploy answers it
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from sidecar.emulator.matches import MatchBody, MatchError, build_match
from sidecar.emulator.models import DeployV2
from sidecar.emulator.route_io import PlatformError, parse_body
from sidecar.emulator.routes.deployments import create_v2

PATH = "/_emulator/matches"


def _deploy_body(app: str, fields: dict[str, Any]) -> DeployV2:
    if fields.get("application", app) != app:
        raise PlatformError(400, "deploy.application must be the match's app (or left out)")
    try:
        body = json.dumps({"version": "latest", **fields, "application": app})
        return DeployV2.model_validate_json(body, strict=True)
    except ValidationError as exc:
        details = [
            {
                "field": ".".join(("deploy", *(str(part) for part in error["loc"]))),
                "error": error["msg"],
            }
            for error in exc.errors()
        ]
        raise PlatformError(400, "Request body is invalid", {"details": details}) from None


async def create_match(request: web.Request) -> web.Response:
    body = await parse_body(request, MatchBody)
    deploy = _deploy_body(body.app, body.deploy)
    injected = [var.key for var in deploy.environment_variables if var.key.startswith("MM_")]
    if injected:
        raise PlatformError(
            400, f"deploy.environment_variables: {injected[0]} is the matchmaker's to set"
        )
    try:
        match = build_match(body)
    except MatchError as exc:
        raise PlatformError(400, str(exc)) from None
    deployment = create_v2(request, deploy, match.env)
    return web.json_response(
        {
            "request_id": deployment.request_id,
            "match_id": match.match_id,
            "ticket_ids": match.ticket_ids,
        },
        status=201,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, create_match, name="control_create_match")
