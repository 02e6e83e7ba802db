"""`EmulatorServer`: the emulator as an async context manager, for our tests and users' pytest.

    async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0,
                                              apps={"game": "python3 game.py"})) as emu:
        request_id = await emu.deploy(app="game")
        await emu.wait_for_status(request_id, "Status.READY")
        env = await emu.env(request_id)          # ARBITRIUM_* for a sidecar under test
        await emu.add_fault(status=503, count=2)  # next two self-stops fail
        ...

It serves the real app on `options.host`/`options.port` (pass port=0) in the running event loop
and talks to it through its real HTTP API with the management token.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.emulator.options import EmulatorOptions
from sidecar.emulator.server import start_site
from sidecar.emulator.store import Status
from sidecar.errors import SidecarError

_DEFAULT_TOKEN = "emulator-test-token"


class EmulatorError(SidecarError):
    """The emulator answered a harness call with an unexpected status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"emulator answered {status}: {body}")
        self.status = status
        self.body = body


class EmulatorServer:
    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.options = options or EmulatorOptions(port=0, status_step_seconds=0.0)
        self.api_token = self.options.api_token or _DEFAULT_TOKEN
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("EmulatorServer is not running (use `async with`)")
        return self._url

    async def __aenter__(self) -> EmulatorServer:
        from sidecar.emulator.app import create_app  # app imports are heavy; keep them lazy

        self._runner, self._url = await start_site(
            create_app(self.options), self.options.host, self.options.port
        )
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._session = self._runner = None

    # ---- raw access -----------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        """Management headers for direct calls: `authorization: token <api_token>`."""
        return {"authorization": f"token {self.api_token}"}

    async def call(
        self, method: str, path: str, *, auth: bool = True, **kwargs: Any
    ) -> tuple[int, Any]:
        """One HTTP call to the emulator; returns (status, parsed JSON body or text or None)."""
        if self._session is None:
            raise RuntimeError("EmulatorServer is not running (use `async with`)")
        headers = {**(self.headers if auth else {}), **kwargs.pop("headers", {})}
        async with self._session.request(
            method, self.url + path, headers=headers, **kwargs
        ) as response:
            text = await response.text()
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, text or None

    async def _expect(self, expected: int, method: str, path: str, **kwargs: Any) -> Any:
        status, body = await self.call(method, path, **kwargs)
        if status != expected:
            raise EmulatorError(status, body)
        return body

    # ---- conveniences ---------------------------------------------------------------------

    async def deploy(self, app: str = "game", **extra: Any) -> str:
        """Deploy `app` through `POST /deployments`; `extra` adds or overrides body fields."""
        body: dict[str, Any] = {
            "application": app,
            "version": "v1",
            "users": [{"user_type": "ip_address", "user_data": {"ip_address": "127.0.0.1"}}],
            **extra,
        }
        result = await self._expect(202, "POST", "/deployments", json=body)
        return str(result["request_id"])

    async def status(self, request_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._expect(200, "GET", f"/v1/status/{request_id}")
        return result

    async def env(self, request_id: str) -> dict[str, str]:
        result: dict[str, str] = await self._expect(
            200, "GET", f"/_emulator/deployments/{request_id}/env"
        )
        return result

    async def logs(self, request_id: str) -> dict[str, Any]:
        """The container-logs body; raises EmulatorError (status 404) once logs are gone."""
        result: dict[str, Any] = await self._expect(
            200, "GET", f"/v1/deployment/{request_id}/container-logs"
        )
        return result

    async def stop(self, request_id: str, container_log_storage: str | None = None) -> int:
        """`DELETE /v1/stop/{id}`; returns the status code."""
        params = (
            {}
            if container_log_storage is None
            else {"container_log_storage": container_log_storage}
        )
        status, _ = await self.call("DELETE", f"/v1/stop/{request_id}", params=params)
        return status

    # `timeout` is part of the public interface; it bounds the server-side long-poll, which
    # an asyncio.timeout() around the call could not do.
    async def wait_for_status(
        self,
        request_id: str,
        status: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Wait (event-driven, server side) until the deployment has reached `status`.

        Returns the current status body; a status already passed counts as reached. Raises
        TimeoutError after `timeout` seconds, or at once when it can no longer reach it (it
        terminated, or went to ERROR while READY was awaited).
        """
        Status(status)  # a typo should fail here, not time out
        try:
            result: dict[str, Any] = await asyncio.wait_for(
                self._expect(
                    200,
                    "GET",
                    f"/_emulator/deployments/{request_id}/wait",
                    params={"status": status, "timeout": str(timeout)},
                ),
                timeout + 5.0,
            )
        except EmulatorError as exc:
            if exc.status == 408:
                raise TimeoutError(f"{request_id} did not reach {status}: {exc.body}") from None
            raise
        return result

    async def add_fault(
        self,
        status: int | None = 503,
        count: int | None = 1,
        delay: float = 0.0,
        target: str = "self_stop",
        retry_after: str | int | None = None,
        *,
        request_id: str | None = None,
        starts_in: float = 0.0,
        duration: float | None = None,
    ) -> None:
        """Queue a fault (see sidecar/emulator/faults.py); `count=None` with a `duration` is
        an outage: every matching call fails while it lasts."""
        await self._expect(
            201,
            "POST",
            "/_emulator/faults",
            json={
                "target": target,
                "status": status,
                "count": count,
                "delay_seconds": delay,
                "retry_after": retry_after,
                "request_id": request_id,
                "starts_in_seconds": starts_in,
                "duration_seconds": duration,
            },
        )

    async def clear_faults(self) -> None:
        await self._expect(200, "DELETE", "/_emulator/faults")

    async def requests(
        self, path_contains: str | None = None, method: str | None = None
    ) -> list[dict[str, Any]]:
        params = {
            key: value
            for key, value in (("path_contains", path_contains), ("method", method))
            if value is not None
        }
        result = await self._expect(200, "GET", "/_emulator/requests", params=params)
        entries: list[dict[str, Any]] = result["requests"]
        return entries
