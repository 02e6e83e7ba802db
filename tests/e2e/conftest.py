"""Fixtures of the end-to-end tests: the sidecar as a real process (always cleaned up), and a
fake platform over real TLS."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import pytest
from aiohttp import web

from tests.e2e.process import SidecarProcess

StartSidecar = Callable[..., Awaitable[SidecarProcess]]


@pytest.fixture
async def start_sidecar() -> AsyncIterator[StartSidecar]:
    """Factory: `await start_sidecar(["serve"], env, port=...)` → a running SidecarProcess."""
    started: list[SidecarProcess] = []

    async def start(
        args: Sequence[str], env: Mapping[str, str], port: int | None = None
    ) -> SidecarProcess:
        process = await SidecarProcess.start(args, env, port)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.close()


def self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A new certificate for 127.0.0.1 and its key, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class FakePlatform:
    """A TLS endpoint on loopback that accepts self-stop calls and records their headers."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.base = ""
        self.url = ""

    async def self_stop(self, request: web.Request) -> web.Response:
        self.calls.append(dict(request.headers))
        return web.json_response({"message": "Deployment is stopping"})

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


@pytest.fixture
async def https_platform(tmp_path: Path) -> AsyncIterator[tuple[FakePlatform, Path]]:
    """A FakePlatform over HTTPS with a fresh self-signed certificate (returned as a path)."""
    cert, key = self_signed_certificate(tmp_path, "platform")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    platform = FakePlatform()
    app = web.Application()
    app.router.add_delete("/v1/self/stop/{request_id}/{access_point_id}", platform.self_stop)
    app.router.add_get("/ping", platform.ping)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    await web.SockSite(runner, listener, ssl_context=context).start()
    platform.base = f"https://127.0.0.1:{listener.getsockname()[1]}"
    platform.url = f"{platform.base}/v1/self/stop/abc123/ap1"
    yield platform, cert
    await runner.cleanup()
    listener.close()
