"""The emulator's dashboard (issue 20; SPEC §13): `GET /_emulator/ui` (`GET /` redirects there),
static files from the package, its data from token-checked control routes, and the page itself
driven in a real headless Chromium over the DevTools protocol: a deployment of the example game
appears, reaches READY, shows its logs and its sidecar's state, and the Stop button ends it.

The browser tests skip, saying why, when no Chromium is installed (CI installs Debian's).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from tests.conftest import ROOT

TOKEN = "dashboard-api-token-1234"
SIDECAR_TOKEN = "dashboard-sidecar-token-5678"
UI_DIR = ROOT / "sidecar" / "emulator" / "ui"
GAME_UNDER_SIDECAR = ROOT / "examples" / "python_game" / "server.py"


def _options(**overrides: Any) -> EmulatorOptions:
    settings: dict[str, Any] = {"port": 0, "status_step_seconds": 0.0, "api_token": TOKEN}
    return EmulatorOptions(**{**settings, **overrides})


class TestRoutes:
    async def test_root_redirects_and_the_page_needs_no_token(self) -> None:
        """`GET /` sends a browser to /_emulator/ui; the page, its scripts and style sheet are
        served without a token (a navigation cannot carry one) and say they load nothing from
        elsewhere; other names under /_emulator/ui/ are 404."""
        async with (
            EmulatorServer(_options()) as emu,
            aiohttp.ClientSession() as http,
        ):
            async with http.get(emu.url + "/", allow_redirects=False) as answer:
                assert answer.status == 302
                assert answer.headers["Location"] == "/_emulator/ui"
            async with http.get(emu.url + "/") as answer:
                assert answer.status == 200
                assert answer.headers["Content-Type"].startswith("text/html")
                assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
                assert "/_emulator/ui/app.js" in await answer.text()
            scripts = [(name, "text/javascript") for name in ("app.js", "match.js", "timeline.js")]
            for name, kind in (*scripts, ("style.css", "text/css")):
                async with http.get(f"{emu.url}/_emulator/ui/{name}") as answer:
                    assert answer.status == 200, name
                    assert answer.headers["Content-Type"].startswith(kind)
            for name in ("secret.txt", "..%2Fapp.py", "index.htm"):
                async with http.get(f"{emu.url}/_emulator/ui/{name}") as answer:
                    assert answer.status == 404, name

    def test_the_page_loads_nothing_from_elsewhere(self) -> None:
        """No URL in the page's files points off the emulator: no CDN, no web font, no
        `@import` or `url(...)`; the only absolute URL is SVG's namespace name."""
        for path in UI_DIR.iterdir():
            text = path.read_text()
            urls = set(re.findall(r"[a-z]+://[^\s\"'`)]*", text))
            assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
            assert "@import" not in text, path.name
            assert "url(" not in text, path.name

    @pytest.mark.parametrize(
        "raw",
        [b"", b"a", b"a\n", b"a\nb", b"a\n\nb\n", b"\n", b"x\r\ny\r\n", "é\nü".encode()],
    )
    def test_log_tail_counts_and_cuts_like_splitlines(self, raw: bytes) -> None:
        """The logs' tail (decoded alone, however long the logs) is the same lines, and the
        same count, as splitting the whole text."""
        from sidecar.emulator.routes.dashboard import _last_lines

        expected = raw.decode().splitlines()
        for count in (1, 2, 5):
            assert _last_lines(raw, count) == (len(expected), expected[-count:])

    async def test_data_routes_need_the_token(self) -> None:
        """The timeline and the masked env and logs are control routes: 401 without the
        token."""
        async with EmulatorServer(_options()) as emu:
            rid = await emu.deploy("game")
            for path in (
                "/_emulator/timeline",
                f"/_emulator/deployments/{rid}/env/masked",
                f"/_emulator/deployments/{rid}/logs/masked",
            ):
                assert (await emu.call("GET", path, auth=False))[0] == 401, path
                assert (await emu.call("GET", path))[0] == 200, path

    async def test_timeline_has_every_status_with_its_time(self) -> None:
        """Every deployment (terminated ones too) with each status reached and when, in
        order; times are Unix seconds close to the emulator's `now`."""
        async with EmulatorServer(_options()) as emu:
            rid = await emu.deploy("game")
            await emu.wait_for_status(rid, "Status.READY", 10)
            await emu.call("DELETE", f"/v1/stop/{rid}")
            await emu.wait_for_status(rid, "Status.TERMINATED", 10)
            status, body = await emu.call("GET", "/_emulator/timeline")
            assert status == 200
            [item] = body["deployments"]
            assert item["request_id"] == rid
            assert item["current_status"] == "Status.TERMINATED"
            walk = [entry["status"] for entry in item["statuses"]]
            assert walk[0] == "Status.INITIALIZING"
            assert walk[-3:] == ["Status.READY", "Status.TERMINATING", "Status.TERMINATED"]
            times = [entry["at"] for entry in item["statuses"]]
            assert times == sorted(times)
            assert body["now"] - 60 < times[0] <= times[-1] <= body["now"]

    async def test_env_and_logs_are_masked(self, tmp_path: Path) -> None:
        """The page never receives a token: the delete and context tokens, the sidecar's and
        the emulator's own are `<redacted>` in the env, and in the logs even when the game
        prints them; the logs fall back to the last output once discarded."""
        script = tmp_path / "game.py"
        script.write_text(
            "import os, signal, socket, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
            "print('my token is ' + os.environ['ARBITRIUM_DELETE_TOKEN'], flush=True)\n"
            "udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "udp.bind(('127.0.0.1', int(os.environ['ARBITRIUM_PORT_GAMEPORT_INTERNAL'])))\n"
            "time.sleep(600)\n"
        )
        options = _options(apps={"game": f"{sys.executable} {script}"}, isolation="ports")
        variables = [
            {"key": "SIDECAR_API_TOKEN", "value": SIDECAR_TOKEN, "is_hidden": True},
            {"key": "MY_SECRET", "value": "hunter2", "is_hidden": True},
            {"key": "PLAIN", "value": "visible", "is_hidden": False},
        ]
        async with EmulatorServer(options) as emu:
            rid = await emu.deploy("game", environment_variables=variables)
            raw = await emu.env(rid)
            base = f"/_emulator/deployments/{rid}"
            _, env = await emu.call("GET", f"{base}/env/masked")
            assert env["ARBITRIUM_REQUEST_ID"] == rid
            assert env["PLAIN"] == "visible"
            text = json.dumps(env)
            for secret in (
                raw["ARBITRIUM_DELETE_TOKEN"],
                raw["ARBITRIUM_CONTEXT_TOKEN"],
                SIDECAR_TOKEN,
                "hunter2",
            ):
                assert secret not in text
            assert env["ARBITRIUM_DELETE_TOKEN"] == "<redacted>"
            assert env["MY_SECRET"] == "<redacted>"
            async with asyncio.timeout(20):
                while True:
                    _, logs = await emu.call("GET", f"{base}/logs/masked")
                    if logs["lines"]:
                        break
                    await asyncio.sleep(0.05)
            assert logs["source"] == "logs"
            assert logs["lines"] == ["my token is <redacted>"]
            assert (await emu.call("GET", f"{base}/logs/masked?tail=0"))[0] == 400
            await emu.wait_for_status(rid, "Status.READY", 20)
            await emu.call("DELETE", f"/v1/stop/{rid}", params={"container_log_storage": "false"})
            await emu.wait_for_status(rid, "Status.TERMINATED", 20)
            _, logs = await emu.call("GET", f"{base}/logs/masked")
            assert logs["source"] == "last_output"
            assert logs["lines"] == ["my token is <redacted>"]


# ---- in a real browser ------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """Headless Chromium driven over the DevTools protocol (a websocket): enough of a client to
    load a page, read what it shows and click where a person would."""

    def __init__(self, process: asyncio.subprocess.Process, ws: aiohttp.ClientWebSocketResponse):
        self.process = process
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        async with asyncio.timeout(30):
            while True:
                message = await self.ws.receive_json()
                if message.get("id") == call_id:
                    if "error" in message:
                        raise AssertionError(f"{method}: {message['error']}")
                    result: dict[str, Any] = message["result"]
                    return result

    async def evaluate(self, expression: str) -> Any:
        answer = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 60.0) -> Any:
        """The value of `expression` once truthy, polled as a person would keep looking."""
        last: Any = None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    # Until the page has loaded, what we look for may not exist yet.
                    with contextlib.suppress(AssertionError):
                        if last := await self.evaluate(expression):
                            break
                    await asyncio.sleep(0.1)
        except TimeoutError:
            shown = await self.evaluate("document.body.innerText")
            raise AssertionError(f"the page never showed {what}; it shows:\n{shown}") from None
        return last

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )


@contextlib.asynccontextmanager
async def open_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium on PATH: apt-get install chromium (CI installs it, .ci/run)")
    profile = tmp_path / "chromium-profile"
    process = await asyncio.create_subprocess_exec(
        binary,
        *("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"),
        *("--disable-extensions", "--disable-background-networking", "--disable-sync"),
        *("--remote-debugging-port=0", f"--user-data-dir={profile}"),
        *("--window-size=1280,900", "about:blank"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.exists() or not port_file.read_text().strip():
                if process.returncode is not None:
                    raise AssertionError(f"chromium exited with {process.returncode}")
                await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            page = next(target for target in targets if target["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Browser(process, ws)
    finally:
        # Its own session: the renderer and GPU helpers go with the browser.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _maybe_screenshot(browser: Browser) -> None:
    """With EMULATOR_DASHBOARD_SCREENSHOT=PATH, the page as it is now, to PATH (how
    docs/dashboard.png is made); without it, nothing."""
    path = os.environ.get("EMULATOR_DASHBOARD_SCREENSHOT")
    if not path:
        return
    shot = await browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    Path(path).write_bytes(base64.b64decode(shot["data"]))


class TestInBrowser:
    @pytest.mark.timeout(150)
    async def test_a_deployment_walks_to_ready_and_the_stop_button_ends_it(
        self, tmp_path: Path
    ) -> None:
        """In headless Chromium: the deployment of the example game (under the real sidecar)
        appears on the timeline, reaches READY, its logs show the game's lines and its
        sidecar's state shows through the proxy; Inject fault queues a self-stop fault for
        it; clicking Stop takes it to TERMINATED, on the page and on the platform API; no
        token is shown anywhere."""
        command = f"{sys.executable} -m sidecar run -- {sys.executable} {GAME_UNDER_SIDECAR}"
        options = _options(apps={"game": command}, isolation="ports", status_step_seconds=0.1)
        variables = [{"key": "SIDECAR_API_TOKEN", "value": SIDECAR_TOKEN, "is_hidden": True}]
        async with EmulatorServer(options) as emu, open_browser(tmp_path) as browser:
            rid = await emu.deploy("game", environment_variables=variables)
            await browser.send("Page.navigate", url=f"{emu.url}/#token={TOKEN}")
            row = f'#timeline .row[data-request-id="{rid}"]'
            await browser.wait_for(f"document.querySelector('{row}') !== null", "the deployment")
            # The token left the address bar once read.
            assert TOKEN not in await browser.evaluate("location.href")
            await browser.wait_for(
                f"document.querySelector('{row}').dataset.status === 'Status.READY'", "READY"
            )
            segments = await browser.evaluate(
                f"[...document.querySelectorAll('{row} rect[data-status]')]"
                ".map(r => r.dataset.status)"
            )
            assert segments[0] == "Status.INITIALIZING"
            assert "Status.READY" in segments
            await browser.wait_for(
                "document.getElementById('logs').textContent.includes('[game] listening on')",
                "the game's log lines",
            )
            state = await browser.wait_for(
                "document.getElementById('sidecar-state')?.textContent", "the sidecar's state"
            )
            assert state in ("ready", "allocated", "active")
            assert await browser.evaluate("document.getElementById('detail-id').textContent") == rid

            await browser.click("#fault-button")
            await browser.wait_for(
                "document.getElementById('faults').textContent.includes('503 · 2 left')",
                "the fault it queued",
            )
            _, pending = await emu.call("GET", "/_emulator/faults")
            [fault] = pending["faults"]
            assert (fault["target"], fault["request_id"]) == ("self_stop", rid)

            await browser.click("#stop-button")
            await browser.wait_for(
                "document.getElementById('action-result').textContent.includes('Stop requested')",
                "the stop's answer",
            )
            await browser.wait_for(
                f"document.querySelector('{row}').dataset.status === 'Status.TERMINATED'",
                "TERMINATED",
            )
            status, body = await emu.call("GET", f"/v1/status/{rid}")
            assert body["current_status"] == "Status.TERMINATED", (status, body)
            await browser.evaluate("document.getElementById('env-details').open = true")
            shown = await browser.evaluate("document.body.innerText")
            assert "ARBITRIUM_REQUEST_ID" in shown
            raw = await emu.env(rid)
            for secret in (TOKEN, SIDECAR_TOKEN, raw["ARBITRIUM_DELETE_TOKEN"]):
                assert secret not in shown

    @pytest.mark.timeout(150)
    async def test_make_a_match_where_nobody_shows_up(self, tmp_path: Path) -> None:
        """In headless Chromium: "Make a match" with its defaults (2 teams x 1 player) and a
        3 s no-show timeout makes a matchmaker deployment of the example game under the real
        sidecar; the page selects it (not the deployment already running), it reaches READY,
        its match panel lists the two tickets (the ones in its MM_* variables), nobody arrived,
        and the no-show countdown runs; with nobody joining, the sidecar stops it for no_show,
        the page says so and marks both tickets as never arrived, and the deployment reaches
        TERMINATED."""
        command = f"{sys.executable} -m sidecar run -- {sys.executable} {GAME_UNDER_SIDECAR}"
        options = _options(apps={"game": command}, isolation="ports", status_step_seconds=0.1)
        async with EmulatorServer(options) as emu, open_browser(tmp_path) as browser:
            # Another deployment already running (simulated): the page must move to the match.
            other = await emu.deploy("lobby")
            await emu.wait_for_status(other, "Status.READY", 20)
            await browser.send("Page.navigate", url=f"{emu.url}/#token={TOKEN}")
            await browser.wait_for(
                "!document.getElementById('match-button').disabled", "the match form"
            )
            form = await browser.evaluate(
                "['match-app', 'match-teams', 'match-players']"
                ".map(id => document.getElementById(id).value)"
            )
            # The app backed by a process comes first: its match has a sidecar to watch.
            assert form == ["game", "2", "1"]
            # The short timeout goes into the deployment's env, as a person would type it.
            await browser.evaluate("document.getElementById('match-no-show').value = '3'")
            await browser.click("#match-button")
            made = await browser.wait_for(
                "document.getElementById('match-made').dataset.requestId", "the match it made"
            )
            rid = str(made)
            env = await emu.env(rid)
            tickets = json.loads(env["MM_TICKET_IDS"])
            assert len(tickets) == 2
            assert len(json.loads(env["MM_TEAMS"])) == 2
            assert env["SIDECAR_NO_SHOW_TIMEOUT"] == "3s"
            note = await browser.evaluate("document.getElementById('match-made').textContent")
            assert env["MM_MATCH_ID"] in note

            row = f'#timeline .row[data-request-id="{rid}"]'
            await browser.wait_for(
                f"document.querySelector('{row}')?.dataset.status === 'Status.READY'", "READY"
            )
            assert await browser.evaluate("document.getElementById('detail-id').textContent") == rid
            shown = await browser.wait_for(
                "[...document.querySelectorAll('#match-tickets tr[data-ticket-id]')]"
                ".map(r => r.dataset.ticketId)",
                "the match's tickets",
            )
            assert shown == tickets
            await browser.wait_for(
                "document.getElementById('match').innerText.includes('0 of 2')", "no arrival"
            )
            countdown = await browser.wait_for(
                "document.getElementById('no-show-countdown')?.textContent.includes('stops in')"
                " && document.getElementById('no-show-countdown').textContent",
                "the no-show countdown",
            )
            assert "unless the quorum arrives" in countdown
            await _maybe_screenshot(browser)

            reason = await browser.wait_for(
                "document.getElementById('match-stop')?.dataset.reason", "the stop's reason"
            )
            assert reason == "no_show"
            await browser.wait_for(
                f"document.querySelector('{row}').dataset.status === 'Status.TERMINATED'",
                "TERMINATED",
            )
            await browser.wait_for(
                "[...document.querySelectorAll('#match-tickets tr[data-ticket-id]')]"
                ".every(r => r.innerText.includes('never arrived'))",
                "both tickets marked as never arrived",
            )
            panel = await browser.evaluate("document.getElementById('match').innerText")
            assert "no_show" in panel
            assert await browser.evaluate(
                "[...document.querySelectorAll('#match-tickets tr[data-ticket-id]')]"
                ".map(r => r.dataset.arrived)"
            ) == ["false", "false"]

    @pytest.mark.timeout(150)
    async def test_a_player_arriving_shows_on_the_match(self, tmp_path: Path) -> None:
        """A match of 2 x 1: when a player connects to the deployment's sidecar naming the
        first ticket (as a game's handshake reports it), the page marks that ticket arrived as
        that player, counts 1 of 2, and the no-show countdown stops (quorum 1 is met)."""
        command = f"{sys.executable} -m sidecar run -- {sys.executable} {GAME_UNDER_SIDECAR}"
        options = _options(apps={"game": command}, isolation="ports", status_step_seconds=0.1)
        async with (
            EmulatorServer(options) as emu,
            open_browser(tmp_path) as browser,
            aiohttp.ClientSession() as http,
        ):
            await browser.send("Page.navigate", url=f"{emu.url}/#token={TOKEN}")
            await browser.wait_for(
                "!document.getElementById('match-button').disabled", "the match form"
            )
            await browser.evaluate("document.getElementById('match-no-show').value = '60'")
            await browser.click("#match-button")
            rid = str(
                await browser.wait_for(
                    "document.getElementById('match-made').dataset.requestId", "the match"
                )
            )
            env = await emu.env(rid)
            first, second = json.loads(env["MM_TICKET_IDS"])
            await browser.wait_for(
                "document.getElementById('no-show-countdown')?.textContent.includes('stops in')",
                "the no-show countdown",
            )
            sidecar = f"http://127.0.0.1:{env['SIDECAR_PORT']}"
            body = {"player_id": "alice", "ticket_id": first}
            async with http.post(f"{sidecar}/v1/players/connect", json=body) as answer:
                assert answer.status == 200, await answer.text()
            ticket = f'#match-tickets tr[data-ticket-id="{first}"]'
            await browser.wait_for(
                f"document.querySelector('{ticket}')?.dataset.arrived === 'true'", "the arrival"
            )
            assert "arrived as alice" in await browser.evaluate(
                f"document.querySelector('{ticket}').innerText"
            )
            other = f'#match-tickets tr[data-ticket-id="{second}"]'
            assert "not yet" in await browser.evaluate(
                f"document.querySelector('{other}').innerText"
            )
            await browser.wait_for(
                "document.getElementById('match').innerText.includes('1 of 2 (quorum 1)')",
                "one arrival of two",
            )
            await browser.wait_for(
                "document.getElementById('no-show-countdown').textContent === 'not running'",
                "the countdown stopped",
            )
            assert await browser.evaluate("document.getElementById('match-stop')") is None

    @pytest.mark.timeout(60)
    async def test_a_match_the_emulator_refuses_says_why(self, tmp_path: Path) -> None:
        """With every location full, "Make a match" shows the emulator's refusal (503 and its
        message) instead of a match, and nothing is deployed."""
        from sidecar.emulator.locations import LOCATIONS

        options = _options(apps={"game": "sleep 600"}, location_capacity=1)
        async with EmulatorServer(options) as emu, open_browser(tmp_path) as browser:
            for _ in LOCATIONS:
                await emu.deploy("lobby")
            await browser.send("Page.navigate", url=f"{emu.url}/#token={TOKEN}")
            await browser.wait_for(
                "!document.getElementById('match-button').disabled", "the match form"
            )
            await browser.click("#match-button")
            shown = await browser.wait_for(
                "document.getElementById('match-made').textContent", "the refusal"
            )
            assert shown.startswith("Match refused (HTTP 503): "), shown
            assert "Couldn't Allocate Server" in shown
            assert (
                await browser.evaluate("document.getElementById('match-made').dataset.requestId")
                is None
            )
            _, timeline = await emu.call("GET", "/_emulator/timeline")
            assert len(timeline["deployments"]) == len(LOCATIONS)

    @pytest.mark.timeout(60)
    async def test_without_the_token_the_page_asks_for_it(self, tmp_path: Path) -> None:
        """Opened without `#token=`, the page shows its token field instead of data; typing
        the emulator's token there brings the deployments."""
        async with EmulatorServer(_options()) as emu, open_browser(tmp_path) as browser:
            rid = await emu.deploy("game")
            await browser.send("Page.navigate", url=f"{emu.url}/_emulator/ui")
            await browser.wait_for(
                "!document.getElementById('token-form').hidden", "the token field"
            )
            assert rid not in await browser.evaluate("document.body.innerText")
            await browser.evaluate(
                f"document.getElementById('token-input').value = {json.dumps(TOKEN)}"
            )
            await browser.click("#token-form button")
            await browser.wait_for(
                f"document.body.innerText.includes({json.dumps(rid)})", "the deployment"
            )


class TestDemo:
    @pytest.mark.timeout(90)
    async def test_demo_prints_the_dashboard_and_keep_leaves_it_up(self) -> None:
        """`demo --keep` prints the dashboard's URL (with its token), plays the match, then
        leaves the emulator up: the page and the finished deployment's timeline answer there
        until Ctrl-C, after which the demo ends with its usual last line and exit 0."""
        from sidecar.config import without_sidecar_variables

        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "sidecar", "demo", "--players", "1", "--rounds", "1"),
            *("--keep", "--quiet", "--timeout", "45"),
            cwd=ROOT,
            env=without_sidecar_variables(os.environ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(60):
                line = (await process.stdout.readline()).decode()
            assert "the emulator stays up (--keep)" in line, line
            dashboard = next(word for word in line.split() if "/_emulator/ui#token=" in word)
            page, _, fragment = dashboard.partition("#")
            token = fragment.removeprefix("token=")
            async with aiohttp.ClientSession() as http:
                async with http.get(page) as answer:
                    assert answer.status == 200
                base = page.removesuffix("/_emulator/ui")
                headers = {"authorization": f"token {token}"}
                async with http.get(base + "/_emulator/timeline", headers=headers) as answer:
                    body = await answer.json()
            [deployment] = body["deployments"]
            assert deployment["current_status"] == "Status.TERMINATED"
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(30):
                rest = (await process.stdout.read()).decode()
                await process.wait()
            assert process.returncode == 0, rest
            assert rest.startswith("demo ok"), rest
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
