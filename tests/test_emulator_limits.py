"""The reference's rate limits, so a user can test their backoff against real 429s
(issue 11, finding 6)."""

from __future__ import annotations

import asyncio

from sidecar.emulator import EmulatorOptions, EmulatorServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestOverHttp:
    async def test_status_beyond_20_per_second_is_429(self) -> None:
        """With rate limits on, 25 status calls at once: 20 answered, 5 refused with 429 and
        Retry-After, and the request log marks the refused ones."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, rate_limits=True)
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("simulated")
            assert emu._session is not None

            async def status() -> tuple[int, str | None]:
                assert emu._session is not None
                async with emu._session.get(
                    f"{emu.url}/v1/status/{request_id}", headers=emu.headers
                ) as response:
                    return response.status, response.headers.get("Retry-After")

            answers = await asyncio.gather(*(status() for _ in range(25)))
            codes = sorted(code for code, _ in answers)
            assert codes == [200] * 20 + [429] * 5
            assert all(retry == "1" for code, retry in answers if code == 429)
            logged = await emu.requests(path_contains="/v1/status/")
            assert sum(entry["rate_limited"] for entry in logged) == 5
            assert all(entry["retry_after"] == "1" for entry in logged if entry["rate_limited"])

    async def test_self_stop_has_no_limit(self) -> None:
        """Self-stop has no documented limit: a burst of them is never answered 429."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, rate_limits=True)
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("simulated")
            await emu.wait_for_status(request_id, "Status.READY")
            env = await emu.env(request_id)
            path = env["ARBITRIUM_DELETE_URL"][len(emu.url) :]
            headers = {"authorization": env["ARBITRIUM_DELETE_TOKEN"]}
            codes = await asyncio.gather(
                *(emu.call("DELETE", path, auth=False, headers=headers) for _ in range(60))
            )
            assert 429 not in {code for code, _ in codes}

    async def test_off_by_default(self) -> None:
        """Without rate limits a burst of status calls is answered in full."""
        async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0.0)) as emu:
            request_id = await emu.deploy("simulated")
            codes = await asyncio.gather(
                *(emu.call("GET", f"/v1/status/{request_id}") for _ in range(30))
            )
            assert {code for code, _ in codes} == {200}


class TestWindow:
    def test_sliding_window_per_limit(self) -> None:
        """Each limit counts its own calls over the last second; deploy v2 and legacy share
        one; Retry-After is the whole seconds until the oldest call leaves the window."""
        from sidecar.emulator.ratelimit import RateLimiter

        clock = FakeClock()
        limiter = RateLimiter(clock)
        assert all(limiter.admit("list_deployments") is None for _ in range(10))
        assert limiter.admit("list_deployments") == 1
        assert limiter.admit("status") is None
        assert all(limiter.admit("deploy") is None for _ in range(20))
        assert all(limiter.admit("deploy_v1") is None for _ in range(20))
        assert limiter.admit("deploy_v1") == 1
        clock.now += 0.999
        assert limiter.admit("list_deployments") == 1
        clock.now += 0.001
        assert limiter.admit("list_deployments") is None
        assert limiter.admit("self_stop") is None
        assert limiter.refused == 3
