"""Records (stdout) and log lines (stderr) written in the order they were emitted, on real pipes.

The two writers share a WriteOrder as the process's fd 1 and fd 2 writers do. Where both write
to one pipe (as `2>&1`, or a runtime merging the two), the pipe's content is the emission order;
where one stream stalls or breaks, the other goes on within the budgets it had before."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator

import pytest

from sidecar.logs import QueuedStderrHandler, StderrWriter
from sidecar.output import RECORD_TIMEOUT, OrderedOutput, encode_record
from sidecar.write_order import STALLED_AFTER, WriteOrder
from tests.conftest import fill_pipe

RECORD = {"event": "sidecar.stop", "reason": "shutdown_requested"}
# Where the test is about the order, not the safety net: a writer thread starved for a second on
# a loaded machine must not look like one that never writes.
UNHURRIED = 30.0


@contextlib.contextmanager
def _pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    try:
        yield read_fd, write_fd
    finally:
        for fd in (read_fd, write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _logger(writer: StderrWriter) -> logging.Logger:
    handler = QueuedStderrHandler(writer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"test-write-order-{id(writer)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = bytearray()
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    return bytes(data)


class TestOnePipe:
    """Both writers on one pipe: what a merged log shows."""

    async def test_lines_and_records_come_out_in_emission_order(self) -> None:
        """However records and log lines alternate, the merged output is their emission order
        (with two unordered writer threads, records overtook lines or fell behind them)."""
        rng = random.Random(17)
        with _pipe() as (read_fd, write_fd):
            collected = bytearray()

            def read() -> None:  # a runtime reading as the lines come
                with contextlib.suppress(OSError):
                    while chunk := os.read(read_fd, 65536):
                        collected.extend(chunk)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            order = WriteOrder(wait_limit=UNHURRIED)
            # Far more records than a run emits: none of them may be sent to stderr for want
            # of room.
            output = OrderedOutput(write_fd, order=order, max_queued=400)
            writer = StderrWriter(write_fd, order=order)
            log = _logger(writer)
            expected: list[str] = []
            for number in range(400):
                if rng.random() < 0.5:
                    log.info("log %d", number)
                    expected.append(f"log {number}")
                else:
                    output.submit_record({"event": "test", "n": number})
                    expected.append(f"record {number}")
                if rng.random() < 0.1:
                    await asyncio.sleep(0)  # now and then the writers catch up mid-stream
            assert await asyncio.to_thread(output.flush, 10.0)
            assert await asyncio.to_thread(writer.flush, 10.0)
            os.close(write_fd)  # end of file for the reader once it has everything
            await asyncio.to_thread(reader.join, 10.0)
            seen = []
            for line in collected.decode().splitlines():
                if line.startswith("{"):
                    seen.append(f"record {json.loads(line)['n']}")
                else:
                    seen.append(line)
            assert seen == expected

    async def test_a_line_logged_after_a_record_waits_with_it_for_the_game_line(self) -> None:
        """A record waiting for the game to end its line holds the log lines emitted after it,
        so they cannot appear before it."""
        with _pipe() as (read_fd, write_fd):
            order = WriteOrder(wait_limit=UNHURRIED)
            output = OrderedOutput(write_fd, order=order, line_end_wait=5.0)
            writer = StderrWriter(write_fd, order=order)
            log = _logger(writer)
            output.write_game(b"the game is mid-")
            record = asyncio.create_task(output.write_record(RECORD, wait=5.0))
            await asyncio.sleep(0)  # the record is queued before the line is logged
            log.info("logged after the record")
            assert not await asyncio.to_thread(writer.flush, 0.2)  # held behind the record
            await asyncio.to_thread(output.write_game, b"line\n")
            assert await record is True
            assert await asyncio.to_thread(writer.flush, 5.0)
            assert _read_available(read_fd) == (
                b"the game is mid-line\n" + encode_record(RECORD) + b"logged after the record\n"
            )


class TestTwoPipes:
    """Two pipes read separately, as a container runtime reads stdout and stderr."""

    async def test_a_switch_of_stream_waits_for_the_reader_of_the_last_line(self) -> None:
        """A record logged right after a line is written only once the line's pipe has been
        read, so a runtime reading the two pipes separately cannot store it first."""
        with _pipe() as (out_read, out_write), _pipe() as (err_read, err_write):
            order = WriteOrder(wait_limit=UNHURRIED, read_wait=UNHURRIED)
            output = OrderedOutput(out_write, order=order)
            writer = StderrWriter(err_write, order=order)
            log = _logger(writer)
            log.info("the line before")
            assert await asyncio.to_thread(writer.flush, 5.0)  # written, not read yet
            record = asyncio.create_task(output.write_record(RECORD, wait=UNHURRIED))
            done, _ = await asyncio.wait({record}, timeout=0.2)
            assert not done  # held until the runtime takes the line
            assert os.read(err_read, 4096) == b"the line before\n"
            assert await record is True
            assert _read_available(out_read) == encode_record(RECORD)

    async def test_a_reader_that_does_not_read_is_waited_for_briefly(self) -> None:
        """A stderr whose reader takes nothing (but whose pipe has room) costs a record no more
        than READ_WAIT: it is written well within its budget."""
        with _pipe() as (out_read, out_write), _pipe() as (_, err_write):
            order = WriteOrder()
            output = OrderedOutput(out_write, order=order)
            writer = StderrWriter(err_write, order=order)
            log = _logger(writer)
            log.info("never read")
            assert await asyncio.to_thread(writer.flush, 5.0)
            started = time.monotonic()
            assert await output.write_record(RECORD, wait=RECORD_TIMEOUT) is True
            print(f"record after an unread line: {time.monotonic() - started:.3f}s")
            assert _read_available(out_read) == encode_record(RECORD)


class TestOneStreamStuck:
    """A stream nobody reads (or that is gone) costs the other one no more than before."""

    async def test_a_stalled_stderr_does_not_hold_a_record(self) -> None:
        """A record emitted after a line stuck on a full stderr is written on stdout within its
        budget; the ones after it at once."""
        with _pipe() as (out_read, out_write), _pipe() as (err_read, err_write):
            fill_pipe(err_write)
            order = WriteOrder()
            output = OrderedOutput(out_write, order=order)
            writer = StderrWriter(err_write, order=order)
            log = _logger(writer)
            log.info("stuck on stderr")
            log.info("queued behind it")
            started = time.monotonic()
            assert await output.write_record(RECORD, wait=RECORD_TIMEOUT) is True
            first_took = time.monotonic() - started
            log.info("another line for the stuck stderr")
            started = time.monotonic()
            assert await output.write_record({"event": "second"}, wait=RECORD_TIMEOUT) is True
            second_took = time.monotonic() - started
            assert _read_available(out_read) == encode_record(RECORD) + encode_record(
                {"event": "second"}
            )
            # Measured, for the report: about STALLED_AFTER, then next to nothing.
            print(f"first record {first_took:.3f}s, second {second_took:.3f}s")
            assert not writer.flush(0)
            os.close(err_read)  # the reader goes away: the stuck write fails, nothing hangs

    async def test_a_stalled_stdout_does_not_hold_log_lines(self) -> None:
        """Lines logged after a record stuck on a full stdout reach stderr."""
        with _pipe() as (out_read, out_write), _pipe() as (err_read, err_write):
            fill_pipe(out_write)
            order = WriteOrder()
            output = OrderedOutput(out_write, order=order)
            writer = StderrWriter(err_write, order=order)
            log = _logger(writer)
            output.submit_record(RECORD)
            log.info("after the stuck record")
            log.info("and one more")
            started = time.monotonic()
            assert await asyncio.to_thread(writer.flush, 5.0)
            print(f"log lines out after {time.monotonic() - started:.3f}s")
            assert _read_available(err_read) == b"after the stuck record\nand one more\n"
            os.close(out_read)

    async def test_a_broken_stderr_does_not_hold_records(self) -> None:
        """Once stderr is gone, records never wait for the lines it will not take."""
        with _pipe() as (out_read, out_write), _pipe() as (err_read, err_write):
            os.close(err_read)
            order = WriteOrder()
            output = OrderedOutput(out_write, order=order)
            writer = StderrWriter(err_write, order=order)
            log = _logger(writer)
            for number in range(50):
                log.info("line %d for nobody", number)
            assert await output.write_record(RECORD, wait=RECORD_TIMEOUT) is True
            assert _read_available(out_read) == encode_record(RECORD)
            assert writer.flush(5.0)


class TestWriteOrder:
    """The ticket rules themselves, with writers played by the test."""

    def test_a_line_waits_only_for_earlier_lines_of_the_other_stream(self) -> None:
        """Lines of one stream do not wait for each other; a later line of the other stream
        waits until the earlier one is done."""
        order = WriteOrder()
        stdout = order.lane(lambda: 0.0, lambda: False)
        stderr = order.lane(lambda: 0.0, lambda: False)
        first_log, second_log = stderr.ticket(), stderr.ticket()
        record = stdout.ticket()
        assert stderr.ready(first_log)
        assert stderr.ready(second_log)
        assert not stdout.ready(record)
        stderr.done(first_log)
        assert not stdout.ready(record)
        stderr.done(second_log)
        stderr.done(second_log)  # twice is harmless
        assert stdout.ready(record)

    def test_a_waiting_line_goes_once_the_earlier_one_is_done(self) -> None:
        """wait_turn returns True when the other stream's earlier line is written meanwhile."""
        order = WriteOrder()
        stdout = order.lane(lambda: 0.0, lambda: False)
        stderr = order.lane(lambda: 0.0, lambda: False)
        record = stdout.ticket()
        line = stderr.ticket()
        waiter_result: list[bool] = []
        waiter = threading.Thread(target=lambda: waiter_result.append(stderr.wait_turn(line)))
        waiter.start()
        stdout.done(record)
        waiter.join(5.0)
        assert waiter_result == [True]

    @pytest.mark.parametrize("how", ["stalled", "broken"])
    def test_a_stalled_or_broken_stream_is_not_waited_for(self, how: str) -> None:
        """The other stream's write blocked past STALLED_AFTER, or given up on: no wait."""
        order = WriteOrder()
        stdout = order.lane(
            lambda: STALLED_AFTER + 1 if how == "stalled" else 0.0, lambda: how == "broken"
        )
        stderr = order.lane(lambda: 0.0, lambda: False)
        stdout.ticket()
        line = stderr.ticket()
        assert stderr.ready(line)
        assert stderr.wait_turn(line) is False  # went without waiting for its turn

    def test_a_writer_that_never_writes_is_waited_for_once(self) -> None:
        """A line whose writer neither writes nor stalls holds the other stream for WAIT_LIMIT
        once, not for every line after it."""
        order = WriteOrder(wait_limit=0.05)
        stdout = order.lane(lambda: 0.0, lambda: False)
        stderr = order.lane(lambda: 0.0, lambda: False)
        stdout.ticket()  # never done
        first, second = stderr.ticket(), stderr.ticket()
        assert stderr.wait_turn(first) is False
        assert stderr.ready(second)
        later_record = stdout.ticket()
        stderr.done(first)
        stderr.done(second)
        assert stdout.ready(later_record)
