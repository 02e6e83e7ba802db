"""Backed deployments as containers: each with its own ports and local API port, reachable from
the host at `public_ip:external` (and `link`), READY by the platform's port readiness check,
ERROR when the process cannot start or never listens (issue 11, findings 1-3)."""

from __future__ import annotations

import asyncio
import json
import shlex
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sidecar.emulator import EmulatorOptions, EmulatorServer

# Stands in for a game under the sidecar: the game port (UDP, echoes), a TCP port when the app
# has one, and the sidecar's local API port (SIDECAR_PORT, default 8787, as the sidecar does).
# FIXED_PORTS=1 ignores ARBITRIUM_PORT_* and binds 7777/7778, as many games do.
ECHO = r"""
import json, os, signal, socket, sys, threading, time, urllib.request
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
rid = os.environ["ARBITRIUM_REQUEST_ID"]
fixed = os.environ.get("FIXED_PORTS") == "1"
print("binding", flush=True)
time.sleep(float(os.environ.get("BIND_DELAY", "0")))
udp_port = 7777 if fixed else int(os.environ["ARBITRIUM_PORT_GAMEPORT_INTERNAL"])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", udp_port))
api = socket.socket()
api.bind(("127.0.0.1", int(os.environ.get("SIDECAR_PORT", "8787"))))
api.listen()
tcp = None
if "ARBITRIUM_PORT_WEB_INTERNAL" in os.environ:
    tcp = socket.socket()
    tcp.bind(("0.0.0.0", 7778 if fixed else int(os.environ["ARBITRIUM_PORT_WEB_INTERNAL"])))
    tcp.listen()
print("bound", flush=True)

def self_stop():
    request = urllib.request.Request(
        os.environ["ARBITRIUM_DELETE_URL"] + "?container_log_storage=true", method="DELETE",
        headers={"authorization": os.environ["ARBITRIUM_DELETE_TOKEN"]})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return answer.status

def serve_tcp():
    while True:
        conn, _ = tcp.accept()
        conn.sendall(f"tcp {rid}".encode())
        conn.close()

if tcp is not None:
    threading.Thread(target=serve_tcp, daemon=True).start()
while True:
    data, client = udp.recvfrom(2048)
    reply = f"udp {rid} {data.decode()}"
    if data == b"stop":
        reply = f"stopped {self_stop()}"
    udp.sendto(reply.encode(), client)
"""


@pytest.fixture
def echo(tmp_path: Path) -> Callable[..., str]:
    script = tmp_path / "echo.py"
    script.write_text(ECHO)

    def command(**env: str) -> str:
        assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        return f"{assignments} {shlex.quote(sys.executable)} {shlex.quote(str(script))}".strip()

    return command


async def udp_ask(host: str, port: int, message: bytes, timeout: float = 5.0) -> str:
    """Send `message` until an answer comes back (UDP may drop the first one), bounded."""
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(host, port))
    try:
        async with asyncio.timeout(timeout):
            while True:
                transport.sendto(message)
                try:
                    return (await asyncio.wait_for(answers.get(), 0.5)).decode()
                except TimeoutError:
                    continue
    finally:
        transport.close()


def game_port(status: dict[str, Any]) -> dict[str, Any]:
    port: dict[str, Any] = status["ports"]["gameport"]
    return port


async def logs_text(emu: EmulatorServer, request_id: str) -> str:
    status, body = await emu.call("GET", f"/_emulator/deployments/{request_id}/logs", auth=False)
    return str(body or "") if status == 200 else ""


class TestTwoDeploymentsOfOneApp:
    async def test_both_run_and_answer_on_their_external_ports(
        self, echo: Callable[..., str]
    ) -> None:
        """Two deployments of one app, each binding its game port and a sidecar API port, are
        both READY, both alive, and each answers on its own `public_ip:external`."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": echo()})
        async with EmulatorServer(options) as emu:
            ids = await asyncio.gather(emu.deploy("game"), emu.deploy("game"))
            statuses = [await emu.wait_for_status(rid, "Status.READY", 10) for rid in ids]
            for request_id, status in zip(ids, statuses, strict=True):
                port = game_port(status)
                answer = await udp_ask(status["public_ip"], port["external"], b"hello")
                assert answer == f"udp {request_id} hello"
            first, second = (game_port(status) for status in statuses)
            assert first["external"] != second["external"]
            for request_id in ids:
                logs = await emu.logs(request_id)
                assert logs["crash_data"]["restart_count"] == 0, logs
                assert (await emu.status(request_id))["current_status"] == "Status.READY"

    async def test_link_and_fqdn_reach_the_game(self, echo: Callable[..., str]) -> None:
        """`link` (host:port) and `fqdn` resolve and reach the game from the host."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": echo()})
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("game")
            status = await emu.wait_for_status(request_id, "Status.READY", 10)
            host, port = game_port(status)["link"].rsplit(":", 1)
            info = socket.getaddrinfo(status["fqdn"], int(port), type=socket.SOCK_DGRAM)
            assert info
            assert await udp_ask(host, int(port), b"ping") == f"udp {request_id} ping"


class TestReadiness:
    async def test_ready_only_once_the_game_port_listens(self, echo: Callable[..., str]) -> None:
        """READY is the platform's port readiness check: a game that binds its port late is
        DEPLOYING until it has."""
        options = EmulatorOptions(
            port=0, status_step_seconds=0.0, apps={"late": echo(BIND_DELAY="1.0")}
        )
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("late")
            await emu.wait_for_status(request_id, "Status.READY", 10)
            assert "bound" in await logs_text(emu, request_id)

    async def test_a_command_that_cannot_start_is_error(self) -> None:
        """A backing command that does not exist ends in Status.ERROR with an error_detail,
        fires webhook_on_error, and does not crash-loop."""
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def hook(request: web.Request) -> web.Response:
            await received.put(await request.json())
            return web.Response()

        hooks = web.Application()
        hooks.router.add_post("/hook", hook)
        runner = web.AppRunner(hooks)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            restart_delay_seconds=0.05,
            apps={"bad": "/nonexistent/binary --port 7777"},
        )
        try:
            async with EmulatorServer(options) as emu:
                url = {"url": f"http://127.0.0.1:{runner.addresses[0][1]}/hook"}
                request_id = await emu.deploy("bad", webhook_on_error=url)
                status = await emu.wait_for_status(request_id, "Status.ERROR", 10)
                assert status["error"] is True
                assert "127" in status["error_detail"]
                async with asyncio.timeout(5):
                    hooked = await received.get()
                assert (hooked["request_id"], hooked["current_status"]) == (
                    request_id,
                    "Status.ERROR",
                )
                logs = await emu.logs(request_id)
                assert logs["crash_data"]["exit_code"] == 127
                assert logs["crash_data"]["restart_count"] == 0
                assert await emu.stop(request_id) == 200
                await emu.wait_for_status(request_id, "Status.TERMINATED", 10)
        finally:
            await runner.cleanup()

    async def test_never_listening_is_error_after_time_to_deploy(self) -> None:
        """A process that never binds its checked port goes ERROR once time_to_deploy has
        passed, naming the port; it keeps running (its logs stay readable) until stopped."""
        script = "import time; print('up', flush=True); time.sleep(60)"
        command = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
        options = EmulatorOptions(
            port=0, status_step_seconds=0.0, time_to_deploy_seconds=0.5, apps={"mute": command}
        )
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("mute")
            status = await emu.wait_for_status(request_id, "Status.ERROR", 10)
            assert "gameport" in status["error_detail"]
            assert "time_to_deploy" in status["error_detail"]
            assert "Status.READY" not in [status["current_status"], status["last_status"]]
            assert "up" in (await emu.logs(request_id))["logs"]
            assert await emu.stop(request_id) == 200
            await emu.wait_for_status(request_id, "Status.TERMINATED", 10)

    async def test_unchecked_port_is_not_waited_for(self) -> None:
        """A port with to_check false does not hold READY back (the app version's field)."""
        command = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(60)'"
        options = EmulatorOptions(
            port=0, status_step_seconds=0.0, game_port_check=False, apps={"quiet": command}
        )
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("quiet")
            await emu.wait_for_status(request_id, "Status.READY", 10)


def netns_unavailable() -> str | None:
    try:
        from sidecar.emulator import netns
    except ImportError:
        return "no netns support in this emulator"
    return netns.unavailable()


@pytest.fixture
async def netns_emu(echo: Callable[..., str]) -> AsyncIterator[EmulatorServer]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces: {reason}")
    from sidecar.emulator.apps import AppVersionFile

    version = AppVersionFile.model_validate(
        {
            "ports": [
                {"port": 7777, "protocol": "UDP", "name": "gameport"},
                {"port": 7778, "protocol": "TCP", "name": "web"},
            ]
        }
    )
    options = EmulatorOptions(
        port=0,
        status_step_seconds=0.0,
        isolation="netns",
        apps={"fixed": echo(FIXED_PORTS="1")},
        app_versions={"fixed": version},
    )
    async with EmulatorServer(options) as emu:
        yield emu


class TestNetworkNamespaces:
    async def test_fixed_ports_do_not_collide(self, netns_emu: EmulatorServer) -> None:
        """In netns mode each deployment has its own network: two games binding the same fixed
        7777/7778 and sidecar port 8787 both run; each is reached at its external ports (UDP
        and TCP forwarded), and internal stays the app version's port, as in a container."""
        emu = netns_emu
        ids = await asyncio.gather(emu.deploy("fixed"), emu.deploy("fixed"))
        for request_id in ids:
            status = await emu.wait_for_status(request_id, "Status.READY", 10)
            udp, web_port = status["ports"]["gameport"], status["ports"]["web"]
            assert (udp["internal"], web_port["internal"]) == (7777, 7778)
            reply = await udp_ask("127.0.0.1", udp["external"], b"hi")
            assert reply == f"udp {request_id} hi"
            reader, writer = await asyncio.open_connection("127.0.0.1", web_port["external"])
            assert await reader.read() == f"tcp {request_id}".encode()
            writer.close()
        env = await emu.env(ids[0])
        assert "SIDECAR_PORT" not in env  # its own loopback: the default 8787 is free

    async def test_the_platform_api_is_reachable_from_inside(
        self, netns_emu: EmulatorServer
    ) -> None:
        """ARBITRIUM_DELETE_URL works from inside the namespace: the game's self-stop is
        accepted and its logs are kept."""
        emu = netns_emu
        request_id = await emu.deploy("fixed")
        status = await emu.wait_for_status(request_id, "Status.READY", 10)
        external = status["ports"]["gameport"]["external"]
        # The SIGTERM of the accepted stop may beat the game's reply: the request log and the
        # termination are the proof.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"stop", ("127.0.0.1", external))
        await emu.wait_for_status(request_id, "Status.TERMINATED", 10)
        [call] = await emu.requests(path_contains="/v1/self/stop/")
        assert (call["status"], call["authorized"]) == (200, True)
        assert "bound" in (await emu.logs(request_id))["logs"]
        _, health = await emu.call("GET", "/_emulator/health", auth=False)
        assert health["isolation"] == "netns"
        assert json.dumps(health)


class TestWhyItEnded:
    async def test_a_crash_under_never_says_why_without_log_storage(self, tmp_path: Path) -> None:
        """A deployment whose process crashes under `never` is TERMINATED and its logs are
        gone (no storage asked), yet the control API still says why: the exit, the policy and
        the last output."""
        script = tmp_path / "crash.py"
        script.write_text(
            "import os, socket, sys, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('127.0.0.1', int(os.environ['ARBITRIUM_PORT_GAMEPORT_INTERNAL'])))\n"
            "time.sleep(0.3)\n"
            "print('fatal: map not found', flush=True)\n"
            "sys.exit(3)\n"
        )
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            restart_policy="never",
            apps={"game": f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"},
        )
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("game")
            await emu.wait_for_status(request_id, "Status.TERMINATED", 10)
            status, _ = await emu.call("GET", f"/v1/deployment/{request_id}/container-logs")
            assert status == 404
            _, internals = await emu.call("GET", f"/_emulator/deployments/{request_id}", auth=False)
            assert "exit code 3" in internals["end_reason"]
            assert "never" in internals["end_reason"]
            assert internals["crash_data"]["exit_code"] == 3
            assert internals["last_output"][-1] == "fatal: map not found"
            assert internals["logs"]["kept"] is False
