"""The local API stays up under hostile clients (SPEC §11), tested from outside over loopback:
descriptor exhaustion, malformed requests, bodies that are not JSON or nest too deep, non-ASCII
tokens, SSE subscribers that leave, lag or crowd in, and the roster cap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Launch, SidecarFactory, base_env, free_port

ROSTER_CAP = 10_000
SSE_REQUEST = b"GET /v1/events HTTP/1.1\r\nHost: sidecar\r\n\r\n"


async def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Wait for a state change of the in-process sidecar (checked every few ms, bounded)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"not within {timeout}s: {what}")


class SseClient:
    """A raw SSE subscriber: reads its response head and first event, then reads only when
    told to (a client that never reads is one that is never told)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, rcvbuf: int | None = None) -> SseClient:
        sock = socket.socket()
        if rcvbuf is not None:  # before connect, so the advertised window is small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**22)
        writer.write(SSE_REQUEST)
        await writer.drain()
        return cls(reader, writer)

    async def head(self) -> tuple[int, bytes]:
        """The status code, and the body bytes that came with the head."""
        async with asyncio.timeout(5):
            head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head.split()[1]), head

    async def first_event(self) -> None:
        async with asyncio.timeout(5):
            await self.reader.readuntil(b"event: state\n")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


# --- descriptors and half-open connections ------------------------------------------------------


class _StderrLines:
    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[bytes] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line)
            self.changed.set()

    async def wait_for(self, needle: bytes, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not any(needle in line for line in self.lines):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def low_fd_sidecar() -> AsyncIterator[tuple[asyncio.subprocess.Process, int, _StderrLines]]:
    """A real `serve` sidecar process started with a limit of 256 descriptors (a connection
    cap of 64), its request
    models already imported (start-up opens files for that; see the hardening report)."""
    port = free_port()

    def limit_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sidecar",
        "serve",
        env=base_env(SIDECAR_PORT=str(port)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=limit_descriptors,
    )
    assert proc.stderr is not None
    stderr = _StderrLines(proc.stderr)
    await stderr.wait_for(b"listening on", 10)
    hold = (
        b"POST /v1/hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 14\r\n"
        b'\r\n{"seconds": 0}'
    )
    assert split_response(await exchange(port, hold))[0] == 200
    try:
        yield proc, port, stderr
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await stderr.task


HALF_OPEN = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"  # the headers never end
PROBE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def open_half_open(port: int, count: int, stderr: _StderrLines) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    attackers: list[socket.socket] = []
    for i in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        attackers.append(sock)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, HALF_OPEN)
        except OSError:
            for opened in attackers:
                opened.close()
            pytest.fail(f"connection {i}: {b''.join(stderr.lines).decode()[-3000:]}")
    return attackers


def closed_by_peer(attackers: list[socket.socket]) -> int:
    closed = 0
    for sock in attackers:
        try:
            closed += sock.recv(1) == b""
        except BlockingIOError:
            pass
        except ConnectionError:
            closed += 1
    return closed


async def probe_healthz(port: int, stderr: _StderrLines, within: float) -> float:
    """Seconds until one /healthz request (waiting its turn in the backlog) is answered."""
    started = time.monotonic()
    try:
        status, _, body = split_response(await exchange(port, PROBE, within))
    except TimeoutError:
        pytest.fail(
            f"/healthz did not answer within {within} s; stderr has {len(stderr.lines)} "
            f"lines, {sum(map(len, stderr.lines))} bytes"
        )
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    return time.monotonic() - started


class TestDescriptors:
    async def test_connections_cannot_exhaust_the_descriptors(
        self, low_fd_sidecar: tuple[asyncio.subprocess.Process, int, _StderrLines]
    ) -> None:
        """More half-open connections than the process has descriptors: the sidecar keeps a
        quarter of them free by closing the oldest connection still waiting for its headers,
        so /healthz answers at once, accept() never fails, and one warning is logged."""
        _, port, stderr = low_fd_sidecar
        attackers = await open_half_open(port, 256 + 40, stderr)
        try:
            # Once the listen backlog has drained (the kernel queues connections faster than
            # any server accepts them), every connection past the cap has closed an older one.
            await wait_until(lambda: closed_by_peer(attackers) >= 296 - 64, 5, "evictions")
            assert await probe_healthz(port, stderr, 5) < 1
            assert not [line for line in stderr.lines if b"accept" in line]
            cap_lines = [line for line in stderr.lines if b"at its cap of 64 connections" in line]
            assert len(cap_lines) == 1, stderr.lines[-5:]
        finally:
            for sock in attackers:
                sock.close()

    @pytest.mark.slow
    async def test_exhaustion_recovers_within_15s_and_logs_little(
        self, low_fd_sidecar: tuple[asyncio.subprocess.Process, int, _StderrLines]
    ) -> None:
        """When descriptors run out all the same (here the limit drops below the cap after
        start), half-open connections are closed after the real 10 s header timeout, /healthz
        answers within 15 s although the attacker never lets go, and the accept failures cost
        a line or two of stderr, not hundreds of thousands."""
        proc, port, stderr = low_fd_sidecar
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (48, 48))
        attackers = await open_half_open(port, 60, stderr)
        try:
            await stderr.wait_for(b"accept", 10)  # ours, or asyncio's own line on old code
            assert await probe_healthz(port, stderr, 15) < 15
            assert closed_by_peer(attackers) >= 30  # those accepted before exhaustion
            accept_lines = [line for line in stderr.lines if b"accept" in line]
            assert 1 <= len(accept_lines) <= 2, accept_lines[:5]
            assert len(stderr.lines) < 20, stderr.lines[:30]
        finally:
            for sock in attackers:
                sock.close()


class TestMalformedRequests:
    @pytest.mark.parametrize(
        "raw",
        [
            b"GARBAGE\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /healthz HTTP/9.9\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
        ],
    )
    async def test_aiohttp_400s_are_the_json_envelope_without_error_logs(
        self, sidecar: SidecarFactory, caplog: pytest.LogCaptureFixture, raw: bytes
    ) -> None:
        """A request aiohttp cannot parse gets a JSON 400 and logs nothing at WARNING or
        above, and no traceback."""
        sc = await sidecar()
        caplog.set_level(logging.DEBUG)
        caplog.clear()  # start-up's own warnings (dry-run) are not this test's
        status, headers, body = split_response(await exchange(sc.agent.port or 0, raw))
        assert status == 400
        assert headers["content-type"].startswith("application/json")
        error = json.loads(body)["error"]
        assert error["code"] == "bad_request"
        assert error["message"].startswith("malformed HTTP request")
        loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
        assert loud == []
        assert (await sc.call("GET", "/healthz"))[0] == 200

    async def test_odd_methods_do_not_grow_the_metrics(self, sidecar: SidecarFactory) -> None:
        """Requests with methods no route takes are counted under one OTHER label, so they
        cannot grow the request counters and /metrics."""
        sc = await sidecar()
        # aiohttp's parser knows these methods; no route here takes them.
        for method in ("PURGE", "PROPFIND", "MKCOL", "LINK", "UNLINK", "REPORT"):
            assert (await sc.call(method, "/v1/status"))[0] == 405
        async with sc.http.get(sc.url + "/metrics") as response:
            text = await response.text()
        assert "PURGE" not in text
        assert 'method="OTHER"' in text


# --- bodies -----------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A match-end body whose JSON nests `depth` levels in all (the body object is level 1)."""
    return '{"result": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


class TestBodies:
    @pytest.mark.parametrize(
        "raw",
        [
            b'{"result": NaN}',
            b'{"result": {"score": Infinity}}',
            b'{"result": [-Infinity]}',
            b'{"result": 1e400}',
            b'{"grace_seconds": NaN}',
        ],
    )
    async def test_nan_and_infinity_are_400(self, sidecar: SidecarFactory, raw: bytes) -> None:
        """NaN, Infinity and numbers that overflow to infinity are not JSON: 400, and no stop
        is decided (so they can never reach the stop record)."""
        sc = await sidecar()
        status, body = await sc.call("POST", "/v1/match/end", data=raw)
        assert status == 400, body
        assert body["error"]["code"] == "bad_request"
        assert "malformed JSON" in body["error"]["message"]
        assert sc.agent.lifecycle.decision is None

    @pytest.mark.parametrize("depth", [65, 1000, 30_000])
    async def test_json_deeper_than_64_levels_is_422(
        self, sidecar: SidecarFactory, depth: int
    ) -> None:
        """A match result nested deeper than 64 levels is 422 (not a 500 and a traceback), and
        the match end can then be sent again."""
        sc = await sidecar()
        status, body = await sc.call("POST", "/v1/match/end", data=nested(depth).encode())
        assert status == 422, body
        assert body["error"]["code"] == "invalid_body"
        assert "64 levels" in body["error"]["message"]
        assert sc.agent.lifecycle.decision is None
        assert (await sc.call("POST", "/v1/match/end", {"result": {"winner": "a"}}))[0] == 202

    async def test_64_levels_and_brackets_in_strings_are_fine(
        self, sidecar: SidecarFactory
    ) -> None:
        """Exactly 64 levels is accepted, and brackets inside strings do not count."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="10s")
        assert (await sc.call("POST", "/v1/match/end", data=nested(64).encode()))[0] == 202
        brackets = json.dumps({"result": ['[[[["{{{{', "[" * 500, {"k{": "]" * 70}]})
        other = await sidecar(SIDECAR_MATCH_END_GRACE="10s")
        status, body = await other.call("POST", "/v1/match/end", data=brackets.encode())
        assert status == 202, body

    async def test_escaped_quotes_are_answered_at_once(self, launch: Launch) -> None:
        """60 KB of escaped quotes in an unterminated string, then 70 brackets, is a 400 within
        seconds and the API keeps answering: the depth scan is linear (it was quadratic and held
        the event loop, timers and self-stop included, for tens of seconds a request)."""
        sc = await launch("serve")
        await sc.wait_status(state="starting")
        raw = b'{"result": "' + b'\\"' * 30_000 + b"[" * 70
        async with aiohttp.ClientSession() as http, asyncio.timeout(10):
            async with http.post(sc.url + "/v1/match/end", data=raw) as answer:
                assert answer.status == 400
                assert "Unterminated string" in (await answer.json())["error"]["message"]
            async with http.get(sc.url + "/healthz") as answer:
                assert answer.status == 200

    @pytest.mark.parametrize("token_bytes", [b"Bearer \xe9", b"Bearer s3cret-api\xff", b"\xe9"])
    async def test_non_ascii_authorization_is_401(
        self, sidecar: SidecarFactory, token_bytes: bytes
    ) -> None:
        """An Authorization header with non-ASCII (latin-1) bytes is 401, not a 500."""
        sc = await sidecar(SIDECAR_API_TOKEN="s3cret-api")
        raw = (
            b"POST /v1/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: 0\r\nAuthorization: " + token_bytes + b"\r\n\r\n"
        )
        status, _, body = split_response(await exchange(sc.agent.port or 0, raw))
        assert status == 401, body
        assert json.loads(body)["error"]["code"] == "unauthorized"
        good = {"Authorization": "Bearer s3cret-api"}
        assert (await sc.call("POST", "/v1/ready", headers=good))[0] == 200

    async def test_utf8_authorization_is_401(self, sidecar: SidecarFactory) -> None:
        """A UTF-8 (non-ASCII) token in the header is 401 too."""
        sc = await sidecar(SIDECAR_API_TOKEN="s3cret-api")
        raw = "Bearer s3cret-api\u00e9".encode()
        request = (
            b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: " + raw + b"\r\n\r\n"
        )
        status, _, _ = split_response(await exchange(sc.agent.port or 0, request))
        assert status == 401

    async def test_reason_with_control_characters_is_kept_as_data(
        self, sidecar: SidecarFactory
    ) -> None:
        """A shutdown reason with newlines is accepted and comes back verbatim in the status
        JSON (escaped), not as extra lines."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="10s")
        reason = "done\n2030-01-01 00:00:00 INFO    sidecar: forged\r\x1b[31m"
        status, body = await sc.call("POST", "/v1/shutdown", {"reason": reason})
        assert (status, body["stop_detail"]) == (202, reason)
        async with sc.http.get(sc.url + "/v1/status") as response:
            text = await response.text()
        assert "\n" not in text
        assert sc.agent.lifecycle.decision is not None
        assert sc.agent.lifecycle.decision.detail == reason


# --- events -----------------------------------------------------------------------------------


class TestEventSubscribers:
    async def test_disconnected_subscribers_are_dropped_at_once(
        self, sidecar: SidecarFactory
    ) -> None:
        """200 subscribers that connect and hang up leave none behind within a second, well
        before the 15 s keepalive would notice."""
        sc = await sidecar()
        port = sc.agent.port or 0
        hub = sc.agent.events
        for _ in range(4):
            clients = [await SseClient.connect(port) for _ in range(50)]
            for client in clients:
                assert (await client.head())[0] == 200
                await client.first_event()
            assert hub.subscribers == 50
            for client in clients:
                await client.close()
            await wait_until(lambda: hub.subscribers == 0, 1.0, "every subscriber dropped")
        assert (await sc.call("GET", "/healthz"))[0] == 200

    async def test_a_subscriber_that_does_not_read_is_cut_off(
        self, sidecar: SidecarFactory
    ) -> None:
        """A subscriber that stops reading is disconnected once 16 events queue up for it,
        while one that reads keeps its stream."""
        sc = await sidecar()
        # Big events (a 2000-player roster, ~230 KB each) fill the socket buffers quickly.
        sc.agent.lifecycle.set_players(ids=[f"player-{i:05d}-" + "x" * 100 for i in range(2000)])
        port = sc.agent.port or 0
        hub = sc.agent.events
        lagging = await SseClient.connect(port, rcvbuf=4096)
        assert (await lagging.head())[0] == 200
        reading = await SseClient.connect(port)
        assert (await reading.head())[0] == 200
        received = 0

        async def read_all() -> None:
            nonlocal received
            while chunk := await reading.reader.readuntil(b"\n\n"):
                received += b"event: state\n" in chunk  # chunked: a size line may lead

        reader_task = asyncio.create_task(read_all())
        try:
            await wait_until(lambda: hub.subscribers == 2, 2, "both subscribed")
            published = 0
            while hub.subscribers == 2 and published < 500:
                hub.publish("state", sc.agent.status_view.to_json())
                published += 1
                await asyncio.sleep(0.002)  # let the handlers write what they can
            assert hub.subscribers == 1, f"still subscribed after {published} events"
            assert published > 16
            # The lagging client sees its connection end (reset or EOF after what was sent).
            with contextlib.suppress(ConnectionError):
                async with asyncio.timeout(10):
                    while await lagging.reader.read(2**20):
                        pass
            await wait_until(lambda: received >= published, 10, "the reader got every event")
        finally:
            reader_task.cancel()
            await asyncio.gather(reader_task, return_exceptions=True)
            await reading.close()
            await lagging.close()

    async def test_the_65th_subscriber_gets_429(self, sidecar: SidecarFactory) -> None:
        """At most 64 subscribers at a time: the 65th gets a JSON 429, and a place frees up
        when one leaves."""
        sc = await sidecar()
        port = sc.agent.port or 0
        clients = await asyncio.gather(*(SseClient.connect(port) for _ in range(64)))
        try:
            assert [(await c.head())[0] for c in clients] == [200] * 64
            extra = await SseClient.connect(port)
            status, head = await extra.head()
            assert status == 429
            assert b"application/json" in head
            length = int(split_response(head)[1]["content-length"])
            async with asyncio.timeout(5):
                body = await extra.reader.readexactly(length)
            await extra.close()
            assert json.loads(body)["error"]["code"] == "too_many_subscribers"
            await clients.pop().close()
            await wait_until(lambda: sc.agent.events.subscribers == 63, 2, "one left")
            again = await SseClient.connect(port)
            clients.append(again)
            assert (await again.head())[0] == 200
        finally:
            for client in clients:
                await client.close()


# --- roster -----------------------------------------------------------------------------------


class TestRosterCap:
    async def test_connect_beyond_the_cap_is_422(self, sidecar: SidecarFactory) -> None:
        """The roster holds 10,000 ids: the next new id is 422 with a clear message, a known id
        still answers 200, and the count stays at the cap."""
        sc = await sidecar()
        sc.agent.lifecycle.set_players(ids=[f"p{i}" for i in range(ROSTER_CAP - 1)])
        assert await sc.call("POST", "/v1/players/connect", {"player_id": "last"}) == (
            200,
            {"count": ROSTER_CAP},
        )
        status, body = await sc.call("POST", "/v1/players/connect", {"player_id": "one-more"})
        assert status == 422
        assert "10000" in body["error"]["message"]
        assert (await sc.call("POST", "/v1/players/connect", {"player_id": "p7"}))[0] == 200
        assert (await sc.call("GET", "/v1/players"))[1]["count"] == ROSTER_CAP
        assert (await sc.call("POST", "/v1/players/disconnect", {"player_id": "p7"}))[1] == {
            "count": ROSTER_CAP - 1
        }
        assert (await sc.call("POST", "/v1/players/connect", {"player_id": "one-more"}))[0] == 200

    async def test_put_beyond_the_cap_is_422(self, sidecar: SidecarFactory) -> None:
        """PUT /v1/players with a count above the cap is 422 and leaves the roster as it was."""
        sc = await sidecar()
        assert (await sc.call("PUT", "/v1/players", {"count": 3}))[0] == 200
        status, body = await sc.call("PUT", "/v1/players", {"count": ROSTER_CAP + 1})
        assert status == 422
        assert "10000" in body["error"]["message"]
        assert (await sc.call("GET", "/v1/players"))[1]["count"] == 3
        assert (await sc.call("PUT", "/v1/players", {"count": ROSTER_CAP}))[0] == 200

    async def test_status_stays_bounded_at_the_cap(self, sidecar: SidecarFactory) -> None:
        """With a full roster of the longest ids the status stays under 1.5 MB and answers."""
        sc = await sidecar()
        sc.agent.lifecycle.set_players(ids=[f"{i:05d}" + "x" * 123 for i in range(ROSTER_CAP)])
        async with sc.http.get(sc.url + "/v1/status") as response:
            body = await response.read()
        assert len(body) < 1_500_000
        assert json.loads(body)["players"]["count"] == ROSTER_CAP
