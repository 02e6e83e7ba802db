"""Faults apply only to calls the platform would have authorised, and the request log does not
hand out the tokens it saw (issue 11, finding 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0.0)) as server:
        yield server


async def ready(emu: EmulatorServer) -> dict[str, str]:
    request_id = await emu.deploy("simulated")
    await emu.wait_for_status(request_id, "Status.READY", timeout=5)
    return await emu.env(request_id)


async def self_stop(emu: EmulatorServer, env: dict[str, str], token: str) -> int:
    path = env["ARBITRIUM_DELETE_URL"][len(emu.url) :]
    status, _ = await emu.call("DELETE", path, auth=False, headers={"authorization": token})
    return status


async def fault(emu: EmulatorServer, **body: Any) -> None:
    status, answer = await emu.call("POST", "/_emulator/faults", auth=False, json=body)
    assert status == 201, answer


class TestFaultsAfterAuth:
    async def test_wrong_token_does_not_consume_a_fault(self, emu: EmulatorServer) -> None:
        """A self-stop with a wrong token answers 401 and leaves the injected 503 for the next
        authorised call, as on the platform, which checks the token first."""
        env = await ready(emu)
        await fault(emu, target="self_stop", status=503, count=1)
        assert await self_stop(emu, env, "0" * 32) == 401
        assert await self_stop(emu, env, env["ARBITRIUM_DELETE_TOKEN"]) == 503
        assert await self_stop(emu, env, env["ARBITRIUM_DELETE_TOKEN"]) == 200

    async def test_missing_management_token_does_not_consume_a_fault(
        self, emu: EmulatorServer
    ) -> None:
        """A status call without a token answers 401, not the fault queued for status calls."""
        request_id = await emu.deploy("simulated")
        await fault(emu, target="status", status=500, count=1)
        assert (await emu.call("GET", f"/v1/status/{request_id}", auth=False))[0] == 401
        assert (await emu.call("GET", f"/v1/status/{request_id}"))[0] == 500
        assert (await emu.call("GET", f"/v1/status/{request_id}"))[0] == 200


def authorization(entry: dict[str, Any]) -> str | None:
    headers = {key.lower(): value for key, value in entry["headers"].items()}
    return headers.get("authorization")


class TestRequestLogRedaction:
    async def test_tokens_are_redacted_by_default(self, emu: EmulatorServer) -> None:
        """The request log shows neither the delete token nor the management token, so a CI
        job may print it; it still says whether each call was authorised."""
        env = await ready(emu)
        assert await self_stop(emu, env, "f" * 32) == 401
        assert await self_stop(emu, env, env["ARBITRIUM_DELETE_TOKEN"]) == 200
        _, body = await emu.call("GET", "/_emulator/requests", auth=False)
        text = str(body)
        assert env["ARBITRIUM_DELETE_TOKEN"] not in text
        assert "f" * 32 not in text
        assert emu.api_token not in text
        deploy, *_, refused, accepted = body["requests"]
        assert authorization(deploy) == "token <redacted>"
        assert authorization(accepted) == "<redacted>"
        assert (refused["authorized"], accepted["authorized"]) == (False, True)

    async def test_show_tokens_keeps_them(self) -> None:
        """With show_tokens (`--show-tokens`) the log shows the headers exactly as sent."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, show_tokens=True)
        async with EmulatorServer(options) as emu:
            env = await ready(emu)
            assert await self_stop(emu, env, env["ARBITRIUM_DELETE_TOKEN"]) == 200
            [call] = await emu.requests(path_contains="/v1/self/stop/")
            assert authorization(call) == env["ARBITRIUM_DELETE_TOKEN"]
