"""A scripted, hostile stand-in for the self-stop endpoint, on loopback.

The emulator plays the platform faithfully; this server plays it badly, at the byte level, in
ways aiohttp's server would refuse to: headers that trickle, bodies that never end, a reset in
the middle of an answer, `charset=base64`, a port that refuses connections.

One server per fault-matrix cell, on its own port. Its script says what attempt N gets; once the
script is spent every attempt gets `then` (a plain 200 unless told). Every DELETE that reaches it
is recorded with its arrival time (the test's loop clock), its headers and what it was answered,
and an `on_request` hook runs the moment its head is read, so a test can look at the sidecar's
output as it stood when the DELETE arrived.

One answer depends on the request: `LOG_STORAGE_400` is a 400 to a DELETE that carries
`container_log_storage` (the platform refusing a storage it does not know) and a 200 to one that
does not; the request log shows which of the two was played.

"connection refused" is played by the port, not by an answer: while it is the next entry of
the script the port is bound but not listening (connect() gets ECONNREFUSED at once), until the
test calls `resume()` once it has seen the sidecar count the refused attempt. The listening and
the parked socket share the port with SO_REUSEPORT, so the port is never free in between for
another socket to take.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import quote

# Kinds of answer, grouped by what the sidecar must make of them (SPEC §6, §7).
ACCEPTING = "accepting"  # the stop is done: 2xx, 404, 410
PERMANENT = "permanent"  # give up: 400, 401, 403, other 3xx/4xx
RETRYABLE = "retryable"  # try again: 408, 429, 5xx, no answer

REFUSED = "connection refused"

Play = Callable[[asyncio.StreamWriter, "Request"], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    name: str
    kind: str
    play: Play | None  # None: played by the port (REFUSED)
    # The attempt gets no status line within any attempt timeout: it ends by the sidecar's
    # own deadline, not by the answer.
    hangs: bool = False


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    arrived: float
    answer: str = ""


def _head(status: int, reason: str, headers: dict[str, str], length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _simple(status: int, reason: str, body: bytes = b"", **headers: str) -> Play:
    async def play(writer: asyncio.StreamWriter, request: Request) -> None:
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        writer.write(_head(status, reason, named, len(body)) + body)
        await writer.drain()

    return play


def _retry_after(value: Callable[[], str]) -> Play:
    async def play(writer: asyncio.StreamWriter, request: Request) -> None:
        body = b'{"message": "slow down"}'
        writer.write(_head(429, "Too Many Requests", {"Retry-After": value()}, len(body)) + body)
        await writer.drain()

    return play


async def _slow_body(writer: asyncio.StreamWriter, request: Request) -> None:
    # The status is known at once; the body trickles for far longer than an attempt may take.
    writer.write(_head(200, "OK", {"Content-Type": "application/json"}, 10_000))
    for _ in range(100):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.2)


async def _huge_body(writer: asyncio.StreamWriter, request: Request, status: int = 200) -> None:
    size = 300 * 1024 * 1024
    writer.write(_head(status, "OK" if status == 200 else "Service Unavailable", {}, size))
    block = b"x" * (1 << 20)
    for _ in range(size // len(block)):
        writer.write(block)
        await writer.drain()  # raises once the client hangs up, which ends the answer


async def _huge_error_body(writer: asyncio.StreamWriter, request: Request) -> None:
    await _huge_body(writer, request, status=503)


async def _hang(writer: asyncio.StreamWriter, request: Request) -> None:
    await asyncio.sleep(3600)


async def _slow_headers(writer: asyncio.StreamWriter, request: Request) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 200:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.25)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER 0: close() sends RST, not FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _reset_mid_headers(writer: asyncio.StreamWriter, request: Request) -> None:
    writer.write(b"HTTP/1.1 503 Service Unav")
    await writer.drain()
    await asyncio.sleep(0.05)
    _reset(writer)


async def _reset_mid_body(writer: asyncio.StreamWriter, request: Request) -> None:
    writer.write(_head(503, "Service Unavailable", {}, 1000) + b'{"message": "ha')
    await writer.drain()
    await asyncio.sleep(0.05)
    _reset(writer)


async def _reset_at_once(writer: asyncio.StreamWriter, request: Request) -> None:
    _reset(writer)


async def _token_echo(writer: asyncio.StreamWriter, request: Request) -> None:
    token = request.headers.get("authorization", "")
    # The token at offset 280 (where a cut at 300 characters would leave most of it), then
    # URL-encoded, as platforms echo request URLs back.
    body = ("e" * 280 + token + " url=" + quote(token, safe="")).encode()
    writer.write(_head(503, "Service Unavailable", {}, len(body)) + body)
    await writer.drain()


def _past_date() -> str:
    return formatdate(time.time() - 3600, usegmt=True)


def _near_date() -> str:
    return formatdate(time.time() + 1, usegmt=True)


ANSWERS: dict[str, Answer] = {
    answer.name: answer
    for answer in (
        Answer("200 json", ACCEPTING, _simple(200, "OK", b'{"message": "ok"}')),
        Answer("200 empty", ACCEPTING, _simple(200, "OK")),
        Answer("202", ACCEPTING, _simple(202, "Accepted", b"{}")),
        Answer(
            "200 html", ACCEPTING, _simple(200, "OK", b"<html>\xff\xfe", content_type="text/html")
        ),
        Answer(
            "200 charset=base64",
            ACCEPTING,
            _simple(200, "OK", b"aGk=", content_type="text/plain; charset=base64"),
        ),
        Answer("200 slow body", ACCEPTING, _slow_body),
        Answer("200 huge body", ACCEPTING, _huge_body),
        Answer("404", ACCEPTING, _simple(404, "Not Found", b'{"message": "gone"}')),
        Answer("410", ACCEPTING, _simple(410, "Gone")),
        Answer("400", PERMANENT, _simple(400, "Bad Request", b'{"message": "bad"}')),
        Answer("401", PERMANENT, _simple(401, "Unauthorized", b'{"message": "who"}')),
        Answer("403", PERMANENT, _simple(403, "Forbidden")),
        Answer("301", PERMANENT, _simple(301, "Moved", location="http://127.0.0.1:1/")),
        Answer("307", PERMANENT, _simple(307, "Temporary Redirect", location="/elsewhere")),
        Answer("408", RETRYABLE, _simple(408, "Request Timeout")),
        Answer("429 Retry-After 1", RETRYABLE, _retry_after(lambda: "1")),
        Answer("429 Retry-After date", RETRYABLE, _retry_after(_near_date)),
        Answer("429 Retry-After past date", RETRYABLE, _retry_after(_past_date)),
        Answer("429 Retry-After 0", RETRYABLE, _retry_after(lambda: "0")),
        Answer("429 Retry-After garbage", RETRYABLE, _retry_after(lambda: "\u00b3")),
        Answer("500", RETRYABLE, _simple(500, "Internal Server Error", b"oops")),
        Answer(
            "503 charset=base64",
            RETRYABLE,
            _simple(503, "Unavailable", b"!!", content_type="text/plain; charset=base64"),
        ),
        Answer("503 token echo", RETRYABLE, _token_echo),
        Answer("503 huge body", RETRYABLE, _huge_error_body),
        Answer("reset at once", RETRYABLE, _reset_at_once),
        Answer("reset mid-headers", RETRYABLE, _reset_mid_headers),
        Answer("reset mid-body", RETRYABLE, _reset_mid_body),
        Answer("accept and hang", RETRYABLE, _hang, hangs=True),
        Answer("slow headers", RETRYABLE, _slow_headers, hangs=True),
        Answer(REFUSED, RETRYABLE, None),
    )
}


# The platform refusing the log choice, not the stop (SPEC §11 Round 2). Kept out of ANSWERS (the
# table docs/reliability.md lists): it is played as one of them, "400" or "200 json".
LOG_STORAGE_400 = "400 to container_log_storage"
REQUEST_DEPENDENT: dict[str, Answer] = {
    # What the sidecar must make of it: try again (without the parameter) until accepted.
    LOG_STORAGE_400: Answer(LOG_STORAGE_400, RETRYABLE, None),
}


def answer_named(name: str) -> Answer:
    """An answer of ANSWERS or REQUEST_DEPENDENT."""
    return ANSWERS[name] if name in ANSWERS else REQUEST_DEPENDENT[name]


def carries_log_storage(request: Request) -> bool:
    return any(
        part.partition("=")[0] == "container_log_storage" for part in request.query.split("&")
    )


def _played(name: str, request: Request) -> str:
    """The name of the answer actually played (a request-dependent one resolved)."""
    if name == LOG_STORAGE_400:
        return "400" if carries_log_storage(request) else "200 json"
    return name


def _port_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@dataclass
class HostilePlatform:
    """The server for one cell: `async with HostilePlatform(script) as platform`."""

    script: list[str]
    on_request: Callable[[Request], None] | None = None
    then: str = "200 json"  # every attempt once the script is spent
    requests: list[Request] = field(default_factory=list)
    first_request: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None
    _parked: socket.socket | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name in [*self.script, self.then]:
            assert name in ANSWERS or name in REQUEST_DEPENDENT, name
        self._pending = list(self.script)

    def url(self, deployment: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1/self/stop/{deployment}/ap-1"

    @property
    def refusing(self) -> bool:
        return self._parked is not None

    async def __aenter__(self) -> HostilePlatform:
        sock = _port_socket()
        self.port = sock.getsockname()[1]
        if self._pending and self._pending[0] == REFUSED:
            self._parked = sock
        else:
            await self._listen(sock)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        if self._parked is not None:
            self._parked.close()
            self._parked = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _listen(self, sock: socket.socket) -> None:
        sock.listen(64)
        self._server = await asyncio.start_server(self._serve, sock=sock)

    def _refuse(self) -> None:
        """Stop listening; the port stays ours (parked) so the next connect() is refused."""
        self._parked = _port_socket(self.port)
        if self._server is not None:
            self._server.close()
            self._server = None

    def resume(self) -> None:
        """The refused attempt was seen: consume it and listen again. The socket listens at
        once (connections wait in its backlog); the server that accepts them follows."""
        assert self._parked is not None
        assert self._pending[0] == REFUSED
        self._pending.pop(0)
        sock, self._parked = self._parked, None
        task = asyncio.ensure_future(self._listen(sock))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:  # keep-alive: several attempts may share one connection
                if not await self._one(reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            self._handlers.discard(task)
            writer.transport.abort()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        arrived = asyncio.get_running_loop().time()
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        path, _, query = target.partition("?")
        request = Request(method, path, query, headers, arrived)
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request(request)
        self.first_request.set()
        name = _played(self._pending.pop(0) if self._pending else self.then, request)
        request.answer = name
        play = ANSWERS[name].play
        assert play is not None
        await play(writer, request)
        if self._pending and self._pending[0] == REFUSED:
            # The next attempt must open a new connection to be refused, not reuse this one.
            self._refuse()
            return False
        return not writer.is_closing()
