"""Issue 15 item 2, SPEC §11 Round 2: the log choice is optional, the stop is not.

A 400 to an attempt that carried `container_log_storage` (`true`, `false` or a name) is followed
by an attempt without it (a retry: 0.5 s floor, same budget), and every later attempt goes without
it; status, metrics and the stored logs say so. A 400 without the parameter, and 401/403 with it,
stay permanent.

The client on its seams (fake clock and sleep) against the project's hostile platform on
loopback; the whole agent against the emulator, which answers 400 to a storage name it cannot
read, as the platform does.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from pydantic import TypeAdapter

from sidecar.edgegap import MIN_RETRY_DELAY, AttemptResult, SelfStopClient, StopOutcome
from sidecar.emulator import EmulatorServer
from sidecar.outbound import OutboundSession
from sidecar.responses import StatusBody
from tests.conftest import Launch, SidecarFactory
from tests.faults.hostile_platform import HostilePlatform, Request

TOKEN = "tok+en/with=chars-0123456789"
# What SIDECAR_LOG_STORAGE was set to in issue 15: accepted by the sidecar, 400 at the platform.
UNKNOWN_STORAGE = "s3 logs"


class FakeTime:
    """A monotonic clock that only moves when the client sleeps, and the sleeps it asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # The session the agent gives its platform clients: no pool limit, no silent resend.
    outbound = OutboundSession()
    try:
        yield outbound.open()
    finally:
        await outbound.close()


def _client(
    http: aiohttp.ClientSession, platform: HostilePlatform, fake: FakeTime, budget: float = 60.0
) -> SelfStopClient:
    return SelfStopClient(
        http,
        platform.url("req-1"),
        TOKEN,
        attempt_timeout=5.0,
        retry_budget=budget,
        clock=fake.clock,
        sleep=fake.sleep,
        rng=lambda: 1.0,
        wall_clock=lambda: 1_800_000_000.0,
    )


def _storages(requests: list[Request]) -> list[str | None]:
    """The `container_log_storage` each DELETE carried (None: no parameter)."""
    found = []
    for request in requests:
        values = parse_qs(request.query, keep_blank_values=True).get("container_log_storage")
        found.append(values[0] if values else None)
    return found


class TestClientOnSeams:
    @pytest.mark.parametrize("storage", ["true", "false", UNKNOWN_STORAGE, "logs/2024"])
    async def test_a_refused_storage_is_dropped_and_the_stop_goes_on(
        self, http: aiohttp.ClientSession, storage: str
    ) -> None:
        """Any log choice the platform answers 400 to: the next attempt, 0.5 s later, goes
        without it and is accepted (issue 15: it was `failed`, the deployment left billing)."""
        fake = FakeTime()
        async with HostilePlatform(["400"]) as platform:
            result = await _client(http, platform, fake).stop(storage)
        assert result.outcome is StopOutcome.ACCEPTED, result
        assert (result.attempts, result.status, result.log_storage_refused) == (2, 200, True)
        assert _storages(platform.requests) == [storage, None]
        assert fake.sleeps == [MIN_RETRY_DELAY]

    async def test_every_later_attempt_goes_without_it(self, http: aiohttp.ClientSession) -> None:
        """After the refusal, retries for platform faults go without the parameter too, and
        their backoff starts at its first step: the refusal is not a platform fault."""
        fake = FakeTime()
        async with HostilePlatform(["400", "500", "408"]) as platform:
            result = await _client(http, platform, fake).stop(UNKNOWN_STORAGE)
        assert result.outcome is StopOutcome.ACCEPTED, result
        assert _storages(platform.requests) == [UNKNOWN_STORAGE, None, None, None]
        # rng() == 1.0: each backoff step is its full length (0.5, 1.0).
        assert fake.sleeps == [MIN_RETRY_DELAY, 0.5, 1.0]

    async def test_a_refusal_during_retries_is_dropped_the_same_way(
        self, http: aiohttp.ClientSession
    ) -> None:
        """A 500 first (the parameter kept: the platform said nothing about it), then the
        400: the third attempt goes without it."""
        fake = FakeTime()
        async with HostilePlatform(["500", "400"]) as platform:
            result = await _client(http, platform, fake).stop(UNKNOWN_STORAGE)
        assert result.outcome is StopOutcome.ACCEPTED, result
        assert _storages(platform.requests) == [UNKNOWN_STORAGE, UNKNOWN_STORAGE, None]
        assert fake.sleeps == [0.5, MIN_RETRY_DELAY]

    async def test_a_400_after_the_parameter_was_dropped_is_permanent(
        self, http: aiohttp.ClientSession
    ) -> None:
        """The attempt without the parameter answered 400 too: that 400 is about the stop,
        `failed` after two DELETEs, no third."""
        fake = FakeTime()
        async with HostilePlatform(["400", "400", "500"]) as platform:
            result = await _client(http, platform, fake).stop(UNKNOWN_STORAGE)
        assert result.outcome is StopOutcome.FAILED
        assert (result.attempts, result.status, result.log_storage_refused) == (2, 400, True)
        assert _storages(platform.requests) == [UNKNOWN_STORAGE, None]

    async def test_a_400_without_a_storage_choice_stays_permanent(
        self, http: aiohttp.ClientSession
    ) -> None:
        """No log choice, nothing to drop: a 400 is `failed` after one DELETE, as before."""
        fake = FakeTime()
        async with HostilePlatform(["400"]) as platform:
            result = await _client(http, platform, fake).stop(None)
        assert result.outcome is StopOutcome.FAILED
        assert (result.attempts, result.log_storage_refused) == (1, False)
        assert len(platform.requests) == 1

    @pytest.mark.parametrize("answer", ["401", "403"])
    async def test_401_and_403_with_a_storage_stay_permanent(
        self, http: aiohttp.ClientSession, answer: str
    ) -> None:
        """A bad token is not a log-choice problem: one DELETE, `failed`, the choice kept."""
        fake = FakeTime()
        async with HostilePlatform([answer]) as platform:
            result = await _client(http, platform, fake).stop(UNKNOWN_STORAGE)
        assert result.outcome is StopOutcome.FAILED
        assert (result.attempts, result.log_storage_refused) == (1, False)
        assert _storages(platform.requests) == [UNKNOWN_STORAGE]

    async def test_the_budget_holds(self, http: aiohttp.ClientSession) -> None:
        """The attempt without the parameter is a retry: with the budget spent there is none,
        and the stop fails naming the 400."""
        fake = FakeTime()
        async with HostilePlatform(["400"]) as platform:
            result = await _client(http, platform, fake, budget=0.0).stop(UNKNOWN_STORAGE)
        assert result.outcome is StopOutcome.FAILED
        assert "retry budget of 0s spent; last error: HTTP 400" in (result.error or "")
        assert len(platform.requests) == 1
        assert fake.sleeps == []

    async def test_the_refusal_is_reported_on_its_attempt_only(
        self, http: aiohttp.ClientSession
    ) -> None:
        """The observer hears the refusal once, on the attempt that was refused, with the
        delay to the next attempt: what the one warning and the one log record are made of."""
        fake = FakeTime()
        heard: list[AttemptResult] = []
        async with HostilePlatform(["500", "400", "500"]) as platform:
            result = await _client(http, platform, fake).stop(UNKNOWN_STORAGE, heard.append)
        assert result.outcome is StopOutcome.ACCEPTED, result
        assert [a.log_storage_refused for a in heard] == [False, True, False, False]
        assert (heard[1].status, heard[1].retry_in) == (400, MIN_RETRY_DELAY)


async def _deployed(emulator: EmulatorServer) -> tuple[str, dict[str, str]]:
    request_id = await emulator.deploy()
    await emulator.wait_for_status(request_id, "Status.READY")
    return request_id, await emulator.env(request_id)


async def _self_stops(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return await emulator.requests(path_contains="/v1/self/stop/", method="DELETE")


class TestAgainstTheEmulator:
    async def test_an_unreadable_storage_name_no_longer_keeps_the_deployment_billing(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """Issue 15: SIDECAR_LOG_STORAGE="s3 logs" made the stop `failed` and left the
        deployment READY. Now the platform's 400 is followed by a stop without the choice:
        `stopped`, the deployment terminated, and the status says the choice was refused."""
        request_id, env = await _deployed(emulator)
        sc = await sidecar(environ=env, SIDECAR_LOG_STORAGE=UNKNOWN_STORAGE)
        status, _ = await sc.call("POST", "/v1/shutdown", {"grace_seconds": 0})
        assert status == 202
        final = await sc.wait_state("stopped", "failed", timeout=20)
        assert final["state"] == "stopped", final["stop"]
        calls = await _self_stops(emulator)
        assert [c["status"] for c in calls] == [400, 200]
        assert [c["query"] for c in calls] == [{"container_log_storage": UNKNOWN_STORAGE}, {}]
        assert final["stop"]["log_storage"] == UNKNOWN_STORAGE
        assert final["stop"]["log_storage_refused"] is True
        assert final["stop"]["outcome"] == "accepted"
        await emulator.wait_for_status(request_id, "Status.TERMINATED")

    async def test_a_games_shutdown_storage_is_dropped_the_same_way(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """`POST /v1/shutdown {"log_storage": "logs/2024"}`: the game's choice, refused by the
        platform, does not stop the stop either."""
        _, env = await _deployed(emulator)
        sc = await sidecar(environ=env)
        body = {"grace_seconds": 0, "log_storage": "logs/2024"}
        status, _ = await sc.call("POST", "/v1/shutdown", body)
        assert status == 202
        final = await sc.wait_state("stopped", "failed", timeout=20)
        assert final["state"] == "stopped", final["stop"]
        assert final["stop"]["log_storage_refused"] is True
        calls = await _self_stops(emulator)
        assert [c["query"] for c in calls] == [{"container_log_storage": "logs/2024"}, {}]

    async def test_status_and_metrics_show_the_refusal(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """`stop.log_storage_refused` is false until the platform refuses the choice, then
        true; the status keeps the shape the OpenAPI document gives it; `/metrics` has a
        gauge for fleet dashboards."""
        _, env = await _deployed(emulator)
        sc = await sidecar(environ=env, SIDECAR_LOG_STORAGE=UNKNOWN_STORAGE)
        shape = TypeAdapter(StatusBody)
        _, before = await sc.call("GET", "/v1/status")
        shape.validate_python(before)
        assert before["stop"]["log_storage_refused"] is False
        await sc.call("POST", "/v1/shutdown", {"grace_seconds": 0})
        await sc.wait_state("stopped", "failed", timeout=20)
        _, after = await sc.call("GET", "/v1/status")
        shape.validate_python(after)
        assert after["stop"]["log_storage_refused"] is True
        async with sc.http.get(sc.url + "/metrics") as response:
            metrics = await response.text()
        assert "\nedgegap_sidecar_stop_log_storage_refused 1\n" in metrics


class TestStoredLogs:
    async def test_the_logs_show_the_refused_storage(
        self, launch: Launch, emulator: EmulatorServer
    ) -> None:
        """What lands in the container's logs: the stop record (written before the first
        DELETE, naming the choice), then one `sidecar.log_storage_refused` record tied to it by
        request id and reason; one warning on stderr, not one per attempt."""
        request_id, env = await _deployed(emulator)
        sc = await launch("serve", env=env, SIDECAR_LOG_STORAGE=UNKNOWN_STORAGE)
        await sc.wait_status(state="starting")
        async with aiohttp.ClientSession() as http:
            body = {"grace_seconds": 0}
            async with http.post(sc.url + "/v1/shutdown", json=body) as response:
                assert response.status == 202
        await sc.wait_status(state="stopped")
        sc.proc.send_signal(signal.SIGTERM)  # the platform ends the stopped deployment
        code, stdout, stderr = await sc.finish()
        assert code == 0
        records = [json.loads(line) for line in stdout.splitlines() if line.startswith(b"{")]
        events = [r["event"] for r in records]
        assert events == ["sidecar.stop", "sidecar.log_storage_refused", "sidecar.terminate"]
        stop, refused = records[0], records[1]
        assert stop["log_storage"] == UNKNOWN_STORAGE
        assert refused == {
            "event": "sidecar.log_storage_refused",
            "reason": stop["reason"],
            "request_id": request_id,
            "log_storage": UNKNOWN_STORAGE,
            "log_storage_refused": True,
            "attempt": 1,
            "status": 400,
            "error": refused["error"],
        }
        assert refused["error"].startswith("HTTP 400")
        warnings = [line for line in stderr.splitlines() if " WARNING " in line]
        assert sum("the platform refused container_log_storage" in w for w in warnings) == 1
        assert not any("retrying in" in w for w in warnings), stderr
        assert env["ARBITRIUM_DELETE_TOKEN"] not in stdout.decode() + stderr
