"""The emulator under hostile input (SPEC §11 Round 2): `--app-version` files, deploy
environment variables, match tickets, header bytes, the sidecar proxy's destination and game
output are bounded or refused with a 4xx / exit 2 naming what is wrong; never a hang, a 5xx, a
traceback, a stuck deployment or a leaked token."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from tests.conftest import base_env


def emulate(*argv: str) -> subprocess.CompletedProcess[str]:
    """`sidecar emulate ARGV` as a user runs it; bounded so a hang fails by name."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "emulate", "--port", "0", *argv],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


class TestAppVersionFile:
    @pytest.mark.parametrize("kind", ["fifo", "device", "deep", "nan", "oversize", "directory"])
    def test_bad_file_exits_2_naming_the_option(self, tmp_path: Path, kind: str) -> None:
        """A FIFO, a device, a directory, JSON nested 100,000 deep, NaN or a file over 1 MiB
        given to --app-version exits 2 naming the option and the problem, at once: no hang
        before listening, no memory spike, no RecursionError traceback."""
        path = tmp_path / "version.json"
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path = Path("/dev/zero")
        elif kind == "directory":
            path = tmp_path
        elif kind == "deep":
            path.write_text("[" * 100_000 + "]" * 100_000)
        elif kind == "nan":
            path.write_text('{"time_to_deploy": NaN}')
        else:
            path.write_text('{"envs": [], "pad": "' + "x" * (1024 * 1024) + '"}')
        result = emulate(f"--app-version=game={path}")
        assert result.returncode == 2, result.stderr
        assert "--app-version" in result.stderr
        assert str(path) in result.stderr
        assert "Traceback" not in result.stderr


def game_command() -> str:
    """A backed game that binds its game port and, when its SIDECAR_HOST is the default (or
    a name or wildcard for loopback), answers HTTP on 127.0.0.1:SIDECAR_PORT as a sidecar would
    (`{}` to anything), until it is stopped."""
    script = (
        "import os, socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('127.0.0.1', int(os.environ['ARBITRIUM_PORT_GAMEPORT_INTERNAL'])))\n"
        "if os.environ.get('SIDECAR_HOST', 'localhost') in ('localhost', '0.0.0.0'):\n"
        "    api = socket.create_server(('127.0.0.1', int(os.environ['SIDECAR_PORT'])))\n"
        "    while True:\n"
        "        c, _ = api.accept()\n"
        "        c.recv(65536)\n"
        "        c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Type: application/json\\r\\n\\r\\n{}')\n"
        "        c.close()\n"
        "time.sleep(60)\n"
    )
    return f"{sys.executable} -c {shlex.quote(script)}"


class TestDeployEnvironment:
    @pytest.mark.parametrize(
        ("key", "value", "problem"),
        [
            ("A=B", "x", "'A=B': a key cannot contain '='"),
            ("A\0B", "x", "a key cannot contain '=' or a NUL"),
            ("SECRET", "s3cr\0t-value", "'SECRET': a value cannot contain a NUL"),
        ],
    )
    async def test_unusable_variable_is_refused_by_name(
        self, key: str, value: str, problem: str
    ) -> None:
        """A deploy (v2 and v1) whose variable no process environment can hold answers 4xx
        naming the variable (never its value), instead of a deployment stuck in DEPLOYING."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": game_command()})
        variable = {"key": key, "value": value}
        async with EmulatorServer(options) as emu:
            v2 = {"application": "game", "version": "v1", "environment_variables": [variable]}
            v1 = {"app_name": "game", "version_name": "v1", "env_vars": [variable]}
            for path, body, expected in (("/deployments", v2, 400), ("/v1/deploy", v1, 422)):
                status, answer = await emu.call("POST", path, json=body)
                assert status == expected, answer
                assert problem in json.dumps(answer, ensure_ascii=False).replace("\\\\", "\\")
                assert "s3cr" not in json.dumps(answer)
            _, listing = await emu.call("GET", "/v1/deployments")
            assert listing["data"] == []

    async def test_spawn_the_os_refuses_ends_in_error(self) -> None:
        """A command the OS cannot take (a NUL in it, possible from Python) ends the deployment
        in ERROR saying why, instead of leaving it in DEPLOYING forever."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": "sleep\x0060"})
        async with EmulatorServer(options) as emu:
            rid = await emu.deploy("game")
            await emu.wait_for_status(rid, "Status.ERROR", 10)
            status, internals = await emu.call("GET", f"/_emulator/deployments/{rid}")
            assert status == 200
            assert "Container failed to start" in json.dumps(internals)

    def test_unusable_variable_in_app_version_file_exits_2(self, tmp_path: Path) -> None:
        """An --app-version file whose `envs` holds such a key exits 2 naming the option."""
        path = tmp_path / "version.json"
        path.write_text(json.dumps({"envs": [{"key": "A=B", "value": "x"}]}))
        result = emulate(f"--app-version=game={path}")
        assert result.returncode == 2, result.stderr
        assert "--app-version" in result.stderr
        assert "'A=B'" in result.stderr


class TestMatchTickets:
    @pytest.mark.parametrize(
        ("attributes", "needle"),
        [
            ('{"skill": NaN}', "attributes.skill is NaN or Infinity"),
            ('{"skill": Infinity}', "attributes.skill is NaN or Infinity"),
            ('{"mode": "x", "scores": [1, -Infinity]}', "attributes.scores.1 is NaN"),
            ('{"skill": 1e400}', "attributes.skill is NaN or Infinity"),
            ('{"deep": ' + "[" * 70 + "]" * 70 + "}", "nests deeper than 64 levels"),
        ],
    )
    async def test_ticket_the_sidecar_would_ignore_is_400(
        self, attributes: str, needle: str
    ) -> None:
        """A ticket attribute the sidecar refuses to read (NaN, Infinity, an overflowing
        number, nesting past 64) answers 400 naming it, instead of a rehearsed match whose
        game sees no players."""
        body = '{"app": "simulated", "tickets": [{"attributes": ' + attributes + "}, {}]}"
        async with EmulatorServer() as emu:
            status, answer = await emu.call(
                "POST",
                "/_emulator/matches",
                data=body.encode(),
                headers={"content-type": "application/json"},
            )
            assert status == 400, answer
            assert needle in json.dumps(answer), answer
            _, listing = await emu.call("GET", "/v1/deployments")
            assert listing["total_count"] == 0


async def raw_status(url: str, request: bytes) -> tuple[int, bytes]:
    """Send `request` (any bytes, headers included) to the emulator; its status and answer."""
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1]), answer


TOKEN = "emulator-bounds-token"


class TestHeaderBytes:
    async def test_undecodable_authorization_is_401(self) -> None:
        """A management or control call whose `authorization: token` holds bytes that are not
        UTF-8, and a self-stop whose raw token does, answer 401 as the platform does: never a
        500 with a traceback."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, api_token=TOKEN)
        async with EmulatorServer(options) as emu:
            rid = await emu.deploy("simulated")
            await emu.wait_for_status(rid, "Status.READY", 10)
            point = (await emu.env(rid))["ARBITRIUM_DELETE_URL"].rsplit("/", 1)[1]
            calls = [
                (b"GET /v1/deployments", b"token \xff"),
                (f"GET /_emulator/deployments/{rid}/env".encode(), b"token \xff\xfe"),
                (f"DELETE /v1/self/stop/{rid}/{point}".encode(), b"\xff"),
            ]
            for line, authorization in calls:
                status, answer = await raw_status(
                    emu.url,
                    line + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Authorization: " + authorization + b"\r\n\r\n",
                )
                assert status == 401, answer
                assert b"Traceback" not in answer
            assert (await emu.status(rid))["current_status"] == "Status.READY"

    @pytest.mark.parametrize(
        "header", ["Accept: \u20ac".encode(), b"Last-Event-ID: \xff", b"Accept: a\x01b"]
    )
    async def test_undecodable_proxied_header_is_400(self, header: bytes) -> None:
        """A header the sidecar proxy passes on (Accept, Last-Event-ID) that is not printable
        ASCII answers 400 naming it, never a 500."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": game_command()})
        async with EmulatorServer(options) as emu:
            rid = await emu.deploy("game")
            await emu.wait_for_status(rid, "Status.READY", 30)
            status, answer = await raw_status(
                emu.url,
                f"GET /_emulator/deployments/{rid}/sidecar/v1/status HTTP/1.1\r\n".encode()
                + b"Host: x\r\nConnection: close\r\n"
                + header
                + b"\r\n\r\n",
            )
            assert status == 400, answer
            assert header.split(b":")[0].lower() in answer.lower()


def own_address() -> str | None:
    """A non-loopback address of this machine (none sent: a UDP connect only picks the
    route), or None when there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.2", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


class TestProxyDestination:
    @pytest.mark.parametrize("host", [None, "localhost", "0.0.0.0"])
    async def test_loopback_sidecar_is_reached(self, host: str | None) -> None:
        """The default SIDECAR_HOST, `localhost` and a wildcard all mean loopback: the proxy
        reaches the deployment's local API there."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": game_command()})
        variables = [] if host is None else [{"key": "SIDECAR_HOST", "value": host}]
        async with EmulatorServer(options) as emu:
            rid = await emu.deploy("game", environment_variables=variables)
            await emu.wait_for_status(rid, "Status.READY", 30)
            status, body = await emu.call("GET", f"/_emulator/deployments/{rid}/sidecar/v1/x")
            assert (status, body) == (200, {})

    @pytest.mark.parametrize("host", ["own", "192.0.2.2", "sidecar.example.com"])
    async def test_non_loopback_sidecar_host_is_never_contacted(self, host: str) -> None:
        """A deployment whose SIDECAR_HOST is another address or a name: the proxy answers 404
        saying it only connects on loopback, and nothing there is contacted, so the studio's
        SIDECAR_API_TOKEN never leaves the machine."""
        contacted: list[bytes] = []

        async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            contacted.append(await reader.read(4096))
            writer.close()

        if host == "own":
            address = own_address()
            if address is None:
                pytest.skip("this machine has no non-loopback address")
            listener = await asyncio.start_server(record, address, 0)
            host, port = address, listener.sockets[0].getsockname()[1]
        else:
            listener, port = None, 20121
        options = EmulatorOptions(port=0, status_step_seconds=0.0, apps={"game": game_command()})
        variables = [
            {"key": "SIDECAR_HOST", "value": host},
            {"key": "SIDECAR_PORT", "value": str(port)},
            {"key": "SIDECAR_API_TOKEN", "value": "studio-secret-token"},
        ]
        try:
            async with EmulatorServer(options) as emu:
                rid = await emu.deploy("game", environment_variables=variables)
                await emu.wait_for_status(rid, "Status.READY", 30)
                async with asyncio.timeout(3):  # no connect timeout waited out either
                    status, body = await emu.call(
                        "GET", f"/_emulator/deployments/{rid}/sidecar/v1/status"
                    )
                assert status == 404, body
                assert "not a loopback address" in body["message"]
                assert "studio-secret-token" not in json.dumps(body)
        finally:
            if listener is not None:
                listener.close()
                await listener.wait_closed()
        assert contacted == []


# Prints 24 MiB of numbered lines, then a last line, then exits 3 (a crash: crash_logs too).
SPEW = (
    "import sys\n"
    "line = b'x' * 1000 + b'\\n'\n"
    "out = sys.stdout.buffer\n"
    "for _ in range(24 * 1024 * 1024 // len(line)):\n"
    "    out.write(line)\n"
    "out.write(b'THE STOP RECORD\\n')\n"
    "out.flush()\n"
    "sys.exit(3)\n"
)


class TestOutputBound:
    @pytest.mark.timeout(120)
    async def test_chatty_game_keeps_the_tail_and_says_what_was_dropped(self) -> None:
        """A game that prints 24 MiB: the emulator keeps the last 10 MiB of its logs and of
        its crash_logs (not all of it, in memory and in the answer), starting with a line that
        says how much was dropped and ending with the game's last line."""
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            apps={"spew": f"{sys.executable} -c {shlex.quote(SPEW)}"},
            restart_policies={"spew": "never"},
        )
        limit = 10 * 1024 * 1024
        async with EmulatorServer(options) as emu:
            rid = await emu.deploy("spew")
            await emu.wait_for_status(rid, "Status.ERROR", 60)
            body = await emu.logs(rid)
            for text in (body["logs"], body["crash_logs"]):
                first, _, rest = text.partition("\n")
                assert len(text.encode()) < limit + 200
                assert first.startswith("[emulator] ")
                assert "bytes of earlier output dropped" in first
                dropped = int(first.split()[1])
                assert dropped + len(rest.encode()) == 24 * 1024 * 1024 // 1001 * 1001 + 16
                assert rest.startswith("x" * 1000 + "\n")  # cut at a line start
                assert rest.endswith("THE STOP RECORD\n")
            status, raw = await emu.call("GET", f"/_emulator/deployments/{rid}/logs")
            assert status == 200
            assert len(raw) < limit + 200
