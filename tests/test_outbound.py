"""The agent's one outbound HTTP session: shared by the self-stop and the result delivery, never
a queue in front of the DELETE, closed last."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sidecar.config import load_settings
from sidecar.emulator import EmulatorServer
from sidecar.lifecycle import Lifecycle, State
from sidecar.outbound import OutboundSession, SessionClosed
from sidecar.outcomes import StopOutcome
from sidecar.status import StopProgress
from sidecar.stop import StopSequence
from tests.conftest import SidecarFactory, free_port

# More than aiohttp's default pool (100 connections): a request beyond them would queue.
HUNG_REQUESTS = 120


class HangingServer:
    """POST /hang never answers (until the test ends); DELETE /stop answers 202 at once."""

    def __init__(self) -> None:
        self.hung = 0
        self.enough_hung = asyncio.Event()
        self.release = asyncio.Event()
        self.url = ""

    async def hang(self, request: web.Request) -> web.StreamResponse:
        self.hung += 1
        if self.hung >= HUNG_REQUESTS:
            self.enough_hung.set()
        await self.release.wait()
        return web.Response(status=503)

    async def stop(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=202)


@pytest.fixture
async def hanging() -> AsyncIterator[HangingServer]:
    server = HangingServer()
    app = web.Application()
    app.router.add_post("/hang", server.hang)
    app.router.add_delete("/stop", server.stop)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    server.release.set()
    await runner.cleanup()


class TestSession:
    async def test_a_delete_never_queues_behind_hung_requests(self, hanging: HangingServer) -> None:
        """With more requests hung on the session than aiohttp's default pool holds, a DELETE
        to the same host still gets its answer at once: the pool has no limit."""
        http = OutboundSession()
        session = http.open()

        async def post() -> None:
            async with session.post(hanging.url + "/hang", data=b"{}"):
                pass

        posts = [asyncio.ensure_future(post()) for _ in range(HUNG_REQUESTS)]
        try:
            async with asyncio.timeout(20):
                await hanging.enough_hung.wait()
            async with asyncio.timeout(5):
                async with session.delete(hanging.url + "/stop") as response:
                    assert response.status == 202
        finally:
            for task in posts:
                task.cancel()
            for task in posts:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await http.close()

    async def test_one_session_until_closed_then_an_error_not_a_wait(self) -> None:
        """Every client gets the same session; once closed, asking for it fails at once."""
        http = OutboundSession()
        assert http.open() is http.open()
        await http.close()
        with pytest.raises(SessionClosed):
            http.open()
        await http.close()  # idempotent


class TestAgent:
    async def test_the_stop_is_accepted_while_the_result_post_still_hangs(
        self, sidecar: SidecarFactory, emulator: EmulatorServer, hanging: HangingServer
    ) -> None:
        """A result receiver that never answers does not hold the DELETE on the shared session:
        the platform takes the stop after SIDECAR_RESULT_WAIT, the result still pending."""
        request_id = await emulator.deploy()
        await emulator.wait_for_status(request_id, "Status.READY")
        env = await emulator.env(request_id)
        sc = await sidecar(
            environ=env,
            SIDECAR_RESULT_URL=hanging.url + "/hang",
            SIDECAR_RESULT_WAIT="0.05s",
        )
        await sc.call("POST", "/v1/ready")
        status, _ = await sc.call("POST", "/v1/shutdown", {"grace_seconds": 0})
        assert status == 202
        final = await sc.wait_state("stopped", "failed", timeout=20)
        assert final["state"] == "stopped"
        assert final["result_delivery"]["outcome"] == "pending"  # type: ignore[index]
        stops = await emulator.requests(path_contains="/v1/self/stop/", method="DELETE")
        assert [r["status"] for r in stops] == [200]

    async def test_a_closed_session_fails_the_stop_at_once_never_waits(self) -> None:
        """A self-stop that finds the session closed (only a sidecar already shutting down can)
        ends in `failed` with the fallback's error at once: no retry loop, no hang."""
        settings = load_settings(
            {
                "ARBITRIUM_DELETE_URL": f"http://127.0.0.1:{free_port()}/v1/self/stop/abc/1",
                "ARBITRIUM_DELETE_TOKEN": "t" * 32,
            }
        )
        lifecycle = Lifecycle(settings.timer_settings(), lambda: 0.0)
        http = OutboundSession()
        await http.close()
        progress = StopProgress()
        stop = StopSequence(
            settings, lifecycle, progress, http=http, request_id=None, on_progress=lambda: None
        )
        lifecycle.shutdown_requested(grace=0)
        decision = lifecycle.poll()
        assert decision is not None
        async with asyncio.timeout(5):
            assert await stop.run(decision, None) is False
        assert lifecycle.state is State.FAILED
        assert progress.outcome is StopOutcome.FAILED
