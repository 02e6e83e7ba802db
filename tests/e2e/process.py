"""The sidecar as a real process, for the end-to-end tests.

The command prefix comes from `SIDECAR_BINARY` (the standalone build) when it is set, otherwise
`python -m sidecar` from this checkout, so the same tests check the package in the normal suite
and the binary in CI:

    SIDECAR_BINARY=dist/edgegap-sidecar/edgegap-sidecar pytest tests/e2e
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.config import without_sidecar_variables

ROOT = Path(__file__).resolve().parents[2]


def sidecar_command() -> list[str]:
    """The argv prefix that starts the sidecar under test."""
    binary = os.environ.get("SIDECAR_BINARY")
    if binary:
        return [str(Path(binary).resolve())]
    return [sys.executable, "-m", "sidecar"]


def clean_environ(**variables: str) -> dict[str, str]:
    """This process's environment without platform or sidecar settings, plus `variables`."""
    env = without_sidecar_variables(os.environ)
    # `python -m sidecar` must import this checkout; the binary ignores PYTHONPATH.
    env["PYTHONPATH"] = str(ROOT)
    env.update(variables)
    return env


class SidecarProcess:
    """One running sidecar: its output lines as they come, its local API, its exit."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int | None) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._new_output = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._read(proc.stdout, self.stdout)),
            asyncio.create_task(self._read(proc.stderr, self.stderr)),
        ]
        self._http = aiohttp.ClientSession()

    @classmethod
    async def start(
        cls, args: Sequence[str], env: Mapping[str, str], port: int | None = None
    ) -> SidecarProcess:
        proc = await asyncio.create_subprocess_exec(
            *sidecar_command(),
            *args,
            env=dict(env),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, port)

    async def _read(self, stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        async for raw in stream:
            into.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_output.set()
        self._new_output.set()

    async def call(self, method: str, path: str, json_body: Any = None) -> tuple[int, Any]:
        async with self._http.request(method, self.url + path, json=json_body) as response:
            return response.status, await response.json(content_type=None)

    async def wait_healthy(self, timeout: float = 10.0) -> None:
        """Poll /healthz until it answers 200 (or fail if the process exits first)."""
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError(f"sidecar exited {self.proc.returncode}: {self.stderr}")
                with contextlib.suppress(aiohttp.ClientError):
                    if (await self.call("GET", "/healthz"))[0] == 200:
                        return
                await asyncio.sleep(0.01)

    async def wait_state(self, *states: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll /v1/status until the lifecycle is in one of `states`."""
        async with asyncio.timeout(timeout):
            while True:
                _, status = await self.call("GET", "/v1/status")
                if status["state"] in states:
                    return dict(status)
                await asyncio.sleep(0.01)

    async def wait_line(
        self, predicate: Callable[[str], bool], stream: str = "stdout", timeout: float = 10.0
    ) -> str:
        """The first line of `stream` matching `predicate`, waiting for it to be printed."""
        lines = self.stdout if stream == "stdout" else self.stderr
        async with asyncio.timeout(timeout):
            while True:
                for line in lines:
                    if predicate(line):
                        return line
                if self.proc.returncode is not None and all(t.done() for t in self._readers):
                    raise AssertionError(f"no matching line on {stream}: {lines}")
                self._new_output.clear()
                await self._new_output.wait()

    async def wait_exit(self, timeout: float = 15.0) -> int:
        """The exit code, once the process has exited and its output is read to the end."""
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await asyncio.gather(*self._readers)
        return code

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    async def close(self) -> None:
        """Kill the process if it still runs; always release the HTTP client."""
        if self.proc.returncode is None:
            self.proc.kill()
        with contextlib.suppress(TimeoutError):
            await self.wait_exit(timeout=5)
        await self._http.close()


def json_records(lines: Sequence[str], event: str) -> list[dict[str, Any]]:
    """The JSON lines of `lines` whose "event" is `event`."""
    records = []
    for line in lines:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    records.append(record)
    return records
