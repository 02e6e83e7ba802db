"""Emulator fault injection for fleets: per-deployment faults, timed outages, unbounded counts,
and a request log that says which answers were injected and what Retry-After they carried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from sidecar.emulator import EmulatorOptions, EmulatorServer
from sidecar.emulator.faults import FaultQueue, FaultSpec
from sidecar.emulator.recorder import RequestLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def status_of(spec: FaultSpec | None) -> int | str | None:
    """The status a taken fault answers; "none" when no fault applied."""
    return "none" if spec is None else spec.status


class TestFaultQueue:
    def test_plain_faults_play_in_order(self, clock: FakeClock) -> None:
        """Without the new fields the queue is unchanged: oldest first, each for its count."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(status=503, count=2))
        queue.add(FaultSpec(status=429, count=1))
        taken = [status_of(queue.take("self_stop", "a")) for _ in range(4)]
        assert taken == [503, 503, 429, "none"]

    def test_fault_for_one_deployment_spares_the_others(self, clock: FakeClock) -> None:
        """A fault with a request_id hits only that deployment's calls, and a fleet-wide
        fault queued after it is not held up for the others."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(status=503, count=1, request_id="a"))
        queue.add(FaultSpec(status=500, count=1))
        assert status_of(queue.take("self_stop", "b")) == 500
        assert queue.take("self_stop", "b") is None
        assert status_of(queue.take("self_stop", "a")) == 503
        assert queue.take("self_stop", "a") is None

    def test_calls_about_no_deployment_skip_scoped_faults(self, clock: FakeClock) -> None:
        """A scoped fault never applies to a call that names no deployment."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(target="deploy", status=503, request_id="a"))
        assert queue.take("deploy", None) is None

    def test_outage_hits_every_call_while_it_lasts(self, clock: FakeClock) -> None:
        """count None + duration: every call fails during the window, none after it."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(status=503, count=None, duration_seconds=10.0))
        for _ in range(50_000):
            assert queue.take("self_stop", "a") is not None
        clock.now += 9.99
        assert queue.take("self_stop", "b") is not None
        clock.now += 0.01
        assert queue.take("self_stop", "a") is None
        assert queue.pending() == []

    def test_scheduled_fault_waits_for_its_start(self, clock: FakeClock) -> None:
        """starts_in_seconds: not active before, active from then for its duration."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(status=429, count=None, starts_in_seconds=5.0, duration_seconds=2.0))
        assert queue.take("self_stop", "a") is None
        [pending] = queue.pending()
        assert pending["active"] is False
        assert pending["starts_in"] == 5.0
        assert pending["ends_in"] == 7.0
        clock.now += 5.0
        assert queue.take("self_stop", "a") is not None
        assert queue.pending()[0]["active"] is True
        clock.now += 2.0
        assert queue.take("self_stop", "a") is None

    def test_scheduled_fault_does_not_hold_up_an_immediate_one(self, clock: FakeClock) -> None:
        """A fault queued for later lets the faults after it apply now."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(status=503, count=None, starts_in_seconds=60.0, duration_seconds=1))
        queue.add(FaultSpec(status=500, count=1))
        assert status_of(queue.take("self_stop", "a")) == 500

    def test_duration_ends_a_fault_with_count_left(self, clock: FakeClock) -> None:
        """A counted fault with a duration lapses at the end of it, used up or not."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(status=503, count=100, duration_seconds=1.0))
        assert queue.take("self_stop", "a") is not None
        assert queue.pending()[0]["remaining"] == 99
        clock.now += 1.0
        assert queue.take("self_stop", "a") is None

    def test_unbounded_fault_without_duration_lasts_until_cleared(self, clock: FakeClock) -> None:
        """count None and no duration: an outage until DELETE /_emulator/faults."""
        queue = FaultQueue(clock=clock)
        queue.add(FaultSpec(status=503, count=None))
        clock.now += 86_400
        assert queue.take("self_stop", "a") is not None
        assert queue.clear() == 1
        assert queue.take("self_stop", "a") is None


class TestRequestLogBound:
    def test_dropped_entries_are_counted(self) -> None:
        """The bounded log says how many entries it dropped, so a reader knows it is partial."""
        log = RequestLog(max_entries=3)
        request = make_mocked_request("DELETE", "/v1/self/stop/a/1")
        for _ in range(5):
            log.record(request, web.Response(status=200), time.monotonic())
        assert len(log.entries()) == 3
        assert log.dropped == 2
        assert log.clear() == 3
        assert log.dropped == 0


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0.0)) as server:
        yield server


async def ready(emu: EmulatorServer) -> tuple[str, dict[str, str]]:
    request_id = await emu.deploy("simulated")
    await emu.wait_for_status(request_id, "Status.READY", timeout=5)
    return request_id, await emu.env(request_id)


async def self_stop(emu: EmulatorServer, env: dict[str, str]) -> int:
    """One self-stop call as the sidecar makes it; returns the status."""
    assert emu._session is not None
    async with emu._session.delete(
        env["ARBITRIUM_DELETE_URL"], headers={"authorization": env["ARBITRIUM_DELETE_TOKEN"]}
    ) as response:
        await response.read()
        return response.status


async def add_fault(emu: EmulatorServer, **body: Any) -> tuple[int, Any]:
    return await emu.call("POST", "/_emulator/faults", auth=False, json=body)


class TestOverHttp:
    async def test_fault_for_one_deployment(self, emu: EmulatorServer) -> None:
        """A fault scoped to one deployment's request_id leaves the others' self-stops alone."""
        request_a, env_a = await ready(emu)
        _, env_b = await ready(emu)
        await emu.add_fault(status=503, count=None, request_id=request_a)
        assert await self_stop(emu, env_b) == 200
        assert await self_stop(emu, env_a) == 503
        assert await self_stop(emu, env_a) == 503

    async def test_timed_outage_ends_by_itself(self, emu: EmulatorServer) -> None:
        """An outage of 0.3 s answers 503 to every call, then the platform is back."""
        _, env = await ready(emu)
        started = time.monotonic()
        await emu.add_fault(status=503, count=None, duration=0.3)
        statuses = []
        async with asyncio.timeout(5):
            while not statuses or statuses[-1] == 503:
                statuses.append(await self_stop(emu, env))
                await asyncio.sleep(0.02)
        assert statuses[-1] == 200
        assert len(statuses) > 2
        assert time.monotonic() - started >= 0.3

    async def test_scheduled_fault_over_http(self, emu: EmulatorServer) -> None:
        """A fault with starts_in_seconds is listed as pending and does not apply yet."""
        _, env = await ready(emu)
        await emu.add_fault(status=503, count=None, starts_in=60.0, duration=10.0)
        _, body = await emu.call("GET", "/_emulator/faults", auth=False)
        [pending] = body["faults"]
        assert pending["active"] is False
        assert pending["count"] is None
        assert pending["remaining"] is None
        assert 59 < pending["starts_in"] <= 60
        assert await self_stop(emu, env) == 200

    async def test_counts_beyond_ten_thousand(self, emu: EmulatorServer) -> None:
        """The old 10,000 cap on a fault's count is gone (a storm over a fleet needs more)."""
        status, body = await add_fault(emu, status=429, count=1_000_000)
        assert status == 201
        assert body["fault"]["count"] == 1_000_000

    async def test_request_log_shows_injected_answers(self, emu: EmulatorServer) -> None:
        """Each logged call says whether a fault answered or delayed it and which Retry-After
        it carried; a real answer has neither."""
        _, env = await ready(emu)
        await emu.add_fault(status=429, count=1, retry_after=0)
        await emu.add_fault(status=None, count=1, delay=0.1)
        assert await self_stop(emu, env) == 429
        assert await self_stop(emu, env) == 200
        assert await self_stop(emu, env) in (202, 404)  # terminating or gone: a real answer
        first, second, third = await emu.requests(method="DELETE")
        assert first["status"] == 429
        assert first["retry_after"] == "0"
        assert first["fault"]["status"] == 429
        assert second["fault"]["delay_seconds"] == 0.1
        assert second["duration_ms"] >= 100
        assert second["retry_after"] is None
        assert third["fault"] is None
        _, body = await emu.call("GET", "/_emulator/requests", auth=False)
        assert body["dropped"] == 0

    @pytest.mark.parametrize(
        "body",
        [
            {"status": 503, "request_id": "no-such-deployment"},
            {"status": 503, "target": "deploy", "request_id": "{known}"},
            {"status": 503, "count": 0},
            {"status": 503, "duration_seconds": 0},
            {"status": 503, "starts_in_seconds": -1},
            {"status": 503, "duration_seconds": "inf"},
        ],
    )
    async def test_bad_fault_fields_are_422(
        self, emu: EmulatorServer, body: dict[str, Any]
    ) -> None:
        """A fault that could never apply, or with a count or time out of range, is refused."""
        request_id, _ = await ready(emu)
        if body.get("request_id") == "{known}":
            body = {**body, "request_id": request_id}
        status, _ = await add_fault(emu, **body)
        assert status == 422
