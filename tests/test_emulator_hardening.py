"""The emulator on a shared network and under SIGKILL (issue 15, items 9 and 10; SPEC §11
Round 2): the control API needs `--api-token` when one is set, an address beyond loopback needs
one, and no process a backed deployment started outlives the emulator, even a SIGKILLed one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import psutil
import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from sidecar.emulator.options import check_listen_address
from sidecar.errors import UsageError
from tests.conftest import base_env

TOKEN = "emulator-hardening-token"

# A game that ignores SIGTERM and starts a helper that leaves its process group and session
# (and ignores SIGTERM too), then binds its game port: READY means both run. Both carry the
# marker on their command line, so the test finds them whatever PID namespace they live in.
STUBBORN_GAME = r"""
import os, signal, socket, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
marker = sys.argv[1]
subprocess.Popen(
    [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
     "time.sleep(600)", marker],
    start_new_session=True,
)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", int(os.environ["ARBITRIUM_PORT_GAMEPORT_INTERNAL"])))
print("game up", flush=True)
time.sleep(600)
"""


def marked(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in (process.info["cmdline"] or []):
            found.append(process)
    return found


def isolation_modes() -> list[str]:
    from sidecar.emulator import netns

    return ["ports"] if netns.unavailable() is not None else ["netns", "ports"]


class TestControlApiAuth:
    async def test_control_routes_need_the_api_token(self) -> None:
        """With an api token, /_emulator/ routes answer 401 without it or with another one,
        and work with it; the readiness probe needs none."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, api_token=TOKEN)
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("game")
            env_path = f"/_emulator/deployments/{request_id}/env"
            for path in (env_path, "/_emulator/requests", "/_emulator/faults"):
                assert (await emu.call("GET", path, auth=False))[0] == 401, path
                wrong = {"authorization": "token not-the-token"}
                assert (await emu.call("GET", path, auth=False, headers=wrong))[0] == 401
            fault = {"target": "self_stop", "status": 503}
            status, _ = await emu.call("POST", "/_emulator/faults", auth=False, json=fault)
            assert status == 401
            assert (await emu.call("GET", "/_emulator/faults"))[1]["faults"] == []
            assert (await emu.env(request_id))["ARBITRIUM_REQUEST_ID"] == request_id
            assert (await emu.call("GET", "/_emulator/health", auth=False))[0] == 200

    async def test_without_api_token_control_routes_stay_open(self) -> None:
        """Without an api token (loopback only), /_emulator/ needs no header, as before."""
        async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0.0)) as emu:
            request_id = await emu.deploy("game")
            path = f"/_emulator/deployments/{request_id}/env"
            assert (await emu.call("GET", path, auth=False))[0] == 200


class TestListenAddress:
    @pytest.mark.parametrize("host", ["0.0.0.0", "::"])
    def test_beyond_loopback_without_token_exits_2(self, host: str) -> None:
        """`emulate --host 0.0.0.0` (or ::) without --api-token exits 2 naming --host and
        --api-token, without a traceback."""
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "emulate", "--host", host, "--port", "0"],
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "--host" in result.stderr
        assert "--api-token" in result.stderr
        assert "Traceback" not in result.stderr

    def test_short_api_token_exits_2_without_echoing_it(self) -> None:
        """An --api-token under 8 characters exits 2 naming the flag, never printing it."""
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "emulate", "--api-token", "s3cr7", "--port", "0"],
            env=base_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert "--api-token" in result.stderr
        assert "s3cr7" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr

    def test_loopback_names_and_tokens(self) -> None:
        """Loopback addresses and names that resolve to loopback need no token; a wildcard
        does, and is fine with one; a name that does not resolve is a usage error."""
        for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
            check_listen_address(host, None)
        check_listen_address("0.0.0.0", TOKEN)
        with pytest.raises(UsageError, match="--host"):
            check_listen_address("0.0.0.0", None)
        with pytest.raises(UsageError, match="--host"):
            check_listen_address("no-such-host.invalid", None)

    async def test_in_process_server_refuses_too(self) -> None:
        """EmulatorServer applies the same rule as the command."""
        with pytest.raises(UsageError, match="--host"):
            async with EmulatorServer(EmulatorOptions(host="0.0.0.0", port=0)):
                pass


class TestNothingOutlivesTheEmulator:
    async def test_the_game_starts_with_default_signal_dispositions(self) -> None:
        """Under its guardian a backed command ignores no signal (Python ignores SIGPIPE and
        SIGXFSZ; the guardian SIGTERM and SIGINT): a game behaves as started by a runtime."""
        command = "grep SigIgn /proc/self/status"
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            game_port_check=False,
            restart_policy="never",
            apps={"game": command},
        )
        async with EmulatorServer(options) as emu:
            request_id = await emu.deploy("game")
            await emu.wait_for_status(request_id, "Status.TERMINATED", 30)
            _, internals = await emu.call("GET", f"/_emulator/deployments/{request_id}")
            assert internals["last_output"] == ["SigIgn:\t0000000000000000"]

    @pytest.mark.timeout(60)
    async def test_a_stop_takes_the_helper_that_left_the_session(self, tmp_path: Path) -> None:
        """DELETE /v1/stop of a game whose helper left its process group and session (and
        ignores SIGTERM): at TERMINATED the helper is gone too, as with a container."""
        script = tmp_path / "stubborn.py"
        script.write_text(STUBBORN_GAME)
        marker = f"marker-{uuid.uuid4().hex}"
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            stop_grace_seconds=0.5,
            apps={"game": f"{sys.executable} {script} {marker}"},
        )
        try:
            async with EmulatorServer(options) as emu:
                request_id = await emu.deploy("game")
                await emu.wait_for_status(request_id, "Status.READY", 30)
                assert len(marked(marker)) >= 2
                assert await emu.stop(request_id) == 200
                await emu.wait_for_status(request_id, "Status.TERMINATED", 30)
                assert marked(marker) == []
        finally:
            for process in marked(marker):  # only on failure: ours, found by the marker
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)

    @pytest.mark.timeout(90)
    @pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
    @pytest.mark.parametrize("isolation", isolation_modes())
    async def test_nothing_survives_the_emulator(
        self, tmp_path: Path, isolation: str, signum: signal.Signals
    ) -> None:
        """SIGKILL (or SIGTERM) the emulator while a backed game that ignores SIGTERM runs,
        with a helper that left its process group and session: both are gone soon after
        (netns: a PID namespace; ports: the guardian, without root's namespaces)."""
        script = tmp_path / "stubborn.py"
        script.write_text(STUBBORN_GAME)
        marker = f"marker-{uuid.uuid4().hex}"
        command = f"{sys.executable} {script} {marker}"
        url_file = tmp_path / "url"
        emulator = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "sidecar", "emulate", "--port", "0"),
            *("--url-file", str(url_file), "--isolation", isolation, "--status-step", "0"),
            *("--restart-policy", "never", "--stop-grace", "0.5", "--app", f"game={command}"),
            env=base_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            assert emulator.stdout is not None
            async with asyncio.timeout(30):
                while b"listening on" not in (line := await emulator.stdout.readline()):
                    assert line, "the emulator exited at start-up"
            url = line.decode().split()[-1]
            headers = {"authorization": "token any-token"}
            body = {
                "application": "game",
                "version": "v1",
                "users": [{"user_type": "ip_address", "user_data": {"ip_address": "127.0.0.1"}}],
            }
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.post(f"{url}/deployments", json=body) as answer:
                    request_id = (await answer.json())["request_id"]
                wait = f"{url}/_emulator/deployments/{request_id}/wait"
                params = {"status": "Status.READY", "timeout": "30"}
                async with http.get(wait, params=params) as answer:
                    ready = await answer.json()
                    assert ready["current_status"] == "Status.READY", ready
            assert len(marked(marker)) >= 2  # the game and its escaped helper
            emulator.send_signal(signum)
            await emulator.wait()
            survivors = marked(marker)
            _, alive = await asyncio.to_thread(psutil.wait_procs, survivors, 10)
            assert alive == [], f"outlived the emulator: {alive}"
        finally:
            if emulator.returncode is None:
                emulator.kill()
                await emulator.wait()
            for process in marked(marker):  # only on failure: ours, found by the marker
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
