"""The dashboard (SPEC §13): a page in the browser that shows every deployment's status walk as
a timeline, and for one deployment its ports, environment, logs, its sidecar's own state, its
self-stop calls and the pending faults, with buttons to stop it and to inject a fault; a form
that makes a match (`POST /_emulator/matches`) and, for a match, its tickets and arrivals.

    GET /                                  302 → /_emulator/ui
    GET /_emulator/ui                      the page (ui/index.html)
    GET /_emulator/ui/{name}               its scripts and style sheet (ui/app.js, ui/match.js,
                                           ui/timeline.js, ui/style.css)
    GET /_emulator/timeline                {"now", "deployments": [{request_id, app_name, backed,
                                            current_status, statuses: [{status, at}],
                                            end_reason, error_detail}]}, every deployment the
                                            emulator made (terminated ones too), in creation
                                            order; times are Unix seconds
    GET /_emulator/deployments/{id}/env/masked
                                           the `env` of that deployment with every secret as
                                           `<redacted>`: what the page shows
    GET /_emulator/deployments/{id}/logs/masked?tail=200
                                           {source, total_lines, lines}: the last `tail`
                                           (1-5000) lines of its logs, or of its last output
                                           once the stop discarded them (`source`
                                           "last_output"), tokens redacted

Who may see what: the page and its files carry no secret (no token, no deployment data),
and a browser cannot put an `authorization` header on a navigation, so they are served without
one (`OPEN_ROUTES`). Everything the page shows comes from calls its script makes with
`authorization: token <TOKEN>`, like any other client of the control API; the token comes from
the URL fragment (`/_emulator/ui#token=…`: a fragment is never sent to a server nor written in
an access log) or the page's token field, and stays in the tab's sessionStorage. The files are
read from the package (`sidecar/emulator/ui/`), so the wheel and the standalone build carry
them; the page loads nothing from anywhere else, and its Content-Security-Policy says so.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from aiohttp import web

from sidecar.emulator.route_io import PlatformError
from sidecar.emulator.state import deployment_of, state_of
from sidecar.emulator.store import Deployment, utcnow
from sidecar.redaction import REDACTED, all_forms, redact_forms

PAGE = "/_emulator/ui"
# name -> content type; nothing else under ui/ is served.
_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "match.js": "text/javascript",
    "timeline.js": "text/javascript",
    "style.css": "text/css",
}
# Routes a browser reaches by navigating: no secret in them, so no token needed (app.py).
OPEN_ROUTES = frozenset({"control_ui_root", "control_ui_page", "control_ui_file"})
# Self-contained: the page may talk to this emulator only, and load nothing from elsewhere.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # A newer emulator serves a newer page: never a stale script against changed routes.
    "Cache-Control": "no-store",
}
# Variables whose name says they hold a secret, whatever the emulator knows about their value.
_DEFAULT_TAIL = 200
_MAX_TAIL = 5000
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY", re.IGNORECASE)


def _ui_file(name: str) -> bytes:
    return resources.files("sidecar.emulator").joinpath("ui", name).read_bytes()


async def root(request: web.Request) -> web.Response:
    # Returned, not raised: the error middleware turns a raised HTTPException into a JSON body.
    return web.Response(status=302, headers={"Location": PAGE})


async def page(request: web.Request) -> web.Response:
    return _file_response("index.html")


async def ui_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _FILES:
        raise web.HTTPNotFound()
    return _file_response(name)


def _file_response(name: str) -> web.Response:
    return web.Response(
        body=_ui_file(name), content_type=_FILES[name], charset="utf-8", headers=_HEADERS
    )


def _timeline_item(deployment: Deployment) -> dict[str, Any]:
    return {
        "request_id": deployment.request_id,
        "app_name": deployment.app_name,
        "backed": deployment.command is not None,
        "current_status": str(deployment.status),
        "statuses": [
            {"status": str(status), "at": moment.timestamp()}
            for status, moment in zip(deployment.history, deployment.history_times, strict=False)
        ],
        "end_reason": deployment.end_reason or None,
        "error_detail": deployment.error_detail or None,
    }


async def timeline(request: web.Request) -> web.Response:
    deployments = [_timeline_item(deployment) for deployment in state_of(request).store]
    return web.json_response({"now": utcnow().timestamp(), "deployments": deployments})


def masked_env(deployment: Deployment, api_token: str | None) -> dict[str, str]:
    """`deployment.env` fit to show: secret-named variables whole, and every form of the
    tokens the emulator knows (delete, context, the sidecar's, its own) wherever they occur."""
    forms = _secret_forms(deployment, api_token)
    return {
        name: REDACTED if _SECRET_NAME.search(name) and value else redact_forms(value, forms)
        for name, value in deployment.env.items()
    }


def _secret_forms(deployment: Deployment, api_token: str | None) -> list[str]:
    return all_forms(
        [
            deployment.delete_token,
            deployment.context_token,
            deployment.env.get("SIDECAR_API_TOKEN", ""),
            api_token or "",
        ]
    )


async def env_masked(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    return web.json_response(masked_env(deployment, state_of(request).options.api_token))


async def logs_masked(request: web.Request) -> web.Response:
    deployment = deployment_of(request)
    try:
        tail = int(request.query.get("tail", str(_DEFAULT_TAIL)))
    except ValueError:
        raise PlatformError(400, "tail must be a whole number of lines") from None
    if not 1 <= tail <= _MAX_TAIL:
        raise PlatformError(400, f"tail must be between 1 and {_MAX_TAIL}")
    kept = deployment.logs is not None
    # Once the stop discarded the logs, the last output the emulator keeps for itself still
    # says why the deployment ended.
    raw = deployment.logs.kept() if deployment.logs is not None else bytes(deployment.output_tail)
    total, lines = _last_lines(raw, tail)
    forms = _secret_forms(deployment, state_of(request).options.api_token)
    return web.json_response(
        {
            "source": "logs" if kept else "last_output",
            "total_lines": total,
            "lines": [redact_forms(line, forms) for line in lines],
        }
    )


def _last_lines(raw: bytes, count: int) -> tuple[int, list[str]]:
    """How many lines `raw` has, and its last `count` decoded. The page asks every second
    and a game's logs grow without bound: only the tail is decoded, never the whole."""
    body = raw[:-1] if raw.endswith(b"\n") else raw
    total = body.count(b"\n") + 1 if raw else 0
    start = len(body)
    for _ in range(min(count, total)):
        start = body.rfind(b"\n", 0, start)
        if start < 0:
            break
    if total == 0:
        return 0, []
    text = body[start + 1 :].decode("utf-8", errors="replace")
    return total, [line.removesuffix("\r") for line in text.split("\n")]


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", root, name="control_ui_root")
    router.add_get(PAGE, page, name="control_ui_page")
    router.add_get(PAGE + "/{name}", ui_file, name="control_ui_file")
    router.add_get("/_emulator/timeline", timeline, name="control_timeline")
    router.add_get(
        "/_emulator/deployments/{request_id}/env/masked", env_masked, name="control_env_masked"
    )
    router.add_get(
        "/_emulator/deployments/{request_id}/logs/masked", logs_masked, name="control_logs_masked"
    )
