"""The self-stop call against the project's emulator: every row of SPEC §6, retries, log storage,
exactly-once, and the token never leaking."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from sidecar.edgegap import StopOutcome, backoff_delay, classify, parse_retry_after, redact
from sidecar.emulator import EmulatorServer
from tests.conftest import Launch, SidecarFactory, SidecarHandle, base_env, free_port


async def deployed(emulator: EmulatorServer) -> tuple[str, dict[str, str]]:
    request_id = await emulator.deploy()
    await emulator.wait_for_status(request_id, "Status.READY")
    return request_id, await emulator.env(request_id)


async def stop_now(sc: SidecarHandle, **body: object) -> dict[str, object]:
    status, _ = await sc.call("POST", "/v1/shutdown", {"grace_seconds": 0, **body})
    assert status == 202
    return await sc.wait_state("stopped", "failed", timeout=20)


async def self_stops(emulator: EmulatorServer) -> list[dict[str, object]]:
    return await emulator.requests(path_contains="/v1/self/stop/", method="DELETE")


class TestResponses:
    @pytest.mark.parametrize("status", [200, 202, 204, 404, 410])
    async def test_accepted_or_gone_means_stopped(
        self, sidecar: SidecarFactory, emulator: EmulatorServer, status: int
    ) -> None:
        """2xx, 404 and 410 end in `stopped` after one attempt."""
        _, env = await deployed(emulator)
        if status != 200:
            await emulator.add_fault(status=status, count=1)
        sc = await sidecar(environ=env)
        final = await stop_now(sc)
        assert final["state"] == "stopped"
        assert final["stop"]["attempts"] == 1  # type: ignore[index]
        assert len(await self_stops(emulator)) == 1

    @pytest.mark.parametrize("status", [400, 401, 403, 302, 418])
    async def test_permanent_errors_fail_without_retry(
        self, sidecar: SidecarFactory, emulator: EmulatorServer, status: int
    ) -> None:
        """400/401/403 (and other 3xx/4xx) → `failed` after one attempt, error recorded."""
        _, env = await deployed(emulator)
        await emulator.add_fault(status=status, count=5)
        sc = await sidecar(environ=env, SIDECAR_ON_STOP_FAILURE="stay")
        final = await stop_now(sc)
        assert final["state"] == "failed"
        assert final["stop"]["attempts"] == 1  # type: ignore[index]
        assert f"HTTP {status}" in final["stop"]["last_error"]  # type: ignore[index]
        assert len(await self_stops(emulator)) == 1

    @pytest.mark.parametrize("status", [429, 500, 503, 408])
    async def test_transient_errors_are_retried_until_accepted(
        self, sidecar: SidecarFactory, emulator: EmulatorServer, status: int
    ) -> None:
        """429, 5xx and 408 are retried; the third attempt is accepted."""
        _, env = await deployed(emulator)
        await emulator.add_fault(status=status, count=2)
        sc = await sidecar(environ=env)
        final = await stop_now(sc)
        assert final["state"] == "stopped"
        assert final["stop"]["attempts"] == 3  # type: ignore[index]
        assert [r["status"] for r in await self_stops(emulator)] == [status, status, 200]

    async def test_timeout_is_retried(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """An attempt that exceeds SIDECAR_STOP_ATTEMPT_TIMEOUT is abandoned and retried."""
        _, env = await deployed(emulator)
        await emulator.add_fault(status=None, delay=3.0, count=1)
        sc = await sidecar(environ=env, SIDECAR_STOP_ATTEMPT_TIMEOUT="1s")  # the floor
        final = await stop_now(sc)
        assert final["state"] == "stopped"
        assert final["stop"]["attempts"] == 2  # type: ignore[index]

    async def test_a_spent_budget_ends_in_failed(self, sidecar: SidecarFactory) -> None:
        """Nothing listening and no budget left after the first attempt: `failed`, with the
        budget named. (The retries within a budget and their waits are test_retry_policy.py's,
        on a fake clock.)"""
        env = {
            "ARBITRIUM_DELETE_URL": f"http://127.0.0.1:{free_port()}/v1/self/stop/abc/1",
            "ARBITRIUM_DELETE_TOKEN": "t" * 32,
        }
        sc = await sidecar(
            environ=env, SIDECAR_STOP_RETRY_BUDGET="0", SIDECAR_ON_STOP_FAILURE="stay"
        )
        final = await stop_now(sc)
        assert final["state"] == "failed"
        assert final["stop"]["attempts"] == 1  # type: ignore[index]
        assert "retry budget of 0s spent" in final["stop"]["last_error"]  # type: ignore[index,operator]


class TestRetryPolicyUnits:
    def test_classification_table(self) -> None:
        """Status classes per SPEC §6 and §7 details."""
        assert classify(200) is StopOutcome.ACCEPTED
        assert classify(299) is StopOutcome.ACCEPTED
        assert classify(404) is StopOutcome.ALREADY_GONE
        assert classify(410) is StopOutcome.ALREADY_GONE
        for permanent in (301, 400, 401, 403, 409, 422):
            assert classify(permanent) is StopOutcome.FAILED
        for transient in (408, 429, 500, 502, 503, 504):
            assert classify(transient) is None

    def test_backoff_doubles_from_half_a_second_with_jitter_and_a_cap(self) -> None:
        """0.5 s doubling, capped at 30 s; jitter keeps it in [step/2, step]."""
        assert backoff_delay(1, lambda: 1.0) == 0.5
        assert backoff_delay(1, lambda: 0.0) == 0.25
        assert backoff_delay(4, lambda: 1.0) == 4.0
        assert backoff_delay(20, lambda: 1.0) == 30.0
        assert 15.0 <= backoff_delay(20) <= 30.0

    def test_retry_after_as_seconds_or_http_date(self) -> None:
        """Retry-After accepts delta-seconds and an HTTP date."""
        now = 1_800_000_000.0
        assert parse_retry_after("7", lambda: now) == 7.0
        when = datetime.fromtimestamp(now, UTC) + timedelta(seconds=12)
        assert parse_retry_after(format_datetime(when, usegmt=True), lambda: now) == 12.0
        assert parse_retry_after("garbage", lambda: now) is None
        assert parse_retry_after(None) is None

    def test_redact(self) -> None:
        """Secrets are replaced in any text."""
        assert redact("token=abc123 and abc123", ["abc123"]) == "token=<redacted> and <redacted>"


class TestRequestShape:
    async def test_raw_token_header_and_no_storage_param_by_default(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """DELETE carries the raw token in `authorization`; no storage choice → no parameter."""
        _, env = await deployed(emulator)
        sc = await sidecar(environ=env)
        await stop_now(sc)
        (call,) = await self_stops(emulator)
        headers = {k.lower(): v for k, v in call["headers"].items()}  # type: ignore[union-attr]
        assert headers["authorization"] == env["ARBITRIUM_DELETE_TOKEN"]
        assert "container_log_storage" not in call["query"]  # type: ignore[operator]

    async def test_normal_stop_uses_log_storage(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """A normal stop sends SIDECAR_LOG_STORAGE."""
        _, env = await deployed(emulator)
        sc = await sidecar(
            environ=env, SIDECAR_LOG_STORAGE="false", SIDECAR_ERROR_LOG_STORAGE="my-store"
        )
        await stop_now(sc)
        (call,) = await self_stops(emulator)
        assert call["query"] == {"container_log_storage": "false"}

    async def test_abnormal_stop_uses_error_log_storage(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """ready_timeout is abnormal: SIDECAR_ERROR_LOG_STORAGE is sent."""
        _, env = await deployed(emulator)
        sc = await sidecar(
            environ=env,
            SIDECAR_READY_TIMEOUT="100ms",
            SIDECAR_LOG_STORAGE="false",
            SIDECAR_ERROR_LOG_STORAGE="my-store",
        )
        final = await sc.wait_state("stopped", "failed")
        assert final["stop_reason"] == "ready_timeout"
        (call,) = await self_stops(emulator)
        assert call["query"] == {"container_log_storage": "my-store"}

    async def test_shutdown_body_overrides_storage(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """POST /v1/shutdown {"log_storage"} overrides the configured choice."""
        _, env = await deployed(emulator)
        sc = await sidecar(environ=env, SIDECAR_LOG_STORAGE="false")
        await stop_now(sc, log_storage="true")
        (call,) = await self_stops(emulator)
        assert call["query"] == {"container_log_storage": "true"}

    async def test_emulator_terminates_the_deployment(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """An accepted self-stop takes the (simulated) deployment to Status.TERMINATED."""
        request_id, env = await deployed(emulator)
        sc = await sidecar(environ=env)
        await stop_now(sc)
        status = await emulator.wait_for_status(request_id, "Status.TERMINATED")
        assert status["current_status"] == "Status.TERMINATED"


class TestExactlyOnce:
    async def test_50_concurrent_stop_calls_send_one_delete(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """50 concurrent shutdown / match-end calls → exactly one DELETE."""
        _, env = await deployed(emulator)
        sc = await sidecar(environ=env, SIDECAR_MATCH_END_GRACE="0")
        calls = [
            sc.call("POST", "/v1/shutdown" if i % 2 else "/v1/match/end", {"grace_seconds": 0})
            for i in range(50)
        ]
        results = await asyncio.gather(*calls)
        assert all(status == 202 for status, _ in results)
        await sc.wait_state("stopped")
        assert len(await self_stops(emulator)) == 1
        # Nothing else can start a second one: timers are off once decided.
        assert sc.agent.lifecycle.next_deadline() is None

    async def test_stop_failure_exit_policy_finishes_non_zero(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """SIDECAR_ON_STOP_FAILURE=exit: a permanent failure makes the sidecar exit 1."""
        _, env = await deployed(emulator)
        await emulator.add_fault(status=403, count=1)
        sc = await sidecar(environ=env)
        await stop_now(sc)
        assert await asyncio.wait_for(sc.agent.wait_finished(), 5) == 1

    async def test_stop_failure_stay_policy_keeps_serving(
        self, sidecar: SidecarFactory, emulator: EmulatorServer
    ) -> None:
        """SIDECAR_ON_STOP_FAILURE=stay: the sidecar keeps serving in `failed`."""
        _, env = await deployed(emulator)
        await emulator.add_fault(status=401, count=1)
        sc = await sidecar(environ=env, SIDECAR_ON_STOP_FAILURE="stay")
        await stop_now(sc)
        assert sc.agent.exit_code is None
        assert (await sc.call("GET", "/v1/status"))[1]["state"] == "failed"


class TestServeProcess:
    """The real `edgegap-sidecar serve` process, as a container would run it."""

    async def test_token_never_appears_in_anything_the_process_prints_or_serves(
        self, emulator: EmulatorServer, launch: Launch
    ) -> None:
        """At debug level, through retries and a permanent failure, neither token leaks into
        stdout, stderr, status, metrics, deployment, events or check-config."""
        _, platform_env = await deployed(emulator)
        delete_token = platform_env["ARBITRIUM_DELETE_TOKEN"]
        api_token = "api-token-9f8e7d6c5b4a"
        await emulator.add_fault(status=503, count=1)
        await emulator.add_fault(status=401, count=1)
        env = {
            **platform_env,
            "SIDECAR_API_TOKEN": api_token,
            "SIDECAR_LOG_LEVEL": "debug",
            "SIDECAR_ON_STOP_FAILURE": "stay",
        }
        sc = await launch("serve", env=env)
        served: list[str] = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_token}"}) as http:
            await wait_http(http, sc.url + "/healthz")
            async with http.post(sc.url + "/v1/shutdown", json={"grace_seconds": 0}) as r:
                served.append(await r.text())
            async with asyncio.timeout(10):
                while True:
                    async with http.get(sc.url + "/v1/status") as r:
                        body = await r.text()
                    if json.loads(body)["state"] == "failed":
                        break
                    await asyncio.sleep(0.05)
            served.append(body)
            for path in ("/metrics", "/v1/deployment", "/v1/players"):
                async with http.get(sc.url + path) as r:
                    served.append(await r.text())
            async with http.post(sc.url + "/v1/ready", headers={"Authorization": "Bearer x"}) as r:
                served.append(await r.text())
        sc.proc.terminate()
        code, stdout, stderr = await sc.finish()
        check = subprocess.run(
            [sys.executable, "-m", "sidecar", "check-config"],
            env=base_env(**env),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        everything = "\n".join([stdout.decode(), stderr, *served, check.stdout, check.stderr])
        assert "HTTP 401" in everything  # the failure was logged...
        assert "sidecar.stop" in stdout.decode()
        assert delete_token not in everything  # ...without the token
        assert api_token not in everything
        assert code == 0


async def wait_http(http: aiohttp.ClientSession, url: str, timeout: float = 10.0) -> None:
    """Wait until a freshly started process answers (bounded, polling a connect)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.02)


class TestServeSignals:
    async def test_sigterm_exits_promptly_with_a_terminate_record(self, launch: Launch) -> None:
        """SIGTERM to `serve` writes the terminate record and exits 0 without a self-stop, well
        within a platform's grace period (a regression: a swallowed cancellation once held
        shutdown for 5 s)."""
        sc = await launch("serve")
        await sc.wait_status(state="starting")
        sc.proc.terminate()
        code, stdout, _ = await sc.finish(timeout=3)
        assert code == 0
        assert stdout == (
            b'{"event": "sidecar.terminate", "signal": "SIGTERM", "stop_reason": null, '
            b'"stop_detail": null}\n'
        )

    async def test_json_log_format_writes_one_object_per_line(self, launch: Launch) -> None:
        """SIDECAR_LOG_FORMAT=json: every stderr line is a JSON object with level and message."""
        sc = await launch("serve", SIDECAR_LOG_FORMAT="json")
        await sc.wait_status(state="starting")
        async with aiohttp.ClientSession() as http, http.post(sc.url + "/v1/ready") as response:
            assert response.status == 200
        sc.proc.terminate()
        _, _, stderr = await sc.finish()
        records = [json.loads(line) for line in stderr.splitlines()]
        assert {"ts", "level", "logger", "message"} <= set(records[0])
        assert any(r["message"] == "state starting -> ready" for r in records)
        assert any(r["level"] == "warning" and "dry-run" in r["message"] for r in records)

    async def test_healthcheck_command(self, launch: Launch) -> None:
        """`healthcheck` exits 0 while the API answers and 1 when nothing listens."""
        sc = await launch("serve")
        await sc.wait_status(state="starting")
        for port, expected in ((sc.port, 0), (free_port(), 1)):
            check = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sidecar",
                "healthcheck",
                env=base_env(SIDECAR_PORT=str(port)),
                stderr=subprocess.DEVNULL,
            )
            assert await asyncio.wait_for(check.wait(), 10) == expected
