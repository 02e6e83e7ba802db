"""The self-stop retry policy on its seams (SPEC §6, §11): a fake clock and a recording sleep, the
project's emulator on port 0 for the answers. No wall-clock assertions: the delays the client
chose are read from the recording."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
from collections.abc import AsyncIterator
from email.utils import formatdate

import aiohttp
import pytest

from sidecar.edgegap import (
    BACKOFF_CAP,
    MIN_RETRY_DELAY,
    SelfStopClient,
    StopOutcome,
    backoff_delay,
    parse_retry_after,
    retry_delay,
)
from sidecar.emulator import EmulatorServer
from sidecar.outbound import OutboundSession
from tests.conftest import free_port

TOKEN = "tok+en/with=chars-0123456789"


class FakeTime:
    """Monotonic and wall clocks that only move when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = 1_800_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall_clock(self) -> float:
        return self.wall

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.wall += seconds


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # The session the agent gives its platform clients: no pool limit, no silent resend.
    outbound = OutboundSession()
    try:
        yield outbound.open()
    finally:
        await outbound.close()


async def _delete_url(emulator: EmulatorServer) -> tuple[str, str]:
    request_id = await emulator.deploy()
    await emulator.wait_for_status(request_id, "Status.READY")
    env = await emulator.env(request_id)
    return env["ARBITRIUM_DELETE_URL"], env["ARBITRIUM_DELETE_TOKEN"]


def _client(
    http: aiohttp.ClientSession, url: str, token: str, fake: FakeTime, budget: float = 60.0
) -> SelfStopClient:
    return SelfStopClient(
        http,
        url,
        token,
        attempt_timeout=5.0,
        retry_budget=budget,
        clock=fake.clock,
        sleep=fake.sleep,
        rng=lambda: 1.0,
        wall_clock=fake.wall_clock,
    )


class TestDelays:
    def test_backoff_never_overflows(self) -> None:
        """Issue 8 item 3: 2 ** 1025 used to raise OverflowError inside the stop task."""
        assert backoff_delay(10**6, lambda: 1.0) == BACKOFF_CAP
        assert backoff_delay(2000, lambda: 0.0) == BACKOFF_CAP / 2

    def test_jitter_bounds(self) -> None:
        for attempt in range(1, 12):
            step = min(BACKOFF_CAP, 0.5 * 2 ** (attempt - 1))
            assert backoff_delay(attempt, lambda: 0.0) == step / 2
            assert backoff_delay(attempt, lambda: 1.0) == step

    @pytest.mark.parametrize("retry_after", [0.0, 0.1, None])
    def test_floor(self, retry_after: float | None) -> None:
        assert retry_delay(1, retry_after, remaining=100, rng=lambda: 0.0) == MIN_RETRY_DELAY

    def test_retry_after_capped_by_budget(self) -> None:
        assert retry_delay(1, 3600.0, remaining=7.0) == 7.0
        assert retry_delay(1, math.inf, remaining=7.0) == 7.0

    def test_retry_after_ascii_digits_only(self) -> None:
        """Issue 8 item 4: `³` passed isdigit() and then crashed float()."""
        assert parse_retry_after("\u00b3") is None
        assert parse_retry_after("\u0665") is None
        assert parse_retry_after("9" * 400) == math.inf
        assert parse_retry_after(" 7 ") == 7.0

    def test_retry_after_dates(self) -> None:
        now = 1_800_000_000.0
        assert parse_retry_after(formatdate(now + 12, usegmt=True), lambda: now) == 12.0
        assert parse_retry_after(formatdate(now - 600, usegmt=True), lambda: now) == 0.0
        assert parse_retry_after("Fri, 31 Dec 99999 23:59:59 GMT", lambda: now) is None


class TestClientOnSeams:
    async def test_retry_after_zero_storm_is_floored(
        self, http: aiohttp.ClientSession, emulator: EmulatorServer
    ) -> None:
        """Issue 8 item 3: 5000 x `503 Retry-After: 0` sent 1025 DELETEs in 2.4 s, then died.
        Now every retry waits at least 0.5 s and the budget ends it as `failed`."""
        url, token = await _delete_url(emulator)
        await emulator.add_fault(status=503, count=5000, retry_after="0")
        fake = FakeTime()
        result = await _client(http, url, token, fake, budget=10.0).stop(None)
        assert result.outcome is StopOutcome.FAILED
        assert "retry budget" in (result.error or "")
        assert fake.sleeps
        assert min(fake.sleeps) >= MIN_RETRY_DELAY
        assert result.attempts == len(fake.sleeps) + 1 <= 10.0 / MIN_RETRY_DELAY + 1

    async def test_paced_retries_do_not_grow_the_backoff(
        self, http: aiohttp.ClientSession, emulator: EmulatorServer
    ) -> None:
        """Eight 429s paced by `Retry-After: 1`, then a plain 503: the 503's retry is the first
        backoff step (0.5 s), not the eighth (30 s). Found by the fleet simulation: after a 429
        storm, stops came up to 30 s after the platform had recovered."""
        url, token = await _delete_url(emulator)
        await emulator.add_fault(status=429, count=8, retry_after="1")
        await emulator.add_fault(status=503, count=2)
        fake = FakeTime()
        result = await _client(http, url, token, fake).stop(None)
        assert result.outcome is StopOutcome.ACCEPTED
        # rng() == 1.0: each backoff step is its full length (0.5, 1.0, ...).
        assert fake.sleeps == [1.0] * 8 + [0.5, 1.0]

    async def test_past_date_is_floored(
        self, http: aiohttp.ClientSession, emulator: EmulatorServer
    ) -> None:
        url, token = await _delete_url(emulator)
        await emulator.add_fault(status=429, count=3, retry_after=formatdate(0, usegmt=True))
        fake = FakeTime()
        result = await _client(http, url, token, fake).stop(None)
        assert result.outcome is StopOutcome.ACCEPTED
        assert fake.sleeps == [MIN_RETRY_DELAY] * 3

    async def test_retry_after_seconds_and_date_are_honoured(
        self, http: aiohttp.ClientSession, emulator: EmulatorServer
    ) -> None:
        url, token = await _delete_url(emulator)
        fake = FakeTime()
        await emulator.add_fault(status=503, count=1, retry_after="7")
        await emulator.add_fault(
            status=429, count=1, retry_after=formatdate(fake.wall + 12, usegmt=True)
        )
        result = await _client(http, url, token, fake).stop(None)
        assert result.outcome is StopOutcome.ACCEPTED
        assert fake.sleeps[0] == 7.0
        # The date was 12 s ahead when set; the first retry waited 7 of them (whole seconds).
        assert 4.0 <= fake.sleeps[1] <= 5.0

    async def test_backoff_delays_and_budget(
        self, http: aiohttp.ClientSession, emulator: EmulatorServer
    ) -> None:
        url, token = await _delete_url(emulator)
        await emulator.add_fault(status=500, count=100)
        fake = FakeTime()
        result = await _client(http, url, token, fake, budget=20.0).stop(None)
        assert result.outcome is StopOutcome.FAILED
        # rng = 1.0: the full step each time, 0.5 s doubling, the last capped by the budget.
        assert fake.sleeps[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
        assert sum(fake.sleeps) == pytest.approx(20.0)

    async def test_connection_errors_are_retried_until_the_budget_is_spent(
        self, http: aiohttp.ClientSession
    ) -> None:
        """Nothing listening: every refused connection is a retryable attempt, backed off from
        0.5 s, until the budget is spent; then `failed`, saying so and why."""
        url = f"http://127.0.0.1:{free_port()}/v1/self/stop/abc/1"
        fake = FakeTime()
        result = await _client(http, url, TOKEN, fake, budget=3.0).stop(None)
        assert result.outcome is StopOutcome.FAILED
        assert result.status is None  # never an HTTP answer
        # rng = 1.0: 0.5, 1.0, then what is left of the 3 s budget.
        assert fake.sleeps == [0.5, 1.0, 1.5]
        assert result.attempts == 4
        assert "retry budget of 3s spent" in (result.error or "")

    async def test_error_text_redacted_before_truncation(
        self, http: aiohttp.ClientSession, emulator: EmulatorServer
    ) -> None:
        """Issue 8 item 7: a body echoing the token at offset 280 leaked 20 of its characters
        because the text was cut at 300 before redaction."""
        url, _ = await _delete_url(emulator)
        fake = FakeTime()
        client = _client(http, url, TOKEN, fake)
        text = client._clean("HTTP 503: " + "e" * 270 + TOKEN + " tok%2Ben%2Fwith%3Dchars")
        assert text is not None
        for i in range(8, len(TOKEN)):
            assert TOKEN[:i] not in text
        assert "%2Fwith" not in text


class ResettingPlatform:
    """A loopback port that resets the first `resets` connections the moment they arrive, then
    answers 200; it counts every request that reached it."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.requests = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ResettingPlatform:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/self/stop/req/ap"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.requests <= self.resets:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # RST: the client sees ClientOSError
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()


class TestOneRequestPerAttempt:
    async def test_a_reset_connection_is_not_resent_at_once(
        self, http: aiohttp.ClientSession
    ) -> None:
        """Found by the fault matrix: aiohttp resends an idempotent request (DELETE is one) once,
        at once, when its connection is reset, so one attempt put two DELETEs on the wire 10 ms
        apart, under the 0.5 s floor. Every resend is the retry policy's: one DELETE per attempt,
        each retry after its delay."""
        fake = FakeTime()
        async with ResettingPlatform(resets=2) as platform:
            result = await _client(http, platform.url, TOKEN, fake).stop(None)
        assert result.outcome is StopOutcome.ACCEPTED
        assert platform.requests == result.attempts == 3
        assert fake.sleeps == [MIN_RETRY_DELAY, 1.0]
