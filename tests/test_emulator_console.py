"""What the emulator shows while it runs (issue 20; SPEC §13): a console line per deployment
event (text or JSON), `--follow` for the deployments' output, and each deployment's local API
through `/_emulator/deployments/{id}/sidecar/{path}`, inside its isolation."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from tests.conftest import ROOT, base_env

TOKEN = "console-api-token-1234"
SIDECAR_TOKEN = "proxied-sidecar-token-5678"
USERS = [{"user_type": "ip_address", "user_data": {"ip_address": "127.0.0.1"}}]

# Prints a line with its own delete token (the console must redact it), binds its game port,
# then idles until SIGTERM. CRASH=1: exits 3 a moment after binding.
GAME = r"""
import os, signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("hello from the game, token " + os.environ["ARBITRIUM_DELETE_TOKEN"], flush=True)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", int(os.environ["ARBITRIUM_PORT_GAMEPORT_INTERNAL"])))
if os.environ.get("CRASH") == "1":
    time.sleep(0.3)
    sys.exit(3)
time.sleep(600)
"""


class Emulator:
    """`edgegap-sidecar emulate` as a real process, its stdout read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.url = ""
        self._grew = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))
            self._grew.set()

    async def wait_line(self, matches: Callable[[str], bool], timeout: float = 30.0) -> str:
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if matches(line):
                        return line
                seen = len(self.lines)
                if self._reader.done():
                    raise AssertionError("the emulator exited:\n" + "\n".join(self.lines))
                self._grew.clear()
                await self._grew.wait()

    async def stop(self) -> str:
        if self.process.returncode is None:
            self.process.terminate()
        async with asyncio.timeout(30):
            await self.process.wait()
            await self._reader
        return "\n".join(self.lines)


@pytest.fixture
async def start_emulator(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Emulator] = []
    script = tmp_path / "game.py"
    script.write_text(GAME)

    async def start(*flags: str) -> Emulator:
        game = f"{sys.executable} {script}"
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "sidecar", "emulate", "--port", "0", "--api-token", TOKEN),
            *("--status-step", "0", "--restart-delay", "0.05", "--isolation", "ports"),
            *("--app", f"game={game}", "--app", f"crashy=CRASH=1 {game}", *flags),
            env=base_env(),
            stdout=asyncio.subprocess.PIPE,
        )
        emulator = Emulator(process)
        started.append(emulator)
        line = await emulator.wait_line(lambda text: "listening on" in text)
        emulator.url = json.loads(line)["url"] if line.startswith("{") else line.split()[-1]
        return emulator

    yield start
    for emulator in started:
        await emulator.stop()


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"authorization": f"token {TOKEN}", **kwargs.pop("headers", {})}
    async with http.request(method, url, headers=headers, **kwargs) as answer:
        text = await answer.text()
        return answer.status, json.loads(text) if text.startswith("{") else text


class TestConsole:
    async def test_json_lines_tell_the_whole_story(self, start_emulator: Any) -> None:
        """--log-format json: one object per event, each with the full request id (created,
        every status, READY with its ports, the self-stop with its log choice, TERMINATED
        with the logs kept), a restart with its exit code; --follow prefixes the output; no
        line carries a token."""
        emulator = await start_emulator("--log-format", "json", "--follow")
        async with aiohttp.ClientSession() as http:
            body = {"application": "game", "version": "v1", "users": USERS}
            _, deployed = await call(http, "POST", f"{emulator.url}/deployments", json=body)
            rid = deployed["request_id"]
            control = f"{emulator.url}/_emulator/deployments/{rid}"
            status, _ = await call(
                http, "GET", f"{control}/wait", params={"status": "Status.READY", "timeout": "30"}
            )
            assert status == 200
            _, env = await call(http, "GET", f"{control}/env")
            delete_url = env["ARBITRIUM_DELETE_URL"]
            async with http.delete(
                delete_url,
                params={"container_log_storage": "true"},
                headers={"authorization": env["ARBITRIUM_DELETE_TOKEN"]},
            ) as answer:
                assert answer.status == 200
            crash_body = {"application": "crashy", "version": "v1", "users": USERS}
            _, crashed = await call(http, "POST", f"{emulator.url}/deployments", json=crash_body)
            await emulator.wait_line(lambda text: '"event": "restart"' in text)
            await emulator.wait_line(lambda text: "Status.TERMINATED" in text and rid in text)
        output = await emulator.stop()
        records = [json.loads(line) for line in emulator.lines]  # every line is JSON
        mine = [record for record in records if record.get("request_id") == rid]
        events = [(record["event"], record.get("status")) for record in mine]
        assert events[0] == ("created", None)
        statuses = [status for event, status in events if event == "status"]
        assert statuses == [
            "Status.SEEKING",
            "Status.SEEKED",
            "Status.SCANNING",
            "Status.DEPLOYING",
            "Status.READY",
            "Status.TERMINATING",
            "Status.TERMINATED",
        ]
        by_status = {record["status"]: record["message"] for record in mine if "status" in record}
        assert "gameport UDP" in by_status["Status.READY"]
        assert "its self-stop" in by_status["Status.TERMINATED"]
        assert "logs kept" in by_status["Status.TERMINATED"]
        stop = next(record for record in mine if record["event"] == "stop")
        assert stop["outcome"] == "accepted"
        assert stop["container_log_storage"] is True
        followed = [record for record in mine if record["event"] == "output"]
        assert any("hello from the game" in record["line"] for record in followed)
        restart = next(record for record in records if record["event"] == "restart")
        assert restart["request_id"] == crashed["request_id"]
        assert restart["exit_code"] == 3
        assert env["ARBITRIUM_DELETE_TOKEN"] not in output
        assert TOKEN not in output

    async def test_text_lines_for_people(self, start_emulator: Any) -> None:
        """The default text console: `<time> <request id> <event>: <what>` per event, READY
        with its ports, ERROR with its reason, and without --follow no game output."""
        emulator = await start_emulator("--app", "broken=/no/such/server")
        async with aiohttp.ClientSession() as http:
            ids = []
            for app in ("game", "broken"):
                body = {"application": app, "version": "v1", "users": USERS}
                _, deployed = await call(http, "POST", f"{emulator.url}/deployments", json=body)
                ids.append(deployed["request_id"])
            game, broken = ids
            ready = await emulator.wait_line(lambda text: f"{game} status: Status.READY" in text)
            assert "listening on gameport UDP" in ready
            error = await emulator.wait_line(lambda text: f"{broken} status: Status.ERROR" in text)
            assert "exit code 127 (command not found)" in error
        output = await emulator.stop()
        assert f"{game} created: game v1, backed (ports isolation)" in output
        assert "hello from the game" not in output
        assert f"{game} status: Status.TERMINATED: stopped by the emulator's shutdown" in output


GAME_UNDER_SIDECAR = ROOT / "examples" / "python_game" / "server.py"


def isolation_modes() -> list[str]:
    from sidecar.emulator import netns

    return ["ports"] if netns.unavailable() is not None else ["netns", "ports"]


class TestStartUpLines:
    async def test_dashboard_line_before_the_listening_line(self, start_emulator: Any) -> None:
        """Behind --api-token the start-up lines name the dashboard's page and say it needs
        the token (without printing it); `listening on <URL>` stays the last start-up line,
        and the page it names is served there."""
        emulator = await start_emulator()
        startup = emulator.lines[
            : emulator.lines.index(f"Edgegap emulator listening on {emulator.url}") + 1
        ]
        assert startup[-1].endswith(emulator.url)
        [dashboard] = [line for line in startup if line.startswith("dashboard: ")]
        page = f"{emulator.url}/_emulator/ui"
        assert dashboard == (
            f"dashboard: {page} (needs the --api-token: open {page}#token=<TOKEN>)"
        )
        assert startup.index(dashboard) == len(startup) - 2
        assert all(TOKEN not in line for line in emulator.lines)
        async with aiohttp.ClientSession() as http, http.get(page) as answer:
            assert answer.status == 200

    async def test_json_start_up_objects(self, start_emulator: Any) -> None:
        """--log-format json: the dashboard line is an object with the page's `url` and
        `token_required`; the `listening` object is still the last of the start-up."""
        emulator = await start_emulator("--log-format", "json")
        objects = [json.loads(line) for line in emulator.lines]
        events = [record["event"] for record in objects]
        assert events[-2:] == ["dashboard", "listening"]
        dashboard = objects[-2]
        assert dashboard["url"] == f"{emulator.url}/_emulator/ui"
        assert dashboard["token_required"] is True
        assert TOKEN not in json.dumps(objects)


class TestSidecarProxy:
    @pytest.mark.timeout(90)
    @pytest.mark.parametrize("isolation", isolation_modes())
    async def test_status_and_events_through_the_emulator(self, isolation: str) -> None:
        """A backed deployment running the real sidecar: its /v1/status and its SSE
        /v1/events answer through the emulator, inside its isolation, with the sidecar's own
        bearer token added; an open stream does not hold up the emulator's shutdown."""
        command = f"{sys.executable} -m sidecar run -- {sys.executable} {GAME_UNDER_SIDECAR}"
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            isolation=isolation,  # type: ignore[arg-type]
            api_token=TOKEN,
            apps={"game": command},
        )
        variables = [{"key": "SIDECAR_API_TOKEN", "value": SIDECAR_TOKEN, "is_hidden": True}]
        async with EmulatorServer(options) as emu:
            rid = await emu.deploy("game", environment_variables=variables)
            await emu.wait_for_status(rid, "Status.READY", 60)
            proxied = f"/_emulator/deployments/{rid}/sidecar"
            assert (await emu.call("GET", f"{proxied}/v1/status", auth=False))[0] == 401
            status, body = await emu.call("GET", f"{proxied}/v1/status")
            assert status == 200, body
            assert body["state"] in ("starting", "ready", "allocated")
            async with (
                aiohttp.ClientSession(headers=emu.headers) as http,
                http.get(emu.url + f"{proxied}/v1/events") as stream,
            ):
                assert stream.status == 200
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                received = b""
                async with asyncio.timeout(15):
                    while b"event: state" not in received:
                        received += await stream.content.readany()
                assert b'"state"' in received
                # Leave the stream open: the emulator's shutdown must end it.
                async with asyncio.timeout(30):
                    await emu.__aexit__(None, None, None)

    async def test_no_local_api_is_404(self, tmp_path: Path) -> None:
        """404 for a simulated deployment, for a backed one where nothing listens on its
        SIDECAR_PORT, and for an unknown deployment."""
        script = tmp_path / "game.py"
        script.write_text(GAME)
        options = EmulatorOptions(
            port=0, status_step_seconds=0.0, apps={"game": f"{sys.executable} {script}"}
        )
        async with EmulatorServer(options) as emu:
            simulated = await emu.deploy("simulated")
            backed = await emu.deploy("game")
            await emu.wait_for_status(backed, "Status.READY", 30)
            for rid in (simulated, backed, "0123456789ab"):
                status, body = await emu.call(
                    "GET", f"/_emulator/deployments/{rid}/sidecar/v1/status"
                )
                assert status == 404, body
            status, body = await emu.call(
                "GET", f"/_emulator/deployments/{backed}/sidecar/v1/status"
            )
            assert "nothing answers" in body["message"]
