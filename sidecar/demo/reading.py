"""What the demo reads back: the sidecar's event stream, and from the emulator the accepted
self-stop call and the stored container logs with their `sidecar.stop` record."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from sidecar.client import EventParser
from sidecar.emulator import EmulatorServer
from sidecar.errors import DemoError

# What the example Agones games log as they set their `winner` label: `winner=bot-1 scores=…`
# (Python, None for no single winner) or `winner bot-1` (Node.js, `none`).
_WINNER = re.compile(r"\] match over: winner[= ](\S+)")


def winner_label(lines: list[str]) -> str | None:
    """The `winner` label an example Agones game set at the match's end, from its log line."""
    for line in lines:
        found = _WINNER.search(line)
        if found is not None:
            winner = found.group(1)
            return "none" if winner == "None" else winner
    return None


def stop_record(lines: list[str]) -> tuple[int, dict[str, Any]] | None:
    """Index and content of the `sidecar.stop` JSON line in the container logs, if any."""
    for index, line in enumerate(lines):
        if '"sidecar.stop"' not in line:
            continue
        try:
            record = json.loads(line[line.index("{") :])
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "sidecar.stop":
            return index, record
    return None


async def sse_events(stream: aiohttp.StreamReader) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Server-Sent Events as (event name, JSON data); comments and non-JSON data are skipped."""
    parser = EventParser()
    async for raw in stream:
        complete = parser.feed(raw)
        if complete is None:
            continue
        event, text = complete
        try:
            payload = json.loads(text)
        except ValueError:
            continue
        if isinstance(payload, dict):
            yield event, payload


async def self_stop_call(emulator: EmulatorServer, request_id: str) -> str | None:
    """The accepted self-stop call as the emulator recorded it (its token header left out)."""
    path = f"/v1/self/stop/{request_id}/"
    for entry in await emulator.requests(path_contains=path, method="DELETE"):
        if 200 <= int(entry["status"]) < 300:
            query = urllib.parse.urlencode(entry.get("query") or {})
            return f"DELETE {entry['path']}{'?' + query if query else ''} -> {entry['status']}"
    return None


async def stored_logs(emulator: EmulatorServer, request_id: str, step: str) -> list[str]:
    """The deployment's stored container logs, line by line; DemoError when there are none."""
    code, body = await emulator.call("GET", f"/v1/deployment/{request_id}/container-logs")
    if code != 200 or not isinstance(body, dict):
        raise DemoError(
            step, f"GET /v1/deployment/{request_id}/container-logs answered {code}: {body}"
        )
    return str(body.get("logs") or "").splitlines()
