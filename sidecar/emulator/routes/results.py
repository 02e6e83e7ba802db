"""The result sink (`--result-sink`): where a sidecar's `SIDECAR_RESULT_URL` can point to
rehearse result delivery (SPEC §12). The store and its rules are in `results.py`.

    POST   /_emulator/results     a delivery: 201 {"delivered": true, "id", "idempotency_key"};
                                  a repeated Idempotency-Key answers its first answer again;
                                  not JSON → 400, not application/json → 415, not a
                                  delivery → 400 {"message", "details"}. Open (no management
                                  token: the sidecar sends its own `Bearer` one, recorded
                                  redacted); its faults target `result_sink`
    GET    /_emulator/results?match_id=
                                  {"results": [{id, received_at, idempotency_key,
                                   authorization (redacted), replays, problems, body}],
                                   "dropped": n}
    DELETE /_emulator/results     {"cleared": n}

Without `--result-sink` none of these exist (404).
"""

from __future__ import annotations

import json

from aiohttp import web

from sidecar.emulator.results import body_problems, redact
from sidecar.emulator.route_io import PlatformError
from sidecar.emulator.state import STATE_KEY, state_of

PATH = "/_emulator/results"
# The platform route name faults target (`POST /_emulator/faults {"target": "result_sink"}`).
ROUTE = "result_sink"


async def deliver(request: web.Request) -> web.Response:
    state = state_of(request)
    sink = state.results
    key = request.headers.get("Idempotency-Key") or None
    replayed = sink.replay(key)
    if replayed is not None:
        status, answer = replayed
        return web.json_response(answer, status=status, headers={"Idempotent-Replayed": "true"})
    if request.content_type != "application/json":
        raise PlatformError(415, "A delivery is sent as Content-Type: application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise PlatformError(400, "Request body is not valid JSON") from None
    details = body_problems(body)
    if details:
        raise PlatformError(400, "Not a result delivery (SPEC §12)", {"details": details})
    authorization = redact(request.headers.get("Authorization"), state.options.show_tokens)
    status, answer = sink.accept(body, key, authorization)
    return web.json_response(answer, status=status)


async def list_results(request: web.Request) -> web.Response:
    sink = state_of(request).results
    entries = sink.entries(request.query.get("match_id"))
    return web.json_response({"results": entries, "dropped": sink.dropped})


async def clear_results(request: web.Request) -> web.Response:
    return web.json_response({"cleared": state_of(request).results.clear()})


def add_routes(app: web.Application) -> None:
    if not app[STATE_KEY].options.result_sink:
        return
    app.router.add_post(PATH, deliver, name=ROUTE)
    app.router.add_get(PATH, list_results, name="control_list_results")
    app.router.add_delete(PATH, clear_results, name="control_clear_results")
