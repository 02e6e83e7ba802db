"""How the bench starts, reaches and ends its child processes: the sidecar, the bare app, any
interpreter it times. Every server is a child on loopback (ephemeral ports), always terminated,
and every wait is bounded."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from sidecar.config import without_sidecar_variables

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable  # the real interpreter, never a pyenv shim: start-up is measured

Process = subprocess.Popen[bytes]


@dataclass(frozen=True)
class Children:
    """The environment of every child: this checkout on the path, no sidecar or platform
    variables (dry-run unless a measurement sets them), and the bench's bytecode cache.

    Children read and write bytecode in `pycache`, like an installed wheel whose .pyc were
    compiled at install time, without writing __pycache__ into the work tree (and whatever
    PYTHONDONTWRITEBYTECODE says). With `pycache` None, or `bytecode_cache=False`, they compile
    at every start and write nothing."""

    pycache: str | None = None

    def env(
        self, extra: dict[str, str] | None = None, bytecode_cache: bool = True
    ) -> dict[str, str]:
        env = without_sidecar_variables(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.pop("PYTHONPYCACHEPREFIX", None)
        if bytecode_cache and self.pycache is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = self.pycache
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"  # never write into the work tree
        env.update(extra or {})
        return env

    def spawn_sidecar(
        self,
        port: int,
        env: dict[str, str] | None = None,
        cpu: str | None = None,
        python_flags: Sequence[str] = (),
        stderr: int | IO[Any] = subprocess.DEVNULL,
        bytecode_cache: bool = True,
    ) -> Process:
        """`sidecar serve` on 127.0.0.1:port."""
        full_env = self.env(
            {"SIDECAR_HOST": "127.0.0.1", "SIDECAR_PORT": str(port), **(env or {})},
            bytecode_cache,
        )
        return subprocess.Popen(
            pinned([PYTHON, *python_flags, "-m", "sidecar", "serve"], cpu),
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

    def spawn_bare(self, port: int, cpu: str | None) -> Process:
        """benchmarks/bare_app.py on 127.0.0.1:port."""
        return subprocess.Popen(
            pinned([PYTHON, str(ROOT / "benchmarks" / "bare_app.py"), str(port)], cpu),
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(argv: list[str], cpu: str | None) -> list[str]:
    """`argv` on CPU `cpu` (taskset execs, so the PID stays the process's own)."""
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def stop_process(proc: Process, timeout: float = 5.0, sig: int = signal.SIGKILL) -> None:
    """Teardown. SIGKILL by default: nothing here needs a graceful exit, and a slow SIGTERM
    path (measured on its own by `startup.shutdown_times`) must not stretch the rest of the
    bench."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.contextmanager
def running(proc: Process) -> Iterator[Process]:
    try:
        yield proc
    finally:
        stop_process(proc)


def wait_http_ok(port: int, proc: Process | None = None, timeout: float = 10.0) -> float:
    """Poll `GET /healthz` as fast as connect() is refused; returns when it answers 200."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(request)
                head = sock.recv(64)
            if head.startswith(b"HTTP/1.1 200"):
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.001)
    raise TimeoutError(f"nothing answered /healthz on port {port} within {timeout}s")


class Client:
    """A keep-alive JSON client for scripted sessions (what a game's HTTP client does)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
        self.calls = 0

    def call(
        self, method: str, path: str, body: Any = None, expect: int | None = None
    ) -> tuple[int, bytes]:
        """One call; a 4xx/5xx raises unless it is the `expect`ed status (and then only it)."""
        if isinstance(body, bytes):
            data: bytes | None = body  # sent as is: malformed JSON on purpose
        else:
            data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        self.calls += 1
        if expect is not None and response.status != expect:
            raise RuntimeError(f"{method} {path} answered {response.status}, not {expect}")
        if expect is None and response.status >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status}: {payload[:200]!r}")
        return response.status, payload

    def close(self) -> None:
        self.conn.close()


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20
