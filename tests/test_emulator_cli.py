"""The `emulate` flags (`add_arguments` / `options_from_args`) and `run_emulator` start-up."""

from __future__ import annotations

import argparse
import asyncio
import socket

import aiohttp
import pytest

from sidecar.emulator import (
    EmulatorOptions,
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

    def test_all_flags(self) -> None:
        """Every flag lands in the options."""
        options = parse(
            "--host=0.0.0.0",
            "--port=0",
            "--api-token=t",
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
        assert (options.port, options.game_port, options.api_token) == (0, 0, "t")
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
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/v1/locations") as response,
        ):
            assert response.status == 401
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
