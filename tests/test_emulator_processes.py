"""Process-backed deployments: injected env, self-stop, signals, logs, restart policy, faults."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from aiohttp import web

from sidecar.emulator import EmulatorOptions, EmulatorServer, options_from_args
from sidecar.emulator.options import add_arguments

T = TypeVar("T")

# Like a real game it binds its port first: the emulator's READY is the platform's port
# readiness check. A crash comes a moment later, so the check has seen the port.
GAME = """
import json, os, signal, socket, sys, time
mode = sys.argv[1]
port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
port.bind(("127.0.0.1", int(os.environ["ARBITRIUM_PORT_GAMEPORT_INTERNAL"])))
shown = ("MAP", "SIDECAR_PORT")
env = {k: v for k, v in os.environ.items() if k.startswith("ARBITRIUM_") or k in shown}
print(json.dumps({"pid": os.getpid(), "env": env}), flush=True)
if mode in ("crash", "exit0"):
    time.sleep(0.5)
if mode == "crash":
    print("boom", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "exit0":
    sys.exit(0)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    def on_term(*_):
        print("got SIGTERM", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
while True:
    signal.pause()
"""


@pytest.fixture
def game(tmp_path: Path) -> Callable[[str], str]:
    script = tmp_path / "game.py"
    script.write_text(GAME)

    def command(mode: str) -> str:
        return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {mode}"

    return command


def options(game: Callable[[str], str], **overrides: Any) -> EmulatorOptions:
    settings: dict[str, Any] = {
        "port": 0,
        "status_step_seconds": 0.0,
        "restart_delay_seconds": 0.05,
        "stop_grace_seconds": 2.0,
        "game_port": 0,
        "endpoint_storages": ("my-s3",),
        "apps": {
            "game": game("serve"),
            "crasher": game("crash"),
            "quitter": game("exit0"),
            "stubborn": game("stubborn"),
        },
    }
    settings.update(overrides)
    return EmulatorOptions(**settings)


@pytest.fixture
async def emu(game: Callable[[str], str]) -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(options(game)) as server:
        yield server


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 5.0
) -> T:
    """Re-run `probe` every 20 ms until `check` passes; fail after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if check(value):
                return value
            await asyncio.sleep(0.02)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie left for PID 1 to reap (the shell's child)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def eventually_gone(pid: int, timeout: float = 5.0) -> bool:
    """The game behind `sh -c` may finish exiting just after the shell: poll, bounded."""
    async with asyncio.timeout(timeout):
        while not gone(pid):
            await asyncio.sleep(0.02)
    return True


async def raw_logs(emu: EmulatorServer, request_id: str) -> str:
    status, body = await emu.call("GET", f"/_emulator/deployments/{request_id}/logs", auth=False)
    return str(body or "") if status == 200 else ""


async def started(emu: EmulatorServer, request_id: str) -> dict[str, Any]:
    """The game's first line: its pid and the env it saw."""
    text = await eventually(lambda: raw_logs(emu, request_id), lambda t: "\n" in t)
    first: dict[str, Any] = json.loads(text.splitlines()[0])
    return first


async def self_stop(
    emu: EmulatorServer,
    env: dict[str, str],
    token: str | None = None,
    url: str | None = None,
    **params: str,
) -> tuple[int, Any]:
    target = url or env["ARBITRIUM_DELETE_URL"]
    headers = {"authorization": env["ARBITRIUM_DELETE_TOKEN"] if token is None else token}
    return await emu.call(
        "DELETE", target[len(emu.url) :], auth=False, headers=headers, params=params
    )


async def deploy_ready(emu: EmulatorServer, app: str = "game", **extra: Any) -> str:
    request_id = await emu.deploy(app, **extra)
    await emu.wait_for_status(request_id, "Status.READY", timeout=5)
    return request_id


class TestInjectedEnvironment:
    async def test_process_sees_platform_variables(self, emu: EmulatorServer) -> None:
        """The backed process gets the ARBITRIUM_* variables the control API reports."""
        request_id = await deploy_ready(
            emu,
            tags=["ranked", "eu"],
            environment_variables=[{"key": "MAP", "value": "forest"}],
        )
        seen = (await started(emu, request_id))["env"]
        env = await emu.env(request_id)
        assert seen == env
        assert env["ARBITRIUM_REQUEST_ID"] == request_id
        assert re.fullmatch(
            re.escape(emu.url) + rf"/v1/self/stop/{request_id}/\d+", env["ARBITRIUM_DELETE_URL"]
        )
        assert re.fullmatch(r"[0-9a-f]{32}", env["ARBITRIUM_DELETE_TOKEN"])
        assert re.fullmatch(r"[0-9a-f]{32}", env["ARBITRIUM_CONTEXT_TOKEN"])
        assert env["ARBITRIUM_DEPLOYMENT_TAGS"] == "ranked,eu"
        assert env["MAP"] == "forest"
        port = json.loads(env["ARBITRIUM_PORTS_MAPPING"])["ports"]["gameport"]
        assert port["name"] == "gameport"
        assert port["protocol"] == "UDP"
        assert env["ARBITRIUM_PORT_GAMEPORT_INTERNAL"] == str(port["internal"])
        assert env["ARBITRIUM_PORT_GAMEPORT_EXTERNAL"] == str(port["external"])
        assert json.loads(env["ARBITRIUM_DEPLOYMENT_LOCATION"])["city"] == "Montreal"
        assert env["ARBITRIUM_HOST_ID"]

    async def test_game_port_zero_picks_a_free_port(self, emu: EmulatorServer) -> None:
        """With game_port=0 every deployment gets its own free internal port."""
        first = await emu.env(await emu.deploy("game"))
        second = await emu.env(await emu.deploy("game"))
        ports = {
            first["ARBITRIUM_PORT_GAMEPORT_INTERNAL"],
            second["ARBITRIUM_PORT_GAMEPORT_INTERNAL"],
        }
        assert len(ports) == 2
        assert "7777" not in ports

    async def test_context_url_answers_with_context_token(self, emu: EmulatorServer) -> None:
        """ARBITRIUM_CONTEXT_URL answers the deployment context to its raw context token."""
        request_id = await deploy_ready(emu)
        env = await emu.env(request_id)
        path = env["ARBITRIUM_CONTEXT_URL"][len(emu.url) :]
        token = {"authorization": env["ARBITRIUM_CONTEXT_TOKEN"]}
        status, body = await emu.call("GET", path, auth=False, headers=token)
        assert (status, body["request_id"], body["ready"]) == (200, request_id, True)
        assert (await emu.call("GET", path, auth=False))[0] == 401


class TestSelfStop:
    async def test_token_and_path_checks(self, emu: EmulatorServer) -> None:
        """Wrong or missing token → 401; wrong access point or deployment → 404."""
        request_id = await deploy_ready(emu)
        env = await emu.env(request_id)
        assert (await self_stop(emu, env, token="0" * 32))[0] == 401
        assert (await self_stop(emu, env, token=f"token {env['ARBITRIUM_DELETE_TOKEN']}"))[0] == 401
        assert (await self_stop(emu, env, token=""))[0] == 401
        wrong_ap = f"{emu.url}/v1/self/stop/{request_id}/1"
        assert (await self_stop(emu, env, url=wrong_ap))[0] == 404
        unknown = env["ARBITRIUM_DELETE_URL"].replace(request_id, "0" * 12)
        assert (await self_stop(emu, env, url=unknown))[0] == 404
        assert (await emu.status(request_id))["current_status"] == "Status.READY"

    async def test_accepted_stop_sends_sigterm_within_a_second(self, emu: EmulatorServer) -> None:
        """An accepted self-stop answers 200 and the game gets SIGTERM within 1 s."""
        request_id = await deploy_ready(emu)
        await started(emu, request_id)
        env = await emu.env(request_id)
        sent = time.monotonic()
        status, body = await self_stop(emu, env, container_log_storage="true")
        assert status == 200
        assert body["deployment_summary"]["request_id"] == request_id
        await eventually(lambda: raw_logs(emu, request_id), lambda t: "got SIGTERM" in t, 1.0)
        assert time.monotonic() - sent < 1.0
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)

    async def test_while_terminating_202_then_404(self, game: Callable[[str], str]) -> None:
        """Self-stop during TERMINATING answers 202, and 404 once TERMINATED."""
        async with EmulatorServer(options(game, stop_grace_seconds=0.3)) as emu:
            request_id = await deploy_ready(emu, "stubborn")
            env = await emu.env(request_id)
            assert (await self_stop(emu, env))[0] == 200
            assert (await self_stop(emu, env))[0] == 202
            await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
            assert (await self_stop(emu, env))[0] == 404

    async def test_self_stop_before_ready_is_202(self, game: Callable[[str], str]) -> None:
        """A self-stop before READY answers 202 and is carried out at READY."""
        async with EmulatorServer(options(game, status_step_seconds=0.1)) as emu:
            request_id = await emu.deploy("game")
            env = await emu.env(request_id)
            assert (await self_stop(emu, env))[0] == 202
            await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)

    async def test_sigkill_after_grace(self, game: Callable[[str], str]) -> None:
        """A process that ignores SIGTERM is killed after the grace period."""
        async with EmulatorServer(options(game, stop_grace_seconds=0.2)) as emu:
            request_id = await deploy_ready(emu, "stubborn")
            pid = (await started(emu, request_id))["pid"]
            assert await emu.stop(request_id) == 200
            await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
            assert await eventually_gone(pid)


class TestLogStorage:
    async def stop_and_read(
        self, emu: EmulatorServer, request_id: str, **params: str
    ) -> tuple[int, Any]:
        await started(emu, request_id)
        env = await emu.env(request_id)
        assert (await self_stop(emu, env, **params))[0] == 200
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
        return await emu.call("GET", f"/v1/deployment/{request_id}/container-logs")

    async def test_logs_readable_while_running(self, emu: EmulatorServer) -> None:
        """Container logs show the process output while it runs."""
        request_id = await deploy_ready(emu)
        await started(emu, request_id)
        body = await emu.logs(request_id)
        assert '"pid"' in body["logs"]
        assert body["encoding"] == "utf-8"
        assert body["crash_data"]["restart_count"] == 0

    async def test_kept_with_true(self, emu: EmulatorServer) -> None:
        """container_log_storage=true keeps the logs, readable after termination."""
        request_id = await deploy_ready(emu)
        status, body = await self.stop_and_read(emu, request_id, container_log_storage="true")
        assert status == 200
        assert "got SIGTERM" in body["logs"]
        link_path = body["logs_link"][len(emu.url) :]
        assert "got SIGTERM" in str((await emu.call("GET", link_path, auth=False))[1])

    async def test_kept_with_storage_name(self, emu: EmulatorServer) -> None:
        """The name of an endpoint storage that exists keeps the logs."""
        request_id = await deploy_ready(emu)
        status, _ = await self.stop_and_read(emu, request_id, container_log_storage="my-s3")
        assert status == 200

    async def test_discarded_with_false(self, emu: EmulatorServer) -> None:
        """container_log_storage=false discards the logs: 404 after termination."""
        request_id = await deploy_ready(emu)
        status, _ = await self.stop_and_read(emu, request_id, container_log_storage="false")
        assert status == 404

    async def test_omitted_uses_v2_default_not_kept(self, emu: EmulatorServer) -> None:
        """Without the parameter a v2 deployment's logs are not kept."""
        request_id = await deploy_ready(emu)
        status, _ = await self.stop_and_read(emu, request_id)
        assert status == 404

    async def test_omitted_uses_legacy_default(self, emu: EmulatorServer) -> None:
        """Legacy deploy with log storage enabled keeps logs when the stop does not say."""
        _, body = await emu.call(
            "POST",
            "/v1/deploy",
            json={
                "app_name": "game",
                "ip_list": ["1.2.3.4"],
                "container_log_storage": {"enabled": True},
            },
        )
        request_id = body["request_id"]
        await emu.wait_for_status(request_id, "Status.READY", timeout=5)
        status, _ = await self.stop_and_read(emu, request_id)
        assert status == 200

    async def test_management_stop_honours_query(self, emu: EmulatorServer) -> None:
        """DELETE /v1/stop honours container_log_storage too."""
        request_id = await deploy_ready(emu)
        await started(emu, request_id)
        assert await emu.stop(request_id, container_log_storage="true") == 200
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
        assert "got SIGTERM" in (await emu.logs(request_id))["logs"]


SPLIT_LINES = """
import os, signal, time
os.write(1, b"half a ")
time.sleep(0.1)  # separate reads: the stderr line arrives while the stdout line is open
os.write(2, b"an error line\\n")
time.sleep(0.1)
os.write(1, b"line\\nno newline at the end")
signal.pause()
"""


class TestLogMerging:
    async def test_streams_merge_line_by_line(self, tmp_path: Path) -> None:
        """A stdout line written in two pieces is not cut by a stderr line written between
        them, and a last line without a newline is kept when the process ends."""
        script = tmp_path / "split.py"
        script.write_text(SPLIT_LINES)
        command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
        # It binds no port: READY without the port readiness check (to_check false).
        settings = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            game_port=0,
            game_port_check=False,
            apps={"split": command},
        )
        async with EmulatorServer(settings) as emu:
            request_id = await deploy_ready(emu, "split")
            text = await eventually(
                lambda: raw_logs(emu, request_id), lambda t: "half a line\n" in t
            )
            assert text == "an error line\nhalf a line\n"
            env = await emu.env(request_id)
            assert (await self_stop(emu, env, container_log_storage="true"))[0] == 200
            await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
            assert await raw_logs(emu, request_id) == text + "no newline at the end"


class TestRestartPolicy:
    async def test_always_restarts_a_crashing_process(self, emu: EmulatorServer) -> None:
        """With `always` a crash restarts: restart_count grows, exit code and crash logs kept."""
        request_id = await deploy_ready(emu, "crasher")
        body = await eventually(
            lambda: emu.logs(request_id), lambda b: b["crash_data"]["restart_count"] >= 2
        )
        assert body["crash_data"]["exit_code"] == 3
        assert body["crash_data"]["message"]
        assert "boom" in body["crash_logs"]
        assert body["logs"].count("boom") >= 2
        assert (await emu.status(request_id))["current_status"] == "Status.READY"
        assert await emu.stop(request_id) == 200
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)

    async def test_never_terminates_on_exit(self, game: Callable[[str], str]) -> None:
        """With `never` the deployment goes TERMINATED when the process exits."""
        async with EmulatorServer(options(game, restart_policy="never")) as emu:
            _, body = await emu.call(
                "POST",
                "/v1/deploy",
                json={
                    "app_name": "crasher",
                    "ip_list": ["1.2.3.4"],
                    "container_log_storage": {"enabled": True},
                },
            )
            request_id = body["request_id"]
            await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
            logs = await emu.logs(request_id)
            assert logs["crash_data"] == {
                "exit_code": 3,
                "message": logs["crash_data"]["message"],
                "restart_count": 0,
            }
            assert await emu.stop(request_id) == 410

    async def test_on_failure_ends_on_clean_exit(self, game: Callable[[str], str]) -> None:
        """With `on_failure` a clean exit terminates the deployment."""
        async with EmulatorServer(options(game, restart_policy="on_failure")) as emu:
            request_id = await emu.deploy("quitter")
            await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)


class TestFaults:
    async def test_status_faults_then_recovery(self, emu: EmulatorServer) -> None:
        """The next N self-stops answer the injected status, then normal behaviour resumes."""
        request_id = await deploy_ready(emu)
        env = await emu.env(request_id)
        await emu.add_fault(status=503, count=2, retry_after=2)
        first = await self_stop(emu, env)
        assert first == (503, {"message": "Injected fault"})
        assert (await self_stop(emu, env))[0] == 503
        assert (await self_stop(emu, env))[0] == 200
        calls = await emu.requests(path_contains="/v1/self/stop/")
        assert [call["status"] for call in calls] == [503, 503, 200]
        assert calls[0]["headers"]["Authorization"] == "<redacted>"
        assert calls[0]["authorized"] is True
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)

    async def test_retry_after_header(self, emu: EmulatorServer) -> None:
        """An injected fault carries Retry-After when asked."""
        request_id = await deploy_ready(emu)
        env = await emu.env(request_id)
        await emu.add_fault(status=429, count=1, retry_after=3)
        assert emu._session is not None
        async with emu._session.delete(
            env["ARBITRIUM_DELETE_URL"], headers={"authorization": env["ARBITRIUM_DELETE_TOKEN"]}
        ) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "3"

    async def test_delay_fault(self, emu: EmulatorServer) -> None:
        """A delay fault holds the call, then processes it normally."""
        request_id = await deploy_ready(emu)
        env = await emu.env(request_id)
        await emu.add_fault(status=None, delay=0.3)
        started_at = time.monotonic()
        assert (await self_stop(emu, env))[0] == 200
        assert time.monotonic() - started_at >= 0.3

    async def test_clear_faults(self, emu: EmulatorServer) -> None:
        """DELETE /_emulator/faults removes pending faults."""
        request_id = await deploy_ready(emu)
        env = await emu.env(request_id)
        await emu.add_fault(status=500, count=5)
        await emu.clear_faults()
        assert (await self_stop(emu, env))[0] == 200

    async def test_bad_fault_is_422(self, emu: EmulatorServer) -> None:
        """A fault with an unknown target or nothing to do answers 422."""
        bad = [{"target": "nope", "status": 503}, {"status": None, "delay_seconds": 0}]
        for body in bad:
            assert (await emu.call("POST", "/_emulator/faults", auth=False, json=body))[0] == 422

    async def test_cli_faults(self, game: Callable[[str], str]) -> None:
        """Faults given as --self-stop-fault flags apply from the start."""
        import argparse

        parser = argparse.ArgumentParser()
        add_arguments(parser)
        parsed = options_from_args(parser.parse_args(["--self-stop-fault", "502x1"]))
        async with EmulatorServer(options(game, faults=parsed.faults)) as emu:
            request_id = await deploy_ready(emu)
            env = await emu.env(request_id)
            assert (await self_stop(emu, env))[0] == 502
            assert (await self_stop(emu, env))[0] == 200


class TestLifecycleIntegration:
    async def test_shutdown_stops_backed_processes(self, game: Callable[[str], str]) -> None:
        """Leaving the harness stops every backing process."""
        async with EmulatorServer(options(game)) as emu:
            request_id = await deploy_ready(emu)
            pid = (await started(emu, request_id))["pid"]
        assert await eventually_gone(pid)

    async def test_shutdown_during_startup_walk(self, game: Callable[[str], str]) -> None:
        """Leaving the harness while deployments are still starting ends cleanly."""
        async with EmulatorServer(options(game, status_step_seconds=0.05)) as emu:
            request_id = await emu.deploy("game")
            await emu.wait_for_status(request_id, "Status.SEEKED", timeout=5)

    async def test_metrics_from_real_process(self, emu: EmulatorServer) -> None:
        """Metrics of a backed deployment report its real memory use."""
        request_id = await deploy_ready(emu)
        await started(emu, request_id)

        async def latest_mem() -> float:
            status, body = await emu.call("GET", f"/v1/metrics/deployment/{request_id}")
            assert status == 200
            return float(body["mem"]["datasets"][-1])

        # Under load the first samples may predate the interpreter's start (only the shell).
        assert await eventually(latest_mem, lambda mb: mb > 1.0) > 1.0

    async def test_webhooks_receive_status_bodies(self, emu: EmulatorServer) -> None:
        """Ready and terminated webhooks are POSTed the status body."""
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def hook(request: web.Request) -> web.Response:
            await received.put(await request.json())
            return web.Response()

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            url = {"url": f"http://127.0.0.1:{port}/hook"}
            request_id = await emu.deploy(
                "simulated", webhook_on_ready=url, webhook_on_terminated=url
            )
            async with asyncio.timeout(5):
                ready = await received.get()
                assert (ready["request_id"], ready["current_status"]) == (
                    request_id,
                    "Status.READY",
                )
                await emu.stop(request_id)
                terminated = await received.get()
                assert terminated["current_status"] == "Status.TERMINATED"
        finally:
            await runner.cleanup()
