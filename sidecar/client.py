"""A small synchronous client for the sidecar's local HTTP API (SPEC §7).

Meant for Python game servers, scripts and the examples. It uses only the standard library so it
can be copied into a game's source tree as this one file; nothing here imports the rest of the
`sidecar` package.

    client = SidecarClient()              # SIDECAR_HOST / SIDECAR_PORT / SIDECAR_API_TOKEN
    client.ready()
    with Heartbeat(client, interval=5):
        client.connect("player-1")
        ...
        client.match_end(result={"winner": "player-1"})

    with client.events() as stream:       # Server-Sent Events: ("state", status) per change
        for event, data in stream:
            ...

Errors:

    SidecarClientError            base of everything this module raises
    ├── SidecarConnectionError    the sidecar could not be reached (refused, timeout, reset)
    └── SidecarAPIError           the sidecar answered with an HTTP error and an error body

Over 400 lines on purpose: games copy this one stdlib-only file, so it cannot be split.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

__all__ = [
    "DEFAULT_BASE_URL",
    "EventParser",
    "EventStream",
    "Heartbeat",
    "SidecarAPIError",
    "SidecarClient",
    "SidecarClientError",
    "SidecarConnectionError",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8787"

JSONDict = dict[str, Any]


class SidecarClientError(Exception):
    """Base class for errors raised by this client."""


class SidecarConnectionError(SidecarClientError):
    """The sidecar could not be reached, or the connection broke mid-request."""


class SidecarAPIError(SidecarClientError):
    """The sidecar answered with an HTTP error status.

    `code` and `message` come from the `{"error": {"code", "message"}}` body; when the body is
    not in that shape (a proxy, a crash page) `code` is `http_<status>` and `message` the raw text.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _base_url_from_env() -> str:
    host = os.environ.get("SIDECAR_HOST", "").strip() or "127.0.0.1"
    port = os.environ.get("SIDECAR_PORT", "").strip() or "8787"
    # SIDECAR_HOST is the sidecar's *bind* address; a wildcard bind is reached over loopback.
    # The rule of sidecar.addresses.local_url, copied so that this file stands alone
    # (tests/test_client.py checks that the two agree).
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class SidecarClient:
    """Calls the local API. Safe to share between threads: every call opens its own connection.

    For the first `startup_wait` seconds after the client is created, and only until the sidecar
    has answered once, a refused connection is retried with a short backoff: a game started by a
    script may come up before its sidecar. Afterwards a refused connection fails at once (the
    sidecar has gone away, and waiting would only stall the game loop).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 2.0,
        *,
        startup_wait: float = 10.0,
    ) -> None:
        url = base_url or _base_url_from_env()
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must look like http://host:port, got {url!r}")
        self.base_url = url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        env_token = os.environ.get("SIDECAR_API_TOKEN") or None
        self._token = token if token is not None else env_token
        self.timeout = timeout
        self.startup_wait = startup_wait
        self._reached = threading.Event()
        self._startup_deadline = time.monotonic() + startup_wait

    def __repr__(self) -> str:
        # The token is a secret: never part of the repr, logs or errors.
        return f"SidecarClient({self.base_url!r})"

    # ----------------------------------------------------------------- lifecycle calls

    def ready(self) -> JSONDict:
        """`POST /v1/ready`: the game is ready to accept players."""
        return self._call("POST", "/v1/ready")

    def health(self) -> JSONDict:
        """`POST /v1/health`: one heartbeat (the first one arms the health timer)."""
        return self._call("POST", "/v1/health")

    def activity(self) -> JSONDict:
        """`POST /v1/activity`: postpone the idle timers as if a player had just left."""
        return self._call("POST", "/v1/activity")

    def connect(self, player_id: str) -> int:
        """`POST /v1/players/connect`; returns the player count. Idempotent per id."""
        return int(self._call("POST", "/v1/players/connect", {"player_id": player_id})["count"])

    def disconnect(self, player_id: str) -> int:
        """`POST /v1/players/disconnect`; returns the player count. Idempotent per id."""
        body = {"player_id": player_id}
        return int(self._call("POST", "/v1/players/disconnect", body)["count"])

    def set_players(self, ids: list[str] | None = None, count: int | None = None) -> JSONDict:
        """`PUT /v1/players`: replace the roster with exactly `ids`, or with `count` anonymous."""
        if (ids is None) == (count is None):
            raise ValueError("set_players needs exactly one of ids= or count=")
        body: JSONDict = {"player_ids": list(ids)} if ids is not None else {"count": count}
        return self._call("PUT", "/v1/players", body)

    def players(self) -> JSONDict:
        """`GET /v1/players`: `{"count": n, "ids": [...]}`."""
        return self._call("GET", "/v1/players")

    def hold(self, seconds: float) -> JSONDict:
        """`POST /v1/hold`: suspend idle stops for `seconds` (0 clears the hold)."""
        return self._call("POST", "/v1/hold", {"seconds": seconds})

    def match_start(self, match_id: str | None = None) -> JSONDict:
        """`POST /v1/match/start`: the server becomes `active`."""
        body: JSONDict = {} if match_id is None else {"match_id": match_id}
        return self._call("POST", "/v1/match/start", body)

    def match_end(self, result: Any = None, grace_seconds: float | None = None) -> JSONDict:
        """`POST /v1/match/end`: stop with `match_ended` after the grace period.

        `result` is any JSON value up to 16 KiB; it appears in the sidecar's stop log line.
        """
        body: JSONDict = {}
        if result is not None:
            body["result"] = result
        if grace_seconds is not None:
            body["grace_seconds"] = grace_seconds
        return self._call("POST", "/v1/match/end", body)

    def shutdown(
        self,
        reason: str | None = None,
        grace_seconds: float | None = None,
        log_storage: str | None = None,
    ) -> JSONDict:
        """`POST /v1/shutdown`: stop with `shutdown_requested`."""
        body: JSONDict = {}
        if reason is not None:
            body["reason"] = reason
        if grace_seconds is not None:
            body["grace_seconds"] = grace_seconds
        if log_storage is not None:
            body["log_storage"] = log_storage
        return self._call("POST", "/v1/shutdown", body)

    def status(self) -> JSONDict:
        """`GET /v1/status`: state, stop reason, players, timers, deployment."""
        return self._call("GET", "/v1/status")

    def deployment(self) -> JSONDict:
        """`GET /v1/deployment`: the parsed platform variables (never a token)."""
        return self._call("GET", "/v1/deployment")

    def healthz(self) -> JSONDict:
        """`GET /healthz`: sidecar liveness, no token needed."""
        return self._call("GET", "/healthz")

    def events(self, timeout: float | None = None) -> EventStream:
        """Subscribe to `GET /v1/events`; iterate the result for `(event, data)` pairs.

        The subscription is open when this returns, so a state change made afterwards is
        never missed. `timeout` bounds each wait for the next bytes (None waits forever, the
        usual choice for a background watcher). Close the stream, or use it as a context
        manager, to drop the connection.
        """
        conn, response = self._open("GET", "/v1/events", None, timeout=timeout, stream=True)
        if response.status >= 400:
            try:
                raise self._api_error(response.status, response.read())
            finally:
                conn.close()
        return EventStream(conn, response, self.base_url)

    # ----------------------------------------------------------------- transport

    def _call(self, method: str, path: str, body: JSONDict | None = None) -> JSONDict:
        conn, response = self._open(method, path, body, timeout=self.timeout, stream=False)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise SidecarConnectionError(
                f"{method} {path}: reading the answer failed: {exc}"
            ) from exc
        finally:
            conn.close()
        if response.status >= 400:
            raise self._api_error(response.status, raw)
        if not raw:
            return {}
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise SidecarAPIError(
                response.status, "bad_response", f"not JSON: {raw[:200]!r}"
            ) from exc
        return decoded if isinstance(decoded, dict) else {"data": decoded}

    def _open(
        self,
        method: str,
        path: str,
        body: JSONDict | None,
        *,
        timeout: float | None,
        stream: bool,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        delay = 0.05
        while True:
            conn = self._connection(timeout)
            try:
                conn.request(method, self._prefix + path, body=payload, headers=headers)
                response = conn.getresponse()
            except ConnectionRefusedError as exc:
                conn.close()
                if self._reached.is_set() or time.monotonic() + delay > self._startup_deadline:
                    raise SidecarConnectionError(
                        f"{method} {path}: sidecar at {self.base_url} refused the connection"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise SidecarConnectionError(
                    f"{method} {path}: sidecar at {self.base_url} unreachable: {exc}"
                ) from exc
            self._reached.set()
            return conn, response

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    @staticmethod
    def _api_error(status: int, raw: bytes) -> SidecarAPIError:
        try:
            error = json.loads(raw)["error"]
            return SidecarAPIError(status, str(error["code"]), str(error["message"]))
        except (ValueError, KeyError, TypeError):
            text = raw.decode("utf-8", "replace").strip()[:500]
            return SidecarAPIError(status, f"http_{status}", text or http.client.responses[status])


class EventParser:
    """Server-Sent Events framing by the WHATWG event-stream rules, one line at a time.

    `feed(line)` returns `(event, data)` when the line completes an event: `event:` names it
    (default `message`), `data:` lines are joined with newlines, comment lines (keep-alives)
    are skipped. Shared by EventStream and the demo's asyncio reader, so both read alike.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, raw_line: bytes) -> tuple[str, str] | None:
        line = raw_line.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            event, data = self._event or "message", self._data
            self._event, self._data = "", []
            return (event, "\n".join(data)) if data else None
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        # `id` and `retry` only matter to auto-reconnecting browsers; ignored here.
        return None


class EventStream:
    """An open Server-Sent Events subscription: iterate for `(event, data)` pairs.

    Parsed by EventParser; the data is decoded as JSON (a non-object value arrives as
    `{"data": value}`).
    """

    def __init__(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, source: str
    ) -> None:
        self._conn = conn
        self._response = response
        self._source = source
        self._parser = EventParser()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> tuple[str, JSONDict]:
        while True:
            try:
                raw_line = self._response.readline()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # ValueError: the stream was closed by another thread while we waited.
                self.close()
                raise SidecarConnectionError(
                    f"event stream from {self._source} broke: {exc}"
                ) from exc
            if not raw_line:
                self.close()
                raise StopIteration
            complete = self._parser.feed(raw_line)
            if complete is not None:
                event, data = complete
                return event, _decode_event_data(data)

    def close(self) -> None:
        """Drop the connection; iteration then ends."""
        self._response.close()
        self._conn.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _decode_event_data(text: str) -> JSONDict:
    try:
        decoded = json.loads(text)
    except ValueError:
        return {"data": text}
    return decoded if isinstance(decoded, dict) else {"data": decoded}


class Heartbeat:
    """Calls `client.health()` every `interval` seconds on a daemon thread until stopped.

    A failed beat is reported to `on_error` (if given) and the thread keeps going: a transient
    error must not silence the heartbeat, or the sidecar would declare the game unhealthy.
    Use as a context manager, or call `start()` and `stop()` (once each: a stopped heartbeat
    is not restarted; make a new one).
    """

    def __init__(
        self,
        client: SidecarClient,
        interval: float = 5.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.client = client
        self.interval = interval
        self.on_error = on_error
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        """Send a first beat now, then one every `interval` seconds."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sidecar-heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop beating and wait for the thread (an in-flight beat is bounded by the client)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.health()
                self.beats += 1
            except SidecarClientError as exc:
                if self.on_error is not None:
                    self.on_error(exc)
            self._stop.wait(self.interval)
