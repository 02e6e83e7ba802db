"""A scripted, hostile stand-in for the self-stop endpoint, on loopback.

The emulator plays the platform faithfully; this server plays it badly, at the byte level, in
ways aiohttp's server would refuse to: headers that trickle, bodies that never end, a reset in
the middle of an answer, `charset=base64`. Each deployment (the request id in the path) has its
own script: answer N goes to attempt N, and once the script is spent every attempt gets a plain
200. Every DELETE is recorded with its arrival time (the test's loop clock) and what it was
answered, so a test can count accepted stops and check what arrived after a signal.
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

# Kinds of answer, grouped by what the sidecar must make of them (SPEC §6).
ACCEPTING = "accepting"  # the stop is done: 2xx, 404, 410
PERMANENT = "permanent"  # give up: 400, 401, 403, 3xx
RETRYABLE = "retryable"  # try again: 408, 429, 5xx, no answer


@dataclass(frozen=True)
class Answer:
    name: str
    kind: str
    play: Callable[[asyncio.StreamWriter, Request], Awaitable[None]]


@dataclass
class Request:
    deployment: str
    path: str
    query: str
    headers: dict[str, str]
    arrived: float
    answer: str = ""


@dataclass
class Script:
    answers: list[str]
    token_echo: str = ""
    requests: list[Request] = field(default_factory=list)
    first_request: asyncio.Event = field(default_factory=asyncio.Event)


def _head(status: int, reason: str, headers: dict[str, str], length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _simple(
    status: int, reason: str, body: bytes = b"", **headers: str
) -> Callable[[asyncio.StreamWriter, Request], Awaitable[None]]:
    async def play(writer: asyncio.StreamWriter, request: Request) -> None:
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        writer.write(_head(status, reason, named, len(body)) + body)
        await writer.drain()

    return play


def _retry_after(
    value: Callable[[], str],
) -> Callable[[asyncio.StreamWriter, Request], Awaitable[None]]:
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


def _token_echo(script_token: Callable[[Request], str]) -> Callable[..., Awaitable[None]]:
    async def play(writer: asyncio.StreamWriter, request: Request) -> None:
        token = script_token(request)
        # The token at offset 280 (where a cut at 300 characters would leave most of it), then
        # URL-encoded, as platforms echo request URLs back.
        from urllib.parse import quote

        body = ("e" * 280 + token + " url=" + quote(token, safe="")).encode()
        writer.write(_head(503, "Service Unavailable", {}, len(body)) + body)
        await writer.drain()

    return play


def _past_date() -> str:
    return formatdate(time.time() - 3600, usegmt=True)


def _near_date() -> str:
    return formatdate(time.time() + 1, usegmt=True)


class HostilePlatform:
    """The server. `answers` maps each answer name to its behaviour."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self._server: asyncio.Server | None = None
        self.port = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._late_servers: list[asyncio.Server] = []
        self._late_tasks: list[asyncio.Task[None]] = []
        self.answers: dict[str, Answer] = {
            answer.name: answer
            for answer in (
                Answer("200 json", ACCEPTING, _simple(200, "OK", b'{"message": "ok"}')),
                Answer("200 empty", ACCEPTING, _simple(200, "OK")),
                Answer("202", ACCEPTING, _simple(202, "Accepted", b"{}")),
                Answer(
                    "200 html",
                    ACCEPTING,
                    _simple(200, "OK", b"<html>\xff\xfe", content_type="text/html"),
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
                Answer("503 token echo", RETRYABLE, _token_echo(self._token_of)),
                Answer("503 huge body", RETRYABLE, _huge_error_body),
                Answer("reset at once", RETRYABLE, _reset_at_once),
                Answer("reset mid-headers", RETRYABLE, _reset_mid_headers),
                Answer("reset mid-body", RETRYABLE, _reset_mid_body),
                Answer("accept and hang", RETRYABLE, _hang),
                Answer("slow headers", RETRYABLE, _slow_headers),
            )
        }

    def _token_of(self, request: Request) -> str:
        return request.headers.get("authorization", "")

    def script(self, deployment: str, answers: list[str]) -> Script:
        for name in answers:
            assert name in self.answers, name
        script = Script(list(answers))
        self.scripts[deployment] = script
        return script

    def url(self, deployment: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}/v1/self/stop/{deployment}/ap-1"

    async def __aenter__(self) -> HostilePlatform:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for late in self._late_tasks:
            late.cancel()
        for server in [self._server, *self._late_servers]:
            server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)

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
        parts = path.split("/")
        deployment = parts[4] if len(parts) > 4 else ""
        script = self.scripts.get(deployment)
        if method != "DELETE" or script is None:
            writer.write(_head(404, "Not Found", {}, 0))
            await writer.drain()
            return True
        request = Request(deployment, path, query, headers, arrived)
        index = len(script.requests)
        name = script.answers[index] if index < len(script.answers) else "200 json"
        request.answer = name
        script.requests.append(request)
        script.first_request.set()
        await self.answers[name].play(writer, request)
        return not writer.is_closing()

    def kind(self, name: str) -> str:
        return self.answers[name].kind


async def refusing_then_serving(platform: HostilePlatform, refuse_for: float) -> int:
    """A port that refuses connections for `refuse_for` seconds, then serves `platform`'s
    scripts: the "connection refused" platform fault, ending as an outage does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connect() gets ECONNREFUSED
    port: int = sock.getsockname()[1]

    async def listen_later() -> None:
        await asyncio.sleep(refuse_for)
        server = await asyncio.start_server(platform._serve, sock=sock)
        platform._late_servers.append(server)

    task = asyncio.create_task(listen_later())
    platform._late_tasks.append(task)
    return port
