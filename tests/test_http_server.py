"""The connection rules of http_server.ApiRunner on a real loopback port, with the 10 s and 60 s
timeouts shortened so that each rule is seen in a fraction of a second."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar import http_server
from sidecar.api import LocalApi
from sidecar.config import without_sidecar_variables
from sidecar.http_server import AcceptErrorLog, ApiRunner, connection_cap
from tests.conftest import ROOT, SidecarFactory

SHORT = 0.3


@contextlib.asynccontextmanager
async def serve(
    sc: Any, *, body_timeout: float = 10.0, **options: float
) -> AsyncIterator[tuple[ApiRunner, int]]:
    """The sidecar's own routes (its LocalApi app) on an ApiRunner with these timeouts."""
    agent = sc.agent
    api = LocalApi(
        agent.lifecycle,
        agent.status_view,
        agent.events,
        agent.requests,
        token=agent.api.token,
        body_timeout=body_timeout,
    )
    runner = ApiRunner(api.build_app(), access_log=None, **options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner, runner.addresses[0][1]
    finally:
        sc.agent.events.close()
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """Read until the server closes; fail if it keeps the connection longer than `within`."""
    data = b""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    return data


class TestHeaderTimeout:
    async def test_half_open_connection_is_closed(self, sidecar: SidecarFactory) -> None:
        """A connection that never finishes its request headers is closed after the header
        timeout, not kept for ever."""
        sc = await sidecar()
        async with serve(sc, header_timeout=SHORT) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.monotonic()
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert await closed_by_server(reader, 5) == b""
            assert time.monotonic() - started >= SHORT * 0.9
            writer.close()

    async def test_a_silent_connection_is_closed(self, sidecar: SidecarFactory) -> None:
        """A connection that sends nothing at all is closed after the header timeout."""
        sc = await sidecar()
        async with serve(sc, header_timeout=SHORT) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await closed_by_server(reader, 5) == b""
            writer.close()

    async def test_trickling_headers_do_not_keep_it_open(self, sidecar: SidecarFactory) -> None:
        """Headers sent a byte at a time are cut off at the header timeout even though bytes
        keep arriving."""
        sc = await sidecar()
        async with serve(sc, header_timeout=SHORT) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.monotonic()
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 200:
                    if reader.at_eof():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.02)  # the trickle itself is the test
            assert await closed_by_server(reader, 5) == b""
            assert time.monotonic() - started < SHORT + 2
            writer.close()

    async def test_completed_headers_cancel_the_timer(self, sidecar: SidecarFactory) -> None:
        """Once a request is parsed the timer stops: an event stream lives well past the
        header timeout and still gets events."""
        sc = await sidecar()
        async with serve(sc, header_timeout=SHORT) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                await reader.readuntil(b'"state":"starting"')
            await asyncio.sleep(SHORT * 3)  # proving that nothing happens
            await sc.call("POST", "/v1/ready")
            async with asyncio.timeout(5):
                await reader.readuntil(b'"state":"ready"')
            writer.close()

    async def test_next_request_on_a_kept_alive_connection_has_its_window(
        self, sidecar: SidecarFactory
    ) -> None:
        """After a first request, a second one whose headers never finish is cut off at the
        header timeout, not at the (longer) keep-alive timeout."""
        sc = await sidecar()
        async with serve(sc, header_timeout=SHORT, keepalive_timeout=30) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(5):
                await reader.readuntil(b'{"status":"ok"}')
            await asyncio.sleep(SHORT * 2)  # idle, within keep-alive: still open
            assert not reader.at_eof()
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            started = time.monotonic()
            assert await closed_by_server(reader, 5) == b""
            assert SHORT * 0.9 <= time.monotonic() - started < 5
            writer.close()


class TestKeepAlive:
    async def test_idle_keep_alive_connection_is_closed(self, sidecar: SidecarFactory) -> None:
        """An idle kept-alive connection is closed after the keep-alive timeout, and requests
        in between are served."""
        sc = await sidecar()
        async with serve(sc, header_timeout=10, keepalive_timeout=SHORT) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(3):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                async with asyncio.timeout(5):
                    await reader.readuntil(b'{"status":"ok"}')
            started = time.monotonic()
            assert await closed_by_server(reader, 5) == b""
            assert time.monotonic() - started >= SHORT * 0.5
            writer.close()

    def test_defaults_are_the_spec_values(self) -> None:
        """10 s for headers, 60 s idle keep-alive, accept errors once per 10 s (SPEC §11)."""
        assert http_server.HEADER_TIMEOUT == 10
        assert http_server.KEEPALIVE_TIMEOUT == 60
        assert http_server.ACCEPT_ERROR_LOG_INTERVAL == 10


class TestSlowClients:
    async def test_a_body_that_never_arrives_is_408(self, sidecar: SidecarFactory) -> None:
        """Headers announcing a body that never comes get a JSON 408 after the body deadline;
        the connection is closed."""
        sc = await sidecar()
        async with serve(sc, body_timeout=SHORT) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /v1/players/connect HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
            )
            raw = await closed_by_server(reader, 5)
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.split()[1] == b"408"
            assert json.loads(body)["error"]["code"] == "request_timeout"
            assert sc.agent.lifecycle.player_count == 0
            writer.close()

    async def test_a_client_that_does_not_read_answers_is_aborted(
        self, sidecar: SidecarFactory
    ) -> None:
        """Pipelined requests whose (large) answers the client never reads: the connection is
        aborted after the write-stall timeout instead of pinning its handler."""
        sc = await sidecar()
        sc.agent.lifecycle.set_players(ids=[f"player-{i:05d}-" + "x" * 100 for i in range(2000)])
        async with serve(sc, write_stall_timeout=SHORT) as (runner, port):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n" * 40)
            server = runner.server
            assert server is not None
            try:
                async with asyncio.timeout(5):
                    while not server.connections:
                        await asyncio.sleep(0.01)
                    while server.connections:  # aborted by the stall timer
                        await asyncio.sleep(0.01)
            finally:
                sock.close()
            assert (await sc.call("GET", "/healthz"))[0] == 200


class TestConnectionCap:
    async def test_a_connection_past_the_cap_closes_the_oldest_waiting_one(
        self, sidecar: SidecarFactory
    ) -> None:
        """At the cap, a new connection closes the oldest one still waiting for its headers
        and is served itself."""
        sc = await sidecar()
        async with serve(sc, max_connections=3) as (_, port):
            waiting = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            for _, writer in waiting:
                writer.write(b"GET /healthz HTTP/1.1\r\n")
                await writer.drain()
            probe = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(probe)
            assert b'{"status":"ok"}' in await closed_by_server(reader, 5)
            writer.close()
            oldest = waiting[0][0]
            assert await closed_by_server(oldest, 5) == b""
            for still_open, _ in waiting[1:]:
                assert not still_open.at_eof()
            for _, w in waiting:
                w.close()

    async def test_when_every_connection_is_busy_the_newcomer_closes(
        self, sidecar: SidecarFactory
    ) -> None:
        """Connections in a request (event streams) are never closed for the cap: the new
        connection is closed instead, and the streams keep their events."""
        sc = await sidecar()
        async with serve(sc, max_connections=2) as (_, port):
            streams = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
                async with asyncio.timeout(5):
                    await reader.readuntil(b'"state":"starting"')
                streams.append((reader, writer))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await closed_by_server(reader, 5) == b""
            writer.close()
            await sc.call("POST", "/v1/ready")
            for stream_reader, stream_writer in streams:
                async with asyncio.timeout(5):
                    await stream_reader.readuntil(b'"state":"ready"')
                stream_writer.close()

    def test_the_cap_leaves_descriptors_free(self) -> None:
        """A quarter of the limit plus one accept burst stays free; bounded both ways."""
        assert connection_cap(1024) == 1024 - 256 - 128
        assert connection_cap(256) == 64
        assert connection_cap(100) == 16
        assert connection_cap(1_048_576) == 1024


class TestAcceptErrors:
    def _context(self, code: int = errno.EMFILE) -> dict[str, Any]:
        return {
            "message": "socket.accept() out of system resource",
            "exception": OSError(code, "Too many open files"),
        }

    async def test_accept_failures_are_logged_once_per_interval(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A storm of accept failures logs one line per 10 s (with the count it skipped); other
        loop errors go to the previous handler untouched."""
        now = [100.0]
        log = AcceptErrorLog(10.0, clock=lambda: now[0])
        loop = asyncio.get_running_loop()
        passed: list[dict[str, Any]] = []
        previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _loop, context: passed.append(context))
        try:
            log.install(loop)
            assert loop.get_exception_handler() is log
            caplog.set_level(logging.INFO, logger="sidecar.http")
            for step in range(2000):  # 20 s of a hundred failures a second
                now[0] = 100.0 + step / 100
                loop.call_exception_handler(self._context())
            loop.call_exception_handler({"message": "something else", "exception": ValueError()})
            log.uninstall()
            assert loop.get_exception_handler() is not log
        finally:
            loop.set_exception_handler(previous)
        lines = [r.getMessage() for r in caplog.records if r.name == "sidecar.http"]
        assert len(lines) == 2
        assert "Too many open files" in lines[0]
        assert "999 more since the last message" in lines[1]
        assert [c["message"] for c in passed] == ["something else"]
        assert log.failures == 2000

    async def test_without_a_previous_handler_others_reach_the_default(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Other contexts reach asyncio's default handler when none was installed before."""
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(None)
        log = AcceptErrorLog()
        try:
            log.install(loop)
            with caplog.at_level(logging.ERROR, logger="asyncio"):
                loop.call_exception_handler({"message": "an unrelated loop error"})
        finally:
            log.uninstall()
            loop.set_exception_handler(previous)
        assert any("an unrelated loop error" in r.getMessage() for r in caplog.records)


# An aiohttp without one of the hooks http_server builds on, made by changing the installed one
# in a fresh interpreter (argv[1]), then `serve` as usual.
WITHOUT_A_HOOK = """
import sys
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
exec(sys.argv[1])
from sidecar.cli import main
raise SystemExit(main(["serve"]))
"""


class TestAiohttpHooks:
    async def test_the_installed_aiohttp_has_every_hook(self) -> None:
        """The aiohttp the suite runs on (newest, and the floor in `scripts/test --lowest`)
        passes the start-up check."""
        assert http_server.missing_aiohttp_hooks() == []

    def test_the_supported_range_is_the_declared_one(self) -> None:
        """The range the exit-3 line names is the one pyproject.toml installs."""
        with (ROOT / "pyproject.toml").open("rb") as f:
            dependencies = tomllib.load(f)["project"]["dependencies"]
        assert f"aiohttp{http_server.SUPPORTED_AIOHTTP}" in dependencies

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ("del RequestHandler._request_count", "RequestHandler._request_count"),
            (
                "RequestHandler.handle_error = lambda self, request, status=500, exc=None: None",
                "RequestHandler.handle_error(request, status, exc, message)",
            ),
            (
                "import functools\n"
                "init = web.Server.__init__\n"
                "@functools.wraps(init)\n"
                "def without_kwargs(self, *args, **kwargs):\n"
                "    init(self, *args, **kwargs)\n"
                "    del self._kwargs\n"
                "web.Server.__init__ = without_kwargs",
                "Server._kwargs",
            ),
            ("web.AppRunner._make_server = lambda self: None", "AppRunner._make_server()"),
        ],
        ids=["attribute", "signature", "server-attribute", "runner-method"],
    )
    def test_a_missing_hook_exits_3_with_one_line(self, change: str, named: str) -> None:
        """On an aiohttp without a hook the connection rules need, `serve` exits 3 with one
        line naming it and the supported range, instead of serving without the rules."""
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_A_HOOK, change],
            env={**without_sidecar_variables(os.environ), "SIDECAR_PORT": "0"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 3, result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"edgegap-sidecar: aiohttp {aiohttp.__version__} is not supported: {named} missing; "
            f"supported: aiohttp{http_server.SUPPORTED_AIOHTTP}"
        )
        assert "Traceback" not in result.stderr


class TestBodyDeadline:
    async def test_a_trickled_chunked_health_stream_is_cut(
        self, sidecar: SidecarFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The Agones facade's POST /health reads a chunked body as a stream of pings: one that
        trickles pings without end is closed at the body deadline (its pings counted)."""
        monkeypatch.setattr(http_server, "BODY_DEADLINE", SHORT)
        sc = await sidecar(SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT="0")
        facade = sc.agent.agones
        assert facade is not None
        assert facade.port
        reader, writer = await asyncio.open_connection("127.0.0.1", facade.port)
        writer.write(
            b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"
        )
        sent = 0
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(5):
                while not reader.at_eof():
                    writer.write(b"2\r\n{}\r\n")  # a ping every 50 ms: never stalled
                    sent += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.05):
                            await reader.read(65536)
        assert reader.at_eof() or writer.is_closing()
        assert sent < 5 / 0.05  # closed well before the 5 s this test allows
        writer.close()
        assert (await sc.call("GET", "/healthz"))[0] == 200

    async def test_at_the_cap_a_connection_stuck_in_its_body_makes_room(
        self, sidecar: SidecarFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """At the cap, with every connection sending a body that does not end, a new connection
        closes the oldest of them (past BODY_EVICTABLE_AFTER) and is served."""
        monkeypatch.setattr(http_server, "BODY_EVICTABLE_AFTER", 0.05)
        sc = await sidecar()
        async with serve(sc, max_connections=2) as (runner, port):
            stuck = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(
                    b"POST /v1/players/connect HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
                )
                stuck.append((reader, writer))
            server = runner.server
            assert isinstance(server, http_server.GuardedServer)
            async with asyncio.timeout(5):  # both in their body (headers parsed)
                while sum(h._request_count for h in server.connections) < 2:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # longer than BODY_EVICTABLE_AFTER: a time, not an event
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b'{"status":"ok"}' in await closed_by_server(reader, 5)
            writer.close()
            assert await closed_by_server(stuck[0][0], 5) == b""
            assert not stuck[1][0].at_eof()
            for _, w in stuck:
                w.close()
