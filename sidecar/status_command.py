"""`edgegap-sidecar status` (SPEC §13): ask a running sidecar how it is doing.

The sidecar is found through `SIDECAR_URL`, else `SIDECAR_HOST`/`SIDECAR_PORT` (a wildcard bind
is reached over loopback), with `SIDECAR_API_TOKEN` when set — the variables a game started by
`run` already has, so `docker exec <container> edgegap-sidecar status` just works. Three
outputs: a table for people (values as the API writes them), `--json` (the `/v1/status` body
unchanged) and `--watch` (one line per `/v1/events` event until interrupted or the stream ends).

Exit 0 when the sidecar answered, 1 when nothing answered (or it refused: a 401 is printed).
Standard library only (http.client), like client.py: it runs inside game images, and must not
pay for aiohttp's import in a `docker exec`.

Every line it writes passes through `redaction.redact` with the tokens of the environment, and
the URL is only shown through `redact_url` (SIDECAR_URL may carry the token in its userinfo,
query or path): SPEC §4, a token never appears in status.
"""

from __future__ import annotations

import http.client
import json
import sys
import urllib.parse
from collections.abc import Mapping
from typing import Any, TextIO

from sidecar.addresses import local_url
from sidecar.client import EventParser
from sidecar.config.parsers import ASCII_SPACE, header_value_problem
from sidecar.config.parsers import host as parse_host
from sidecar.config.settings import environ_secrets
from sidecar.errors import ConfigError
from sidecar.redaction import redact, redact_url

# Connect and first-answer timeout: a sidecar that takes longer is as good as not answering.
TIMEOUT_SECONDS = 3.0
# A roster can hold 10,000 ids; the table shows the first few.
SHOWN_PLAYER_IDS = 10
_KNOWN_KEYS = {
    "state",
    "ready_source",
    "uptime_s",
    "timers",
    "players",
    "players_peak",
    "match_id",
    "match",
    "stop_reason",
    "stop_detail",
    "stop",
    "dry_run",
    "game",
    "deployment",
    "drain_deadline_in",
    "drain_deadline_unix",
}


class Target:
    """Where the sidecar is and how to talk to it (the token is never shown)."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url.rstrip("/")
        # How the URL is ever printed: no userinfo or query, and no token in the path.
        self.shown = redact(redact_url(self.url) or "", [token] if token else [])
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self._token = token

    def headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def connection(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT_SECONDS)
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_SECONDS)


def target_from_env(environ: Mapping[str, str]) -> Target:
    """The sidecar named by the environment; ConfigError naming the variable when malformed."""
    token = environ.get("SIDECAR_API_TOKEN", "").strip(ASCII_SPACE) or None
    if token is not None and header_value_problem(token) is not None:
        raise ConfigError("SIDECAR_API_TOKEN", "expected printable ASCII characters")
    url = environ.get("SIDECAR_URL", "").strip()
    # Checked before parsing: http.client would fail on a non-ASCII host or path with a
    # traceback, and an undecodable byte (a surrogate escape) cannot even be printed.
    if url and not (url.isascii() and url.isprintable()):
        raise ConfigError("SIDECAR_URL", "expected a URL like http://127.0.0.1:8787 (ASCII)")
    if url:
        try:
            parts = urllib.parse.urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
            parts = urllib.parse.urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ConfigError("SIDECAR_URL", "expected a URL like http://127.0.0.1:8787")
        return Target(url, token)
    try:
        # The sidecar's own rule: what it could not bind, it is not found at (and a host that
        # is not text would fail inside http.client with a traceback).
        host = parse_host(environ.get("SIDECAR_HOST", "").strip() or "127.0.0.1")
    except ValueError as exc:
        raise ConfigError("SIDECAR_HOST", str(exc)) from None
    port_text = environ.get("SIDECAR_PORT", "").strip() or "8787"
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text[:6]) <= 65535):
        raise ConfigError("SIDECAR_PORT", "expected the port of the running sidecar, 1-65535")
    return Target(local_url(host, int(port_text)), token)


def run_status(
    environ: Mapping[str, str], *, json_output: bool, watch: bool, out: TextIO = sys.stdout
) -> int:
    """The command: 0 when the sidecar answered, 1 when it did not (the reason on stderr)."""
    secrets = environ_secrets(environ)
    try:
        target = target_from_env(environ)
    except ConfigError as exc:
        raise ConfigError(exc.variable, redact(str(exc).partition(": ")[2], secrets)) from None
    shown = _Redacting(out, secrets)
    err = _Redacting(sys.stderr, secrets)
    try:
        if watch:
            return _watch(target, json_output, shown, err)
        body = _get_status(target)
    except _NoAnswer as exc:
        err.write(f"edgegap-sidecar status: {target.shown}: {exc}\n")
        return 1
    if json_output:
        shown.write(body.decode("utf-8", "replace") + "\n")
        return 0
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        err.write(f"edgegap-sidecar status: {target.shown}: the answer is not a status\n")
        return 1
    shown.write(render_table(status))
    return 0


class _Redacting:
    """A text stream whose every write passes through the one redaction first."""

    def __init__(self, stream: TextIO, secrets: list[str]) -> None:
        self._stream = stream
        self._secrets = secrets

    def write(self, text: str) -> None:
        self._stream.write(redact(text, self._secrets))

    def flush(self) -> None:
        self._stream.flush()


class _NoAnswer(Exception):
    """Nothing usable came back: refused, timed out, or an HTTP error (its code in the text)."""


def _request(target: Target, path: str, accept: str) -> tuple[Any, http.client.HTTPResponse]:
    connection = target.connection()
    try:
        connection.request("GET", target.prefix + path, headers=target.headers(accept))
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise _NoAnswer(_why(exc)) from None
    if response.status != 200:
        raw = response.read(64 * 1024)
        connection.close()
        raise _NoAnswer(_http_error(response.status, raw))
    return connection, response


def _get_status(target: Target) -> bytes:
    connection, response = _request(target, "/v1/status", "application/json")
    try:
        return bytes(response.read())
    except (OSError, http.client.HTTPException) as exc:
        raise _NoAnswer(_why(exc)) from None
    finally:
        connection.close()


def _watch(target: Target, json_output: bool, out: _Redacting, err: _Redacting) -> int:
    connection, response = _request(target, "/v1/events", "text/event-stream")
    # The first event comes at once; after that a quiet sidecar may send nothing for long.
    if connection.sock is not None:
        connection.sock.settimeout(None)
    parser = EventParser()
    try:
        while raw_line := response.readline():
            complete = parser.feed(raw_line)
            if complete is None:
                continue
            event, data = complete
            if json_output:
                out.write(data + "\n")
            else:
                out.write(render_event(event, data) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass  # the usual way to stop watching
    except (OSError, http.client.HTTPException, ValueError) as exc:
        err.write(f"edgegap-sidecar status: {target.shown}: stream ended: {_why(exc)}\n")
    finally:
        connection.close()
    return 0


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "nothing is listening (is the sidecar running? SIDECAR_URL / SIDECAR_PORT)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    return _clean(str(exc) or type(exc).__name__)


def _http_error(status: int, raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return _clean(f"HTTP {status} {error['code']}: {error['message']}")
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


def _clean(text: object, limit: int = 200) -> str:
    """A value from the API made safe for a terminal: control characters escaped, length cut."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))
    return shown if len(shown) <= limit else shown[:limit] + "…"


def _value(value: Any) -> str:
    """A value as the API writes it: strings as they are, the rest as compact JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return _clean(value)
    return _clean(json.dumps(value, separators=(",", ":")))


def render_table(status: Mapping[str, Any]) -> str:
    """The `/v1/status` body as aligned `name  value` lines for people."""
    rows: list[tuple[str, str]] = [("state", _value(status.get("state")))]
    if status.get("ready_source") is not None:
        rows.append(("ready source", _value(status["ready_source"])))
    if "uptime_s" in status:
        rows.append(("uptime", f"{_value(status['uptime_s'])} s"))
    timers = status.get("timers")
    if isinstance(timers, dict):
        left = [f"{_clean(name)} {_value(seconds)} s left" for name, seconds in timers.items()]
        rows.append(("timers", ", ".join(left) or "none running"))
    players = status.get("players")
    if isinstance(players, dict):
        ids = players.get("ids") or []
        shown = ", ".join(_clean(player, 60) for player in ids[:SHOWN_PLAYER_IDS])
        more = f" (+{len(ids) - SHOWN_PLAYER_IDS} more)" if len(ids) > SHOWN_PLAYER_IDS else ""
        listed = f": {shown}{more}" if shown else ""
        rows.append(("players", f"{_value(players.get('count'))}{listed}"))
    if "players_peak" in status:
        rows.append(("players peak", _value(status["players_peak"])))
    given_match = status.get("match")
    match: dict[str, Any] = given_match if isinstance(given_match, dict) else {}
    if status.get("match_id") is not None or match.get("expected"):
        shown = _value(status.get("match_id"))
        if match.get("expected"):  # SPEC §12: the matchmaker's players
            shown += f", {_value(match.get('arrived'))} of {_value(match['expected'])} arrived"
        rows.append(("match", shown))
    rows += _stop_rows(status)
    if "dry_run" in status:
        rows.append(("dry run", _value(status["dry_run"])))
    game = status.get("game")
    if isinstance(game, dict):
        running = "running" if game.get("running") else f"exited {_value(game.get('exit_code'))}"
        rows.append(("game", f"pid {_value(game.get('pid'))}, {running}"))
    deployment = status.get("deployment")
    if isinstance(deployment, dict) and deployment.get("request_id"):
        rows.append(("deployment", _value(deployment["request_id"])))
    # Whatever a newer sidecar adds still shows, as written.
    rows += [
        (_clean(key, 40).replace("_", " "), _value(value))
        for key, value in status.items()
        if key not in _KNOWN_KEYS and value is not None
    ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)


def _stop_rows(status: Mapping[str, Any]) -> list[tuple[str, str]]:
    reason = status.get("stop_reason")
    given = status.get("stop")
    stop: dict[str, Any] = given if isinstance(given, dict) else {}
    if reason is None and not stop.get("attempts"):
        return [("stop", "none decided")]
    detail = status.get("stop_detail")
    rows = [("stop", _value(reason) + (f" ({_value(detail)})" if detail else ""))]
    attempts = f"{_value(stop.get('attempts', 0))}, outcome {_value(stop.get('outcome'))}"
    if stop.get("last_status") is not None:
        attempts += f", last status {_value(stop['last_status'])}"
    if stop.get("last_error"):
        attempts += f", last error {_value(stop['last_error'])}"
    rows.append(("stop attempts", attempts))
    extra = {k: v for k, v in stop.items() if k not in ("attempts", "outcome", "last_status")}
    for key, value in extra.items():
        if key != "last_error" and value is not None:
            rows.append((f"stop {_clean(key, 40).replace('_', ' ')}", _value(value)))
    return rows


def render_event(event: str, data: str) -> str:
    """One `--watch` line: the event name, then the state, players and timers it carries."""
    try:
        status = json.loads(data)
    except ValueError:
        return f"{_clean(event)}  {_clean(data)}"
    if not isinstance(status, dict) or "state" not in status:
        return f"{_clean(event)}  {_value(status)}"
    parts = [f"state {_value(status.get('state'))}"]
    players = status.get("players")
    if isinstance(players, dict):
        parts.append(f"players {_value(players.get('count'))}")
    timers = status.get("timers")
    if isinstance(timers, dict) and timers:
        parts.append(", ".join(f"{_clean(k)} {_value(v)} s left" for k, v in timers.items()))
    if status.get("stop_reason") is not None:
        parts.append(f"stop {_value(status['stop_reason'])}")
    stop = status.get("stop")
    if isinstance(stop, dict) and stop.get("attempts"):
        parts.append(f"attempts {_value(stop['attempts'])} outcome {_value(stop.get('outcome'))}")
    return f"{_clean(event)}  " + "  ".join(parts)
