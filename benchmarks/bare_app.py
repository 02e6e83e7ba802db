"""The floor for the local API benchmark: a bare aiohttp app answering the same routes.

`POST /v1/health`, `GET /v1/status` and `GET /healthz` return byte-for-byte the bodies the
sidecar returns (the status body is a real one, captured from `sidecar serve` in dry-run), with
the same content type, no middleware and no access log (the sidecar runs without one too). The
ratio sidecar / bare is then what the sidecar's own code costs per request.

Usage: ``python3 benchmarks/bare_app.py PORT`` (loopback only).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

HEALTH_BODY = b'{"ok":true}'
HEALTHZ_BODY = b'{"status":"ok"}'
# A real `GET /v1/status` body from a dry-run `sidecar serve` (371 bytes).
STATUS_BODY = (
    b'{"state":"starting","stop_reason":null,"stop_detail":null,"players":{"count":0,"ids":[]},'
    b'"players_peak":0,"timers":{"ready":298.855,"health":29.991},"uptime_s":1.145,'
    b'"ready_source":null,"match_id":null,"dry_run":true,"stop":{"attempts":0,"last_error":null,'
    b'"last_status":null,"outcome":null,"log_storage":null},'
    b'"deployment":{"request_id":null,"public_ip":null,"ports":[]}}'
)


def _constant(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return handler


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/health", _constant(HEALTH_BODY))
    app.router.add_get("/v1/status", _constant(STATUS_BODY), allow_head=False)
    app.router.add_get("/healthz", _constant(HEALTHZ_BODY), allow_head=False)
    return app


def main() -> None:
    port = int(sys.argv[1])
    web.run_app(build_app(), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
