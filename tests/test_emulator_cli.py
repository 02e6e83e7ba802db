"""The `emulate` flags (`add_arguments` / `options_from_args`) and `run_emulator` start-up."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from sidecar.emulator import (
    EmulatorOptions,
    EmulatorServer,
    FaultSpec,
    add_arguments,
    options_from_args,
    run_emulator,
)
from sidecar.errors import StartupError, UsageError


def parse(*argv: str) -> EmulatorOptions:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return options_from_args(parser.parse_args(list(argv)))


class TestFlags:
    def test_defaults(self) -> None:
        """No flags give the documented defaults (127.0.0.1:9000, restart always, port 7777)."""
        options = parse()
        assert (options.host, options.port, options.api_token) == ("127.0.0.1", 9000, None)
        assert options.restart_policy == "always"
        assert options.game_port == 7777
        assert options.apps == {}
        assert options.faults == ()
        assert options.show_tokens is False
        assert options.isolation == "auto"  # the command's; EmulatorOptions() keeps "ports"
        assert EmulatorOptions().isolation == "ports"
        assert (options.rate_limits, options.url_file, options.location_capacity) == (
            False,
            None,
            None,
        )

    def test_all_flags(self) -> None:
        """Every flag lands in the options."""
        options = parse(
            "--host=0.0.0.0",
            "--port=0",
            "--api-token=t0ken-of-8",
            "--app",
            "game=./server --port 7777",
            "--app=other=sleep 100",
            "--restart-policy=never",
            "--game-port=0",
            "--stop-grace=1.5",
            "--status-step=0",
            "--restart-delay=0.1",
            "--self-stop-fault=503x2",
            "--self-stop-fault=429",
            "--self-stop-retry-after=4",
            "--self-stop-delay=1.5x3",
            "--show-tokens",
        )
        assert options.show_tokens is True
        assert options.apps == {"game": "./server --port 7777", "other": "sleep 100"}
        assert (options.port, options.game_port, options.api_token) == (0, 0, "t0ken-of-8")
        assert options.restart_policy == "never"
        assert (options.stop_grace_seconds, options.status_step_seconds) == (1.5, 0.0)
        assert options.faults == (
            FaultSpec(status=503, count=2, retry_after="4"),
            FaultSpec(status=429, count=1, retry_after="4"),
            FaultSpec(status=None, count=3, delay_seconds=1.5),
        )

    @pytest.mark.parametrize(
        ("argv", "flag"),
        [
            (["--port=http"], "--port"),
            (["--port=70000"], "--port"),
            (["--game-port=-1"], "--game-port"),
            (["--app=nocommand"], "--app"),
            (["--app==cmd"], "--app"),
            (["--app=a=x", "--app=a=y"], "--app"),
            (["--restart-policy=sometimes"], "--restart-policy"),
            (["--stop-grace=soon"], "--stop-grace"),
            (["--status-step=-1"], "--status-step"),
            (["--self-stop-fault=abc"], "--self-stop-fault"),
            (["--self-stop-fault=503x0"], "--self-stop-fault"),
            (["--self-stop-fault=99"], "--self-stop-fault"),
            (["--self-stop-delay=later"], "--self-stop-delay"),
            (["--api-token= "], "--api-token"),
        ],
    )
    def test_bad_values_raise_usage_error(self, argv: list[str], flag: str) -> None:
        """A bad flag value raises UsageError naming the flag."""
        with pytest.raises(UsageError, match=flag):
            parse(*argv)


class TestRunEmulator:
    async def test_port_in_use_is_startup_error(self) -> None:
        """A port already in use raises StartupError."""
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            with pytest.raises(StartupError, match=str(port)):
                await run_emulator(EmulatorOptions(port=port))

    async def test_prints_url_and_serves_until_cancelled(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """run_emulator prints its base URL, serves it, and returns cleanly on cancel."""
        task = asyncio.create_task(run_emulator(EmulatorOptions(port=0)))
        async with asyncio.timeout(5):
            while "http://" not in (line := capsys.readouterr().out):
                await asyncio.sleep(0.01)
        url = line.strip().split()[-1]
        # Without --api-token the dashboard needs nothing: its line is the bare page URL.
        assert f"dashboard: {url}/_emulator/ui\nEdgegap emulator listening on {url}\n" in line
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/v1/locations") as response,
        ):
            assert response.status == 401
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class TestScripting:
    """What a CI script needs without parsing stdout: the URL in a file, a readiness probe,
    and each app's own restart policy (issue 11, finding 8)."""

    async def test_url_file_and_health_probe(self, tmp_path: Path) -> None:
        """With --port 0 and --url-file, the bound URL is in the file once the emulator
        listens, GET /_emulator/health answers 200 there, and the file goes at exit."""
        url_file = tmp_path / "emulator.url"
        task = asyncio.create_task(run_emulator(EmulatorOptions(port=0, url_file=str(url_file))))
        async with asyncio.timeout(5):
            while not url_file.exists():
                await asyncio.sleep(0.01)
        url = url_file.read_text().strip()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/_emulator/health") as response,
        ):
            assert response.status == 200
            health = await response.json()
        assert health["status"] == "ok"
        assert health["url"] == url
        assert health["isolation"] in ("netns", "ports")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not url_file.exists()

    def test_restart_policy_flags(self, tmp_path: Path) -> None:
        """A bare --restart-policy sets the default, NAME=POLICY one app's; an app version file
        sets its own, and the flag for that app wins over it."""
        version = tmp_path / "version.json"
        version.write_text(
            json.dumps({"version": {"restart_policy": "on_failure", "time_to_deploy": 20}})
        )
        options = parse(
            "--app=a=./a",
            "--app=b=./b",
            "--app=c=./c",
            "--restart-policy=never",
            "--restart-policy=a=always",
            f"--app-version=c={version}",
        )
        assert options.app_version("a").restart_policy == "always"
        assert options.app_version("b").restart_policy == "never"
        assert options.app_version("c").restart_policy == "on_failure"
        assert options.app_version("c").time_to_deploy == 20
        assert parse(f"--app-version=c={version}", "--restart-policy=c=never").app_version(
            "c"
        ).restart_policy == ("never")

    @pytest.mark.parametrize(
        "argv",
        [
            ["--restart-policy=a=sometimes"],
            ["--restart-policy==never"],
            ["--app-version=c=/no/such/file.json"],
            ["--isolation=vm"],
            ["--time-to-deploy=0"],
            ["--endpoint-storage=bad name!"],
            ["--location-capacity=0"],
            ["--game-port-protocol=SCTP"],
        ],
    )
    def test_bad_new_flags(self, argv: list[str]) -> None:
        """A bad value of the newer flags raises UsageError naming the flag."""
        flag = argv[0].split("=", 1)[0]
        with pytest.raises(UsageError, match=flag):
            parse(*argv)

    async def test_per_app_restart_policy(self, tmp_path: Path) -> None:
        """Two crashing apps, one with `never`: it terminates on its first exit, while the
        other (the default `always`) is restarted."""
        script = tmp_path / "crash.py"
        script.write_text(
            "import os, socket, sys, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('127.0.0.1', int(os.environ['ARBITRIUM_PORT_GAMEPORT_INTERNAL'])))\n"
            "time.sleep(0.3)\n"
            "sys.exit(3)\n"
        )
        command = f"{sys.executable} {script}"
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            restart_delay_seconds=0.05,
            apps={"once": command, "loop": command},
            restart_policies={"once": "never"},
        )
        async with EmulatorServer(options) as emu:
            once, loop = await emu.deploy("once"), await emu.deploy("loop")
            await emu.wait_for_status(once, "Status.TERMINATED", 10)
            async with asyncio.timeout(10):
                while (await emu.logs(loop))["crash_data"]["restart_count"] < 1:
                    await asyncio.sleep(0.05)
            assert (await emu.status(loop))["current_status"] == "Status.READY"
