"""Issue 8 items 1, 2, 6 and 10: our stdout and stderr (SPEC §11).

The ordered writer on real pipes (records on their own lines, never blocking the loop, never
raising), the stderr log writer on a pipe nobody reads, the text-log escaping, and a real sidecar
in run mode whose game writes 4096-byte blocks that end mid-line, as C stdio does on a pipe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sidecar.emulator import EmulatorServer
from sidecar.logs import (
    EscapingFilter,
    QueuedStderrHandler,
    RedactingFilter,
    StderrWriter,
    TextFormatter,
)
from sidecar.output import OrderedOutput, encode_record
from tests.conftest import base_env, fill_pipe
from tests.sidecar_process import start_sidecar, wait_healthy

CHATTER_GAME = Path(__file__).parent / "faults" / "chatter_game.py"
RECORD = {"event": "sidecar.stop", "reason": "shutdown_requested"}
RECORD_LINE = encode_record(RECORD)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = bytearray()
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return bytes(data)


# --- the ordered writer --------------------------------------------------------------------------
async def test_a_record_waits_for_the_game_to_end_its_line(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    output = OrderedOutput(write_fd, line_end_wait=5.0)
    output.write_game(b"first line\nthe quick brown")
    record = asyncio.create_task(output.write_record(RECORD, wait=5.0))
    await asyncio.sleep(0.05)  # the writer thread takes the record and waits for the line end
    assert not record.done()
    await asyncio.to_thread(output.write_game, b" fox\nnext line\n")
    assert await record is True
    assert _read_all(read_fd) == b"first line\nthe quick brown fox\n" + RECORD_LINE + (
        b"next line\n"
    )


async def test_a_line_that_does_not_end_in_time_is_ended_for_the_record(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    output = OrderedOutput(write_fd, line_end_wait=0.05)
    output.write_game(b"no newline yet")
    assert await output.write_record(RECORD, wait=2.0) is True
    output.write_game(b" and more\n")
    assert _read_all(read_fd) == b"no newline yet\n" + RECORD_LINE + b" and more\n"


async def test_records_between_whole_lines_are_written_at_once(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    output = OrderedOutput(write_fd, line_end_wait=5.0)
    output.write_game(b"a whole line\n")
    started = time.monotonic()
    assert await output.write_record(RECORD, wait=5.0) is True
    assert time.monotonic() - started < 2.0  # not the 5 s line wait
    assert _read_all(read_fd) == b"a whole line\n" + RECORD_LINE


async def test_a_broken_stdout_costs_nothing_and_says_so_once(
    pipe: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    read_fd, write_fd = pipe
    os.close(read_fd)
    output = OrderedOutput(write_fd)
    caplog.set_level(logging.WARNING, "sidecar.output")
    assert await output.write_record(RECORD, wait=2.0) is False
    assert await output.write_record({"event": "second"}, wait=2.0) is False
    output.submit_record({"event": "from a signal handler"})  # must not raise
    # The explanation survives on stderr: each record is logged there instead.
    assert "shutdown_requested" in caplog.text
    assert "second" in caplog.text


async def test_a_stalled_stdout_never_blocks_the_loop(pipe: tuple[int, int]) -> None:
    _, write_fd = pipe
    fill_pipe(write_fd)
    output = OrderedOutput(write_fd, max_queued=2)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    assert await output.write_record(RECORD, wait=0.3) is False
    took = time.monotonic() - started
    for _ in range(100):  # far more than the queue holds: dropped, never raised or blocked
        output.submit_record({"event": "sidecar.terminate"})
    assert await output.write_record(RECORD, wait=0.3) is False
    ticker.cancel()
    assert took < 2.0
    assert ticks >= 10  # the loop kept running while the writer was stuck


async def test_a_game_stuck_writing_does_not_hold_a_record_past_its_wait(
    pipe: tuple[int, int],
) -> None:
    """The relay thread blocked in a write to a full pipe holds the output lock; the loop only
    ever waits on the record's future, never on that lock."""
    _, write_fd = pipe
    fill_pipe(write_fd)
    output = OrderedOutput(write_fd)

    def stuck_relay() -> None:
        with contextlib.suppress(OSError):  # the pipe is closed under it at teardown
            output.write_game(b"x" * 65536)

    relay = threading.Thread(target=stuck_relay, daemon=True)
    relay.start()
    started = time.monotonic()
    assert await output.write_record(RECORD, wait=0.3) is False
    assert time.monotonic() - started < 2.0


def test_non_finite_numbers_are_written_as_json_strings() -> None:
    line = encode_record({"event": "sidecar.stop", "match_result": {"score": float("nan")}})
    parsed = json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in the record"))
    assert parsed["match_result"] == {"score": "nan"}
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1


# --- stderr: the log writer and the text format --------------------------------------------------
def _handler(write_fd: int) -> tuple[StderrWriter, logging.Logger]:
    writer = StderrWriter(write_fd)
    handler = QueuedStderrHandler(writer)
    handler.setFormatter(TextFormatter())
    handler.addFilter(EscapingFilter())
    handler.addFilter(RedactingFilter([]))
    logger = logging.getLogger(f"test-output-{id(writer)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return writer, logger


def test_a_newline_in_a_value_cannot_forge_a_text_log_line(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    writer, logger = _handler(write_fd)
    forged = "done\n2026-12-02T00:00:00.000Z INFO    sidecar: stop accepted"
    logger.info("shutdown requested: %s (%r)", forged, forged)
    assert writer.flush(5.0)
    lines = _read_all(read_fd).decode().splitlines()
    assert len(lines) == 1
    assert "done\\n2026-12-02" in lines[0]


def test_a_stalled_stderr_drops_lines_instead_of_blocking(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    fill_pipe(write_fd)
    writer, logger = _handler(write_fd)
    started = time.monotonic()
    for number in range(30_000):  # three times what the queue holds
        logger.warning("line %d", number)
    assert time.monotonic() - started < 10.0  # never blocked on the full pipe
    assert not writer.flush(0.1)
    collected = bytearray()  # the reader comes back

    def drain() -> None:
        while chunk := os.read(read_fd, 65536):
            collected.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert writer.flush(10.0)
    os.close(write_fd)  # end of file for the reader, once it has read everything
    reader.join(10.0)
    text = collected.decode()
    assert "log lines were dropped" in text
    # The oldest lines went; the newest, which explain a stop, are all there.
    assert "line 29999" in text
    assert "line 20000\n" in text
    assert "line 100\n" not in text


def test_a_broken_stderr_is_given_up_on_silently(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(read_fd)
    writer, logger = _handler(write_fd)
    for number in range(100):
        logger.warning("line %d", number)
    assert writer.flush(5.0)


# --- a real sidecar ------------------------------------------------------------------------------
async def _sidecar_run(
    emulator: EmulatorServer, *game: str, stdout: int, stderr: int
) -> tuple[asyncio.subprocess.Process, str, str]:
    proc, url, request_id = await start_sidecar(emulator, *game, stdout=stdout, stderr=stderr)
    async with asyncio.timeout(15), aiohttp.ClientSession() as http:
        await wait_healthy(http, url)
    return proc, url, request_id


async def _deletes(emulator: EmulatorServer) -> list[dict[str, object]]:
    return await emulator.requests(path_contains="/v1/self/stop/", method="DELETE")


async def test_the_stop_record_stands_on_its_own_line_in_block_buffered_output(
    emulator: EmulatorServer,
) -> None:
    """Item 6: the game writes 4096-byte blocks that end mid-line; the record must not land
    inside one of its lines, and every game line must come out whole."""
    proc, url, _ = await _sidecar_run(
        emulator,
        sys.executable,
        str(CHATTER_GAME),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    output = bytearray()

    async def read() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            output.extend(chunk)

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(10):
            while output.count(b"\n") < 5:
                await asyncio.sleep(0.02)
        async with (
            aiohttp.ClientSession() as http,
            http.post(url + "/v1/shutdown", json={"grace_seconds": 0}) as response,
        ):
            assert response.status == 202
        async with asyncio.timeout(10):
            while b'"sidecar.stop"' not in output:
                await asyncio.sleep(0.02)
            while not await _deletes(emulator):
                await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.wait()
        await reader
    game_line = b"the quick brown fox jumps over the lazy dog " * 30
    lines = bytes(output).split(b"\n")
    records = [line for line in lines if b"sidecar.stop" in line]
    assert len(records) == 1
    assert json.loads(records[0])["event"] == "sidecar.stop"
    record_at = lines.index(records[0])
    # Every game line before the record is whole (the first may be the start of the stream).
    for line in lines[1:record_at]:
        assert line == game_line, line[:80]
    assert len(await _deletes(emulator)) == 1


async def test_a_stalled_stderr_cannot_stop_the_self_stop_or_a_signal(
    emulator: EmulatorServer,
) -> None:
    """Item 2 for stderr: a log reader that stops reading. The game logs a lot to stderr (the
    relay is stuck too); the sidecar's own log calls must not block the loop."""
    read_fd, write_fd = os.pipe()
    fill_pipe(write_fd)
    try:
        proc, url, request_id = await _sidecar_run(
            emulator,
            sys.executable,
            "-c",
            "import signal,sys,time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
            "while True:\n"
            "    sys.stderr.write('game noise ' * 100 + '\\n'); time.sleep(0.001)\n",
            stdout=subprocess.DEVNULL,
            stderr=write_fd,
        )
        os.close(write_fd)
        write_fd = -1
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(5), http.get(url + "/healthz") as response:
                assert response.status == 200
            async with http.post(url + "/v1/shutdown", json={"grace_seconds": 0}) as response:
                assert response.status == 202
            asked = loop.time()
            async with asyncio.timeout(10):
                while not await _deletes(emulator):
                    await asyncio.sleep(0.02)
            assert loop.time() - asked < 2.5  # SPEC §11: at most 1 s late; margin for CI
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await proc.wait()
        assert code == 0  # the game got the SIGTERM and exited 0
        deletes = await _deletes(emulator)
        assert len(deletes) == 1
        assert request_id in str(deletes[0]["path"])
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)


@pytest.mark.parametrize("how", ["reader gone", "stalled"])
async def test_sigterm_reaches_the_game_whatever_stdout_does(
    emulator: EmulatorServer, how: str, tmp_path: Path
) -> None:
    """Item 1: the terminate record is written from the signal handler; a broken stdout used to
    raise there, and the signal was never forwarded."""
    handler_set = tmp_path / "handler-set"
    read_fd, write_fd = os.pipe()
    if how == "reader gone":
        os.close(read_fd)
        read_fd = -1
    else:
        fill_pipe(write_fd)
    try:
        proc, _, _ = await _sidecar_run(
            emulator,
            sys.executable,
            "-c",
            "import pathlib,signal,sys,time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
            f"pathlib.Path({str(handler_set)!r}).touch()\n"
            "while True: time.sleep(1)\n",
            stdout=write_fd,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        write_fd = -1
        # Only once the game has its handler: a SIGTERM before it would kill it (143, not 7).
        async with asyncio.timeout(15):
            while not handler_set.exists():
                await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            code = await proc.wait()
        assert code == 7  # the game got the signal; its exit code is ours (SPEC §7)
        assert await _deletes(emulator) == []  # the platform is stopping us: no self-stop
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)


async def test_a_game_exit_does_not_wait_for_output_nobody_reads(pipe: tuple[int, int]) -> None:
    """The fault matrix measured a game-exit stop ~3 s late with a stalled stdout: the exit
    waited twice the drain timeout for a relay stuck in a write. Now a write that has waited
    STALLED_AFTER ends the wait, and the record goes to stderr at once."""
    from sidecar.reaper import Reaper
    from sidecar.supervisor import GameProcess

    _, write_fd = pipe
    fill_pipe(write_fd)
    output = OrderedOutput(write_fd)
    async with Reaper(orphan_grace=0.05) as reaper:
        game = GameProcess(
            [sys.executable, "-c", "import os; os.write(1, b'x' * 300_000)"],
            env=base_env(),
            stdout_fd=write_fd,
            stdout_writer=output,
            reaper=reaper,
        )
        game.start()
        started = time.monotonic()
        game_exit = await game.wait()
        waited = time.monotonic() - started
        record_started = time.monotonic()
        assert await output.write_record(RECORD) is False
        record_took = time.monotonic() - record_started
    assert game_exit.exit_code == 0
    # Was 2 s (twice the drain timeout) plus the 0.75 s record wait; now about 0.3 s + 0.
    assert waited < 1.5
    assert record_took < 0.5
