"""The output relay, seen from outside: real games write, we read what the sidecar passed on.

Every game's stdout and stderr are relayed to pipes the test reads (games.harness.PipeSink).
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from games.harness import GameRunner


def chatty_output(lines: int, name: str = "out") -> bytes:
    """What tests/games/chatty.py writes to one stream, as relayed (last line terminated)."""
    body = b"".join(b"%s line %06d payload\n" % (name.encode(), n) for n in range(lines))
    return body + b"partial tail without newline\n"


class TestLossless:
    async def test_lines_and_partial_last_line_arrive_in_order(self, games: GameRunner) -> None:
        """2,000 lines and an unterminated last line reach our stdout in order, then a newline."""
        run = games.game("chatty.py", "--lines", 2000)
        await run.game.wait()
        assert await run.out.read_all() == chatty_output(2000)
        assert await run.err.read_all() == b""

    async def test_200k_lines_on_both_streams_none_lost(self, games: GameRunner) -> None:
        """200,000 lines on each of stdout and stderr all arrive, each on its own stream."""
        run = games.game("chatty.py", "--lines", 200_000, "--stream", "both")
        exit_ = await run.game.wait()
        assert exit_.returncode == 0
        assert await run.out.read_all() == chatty_output(200_000, "out")
        assert await run.err.read_all() == chatty_output(200_000, "err")

    async def test_invalid_utf8_passes_through_untouched(self, games: GameRunner) -> None:
        """Bytes that are not UTF-8 are relayed unchanged; only the crash tail decodes them."""
        stdout = b"caf\xe9 \xff\xfe\x00 bin\xc3\x28ary\n\x1b[31mred\x1b[0m\n\xf0\x9f"
        stderr = b"\x80\x81 oops\r\n"
        run = games.game("emit_bytes.py", stdout.hex(), stderr.hex())
        exit_ = await run.game.wait()
        assert await run.out.read_all() == stdout + b"\n"  # the cut-off last line terminated
        assert await run.err.read_all() == stderr
        assert "caf\ufffd \ufffd\ufffd\x00 bin\ufffd(ary" in exit_.tail
        assert "\ufffd\ufffd oops" in exit_.tail


class TestTail:
    async def test_tail_holds_the_last_lines_with_the_partial_one(self, games: GameRunner) -> None:
        """The crash record gets the last 50 lines, ending with the unterminated one."""
        run = games.game("chatty.py", "--lines", 2000)
        exit_ = await run.game.wait()
        expected = [f"out line {n:06d} payload" for n in range(1951, 2000)]
        assert exit_.tail == (*expected, "partial tail without newline")

    async def test_tail_interleaves_both_streams_and_honours_its_length(
        self, games: GameRunner
    ) -> None:
        """A shorter tail can be asked for, and it draws on stdout and stderr alike."""
        run = games.game("crash.py", 4, "Traceback: boom", tail_lines=2)
        exit_ = await run.game.wait()
        assert sorted(exit_.tail) == ["Traceback: boom", "game running, about to exit 4"]


class TestBackpressure:
    @pytest.mark.parametrize("blocking", [True, False], ids=["blocking-fd", "nonblocking-fd"])
    async def test_blocked_stdout_does_not_freeze_the_event_loop(
        self, games: GameRunner, blocking: bool
    ) -> None:
        """While nobody reads our stdout the loop keeps serving; once read, nothing was lost."""
        out = games.sink(paused=True)
        # Our stdout may be O_NONBLOCK (the flag lives on the open file, shared with others).
        os.set_blocking(out.write_fd, blocking)
        run = games.game("chatty.py", "--lines", 100_000, out=out)
        loop = asyncio.get_running_loop()
        # Our unread stdout pipe fills up (64 KiB, less page slack); 2.4 MB cannot fit in it and
        # the game's 1 MiB pipe, so from then on the relay thread is stuck in a write.
        async with asyncio.timeout(10):
            while _pipe_pending(out.read_fd) < 32768:
                await asyncio.sleep(0.01)
        started = loop.time()
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert loop.time() - started < 1.0
        assert run.game.pids()  # the game is held by backpressure, not finished
        out.resume()
        await run.game.wait()
        assert await out.read_all() == chatty_output(100_000)

    async def test_vanished_stdout_never_blocks_the_game(self, games: GameRunner) -> None:
        """If our stdout is gone (broken pipe), the game still runs to its end and exits."""
        out = games.sink()
        out.close_read()  # readers gone: every write to this pipe fails with EPIPE
        run = games.game("chatty.py", "--lines", 100_000, out=out)
        exit_ = await asyncio.wait_for(run.game.wait(), timeout=20)
        assert exit_.returncode == 0
        assert exit_.tail[-1] == "partial tail without newline"

    async def test_orphan_holding_the_pipe_does_not_hang_the_exit(self, games: GameRunner) -> None:
        """An orphan keeping stdout open delays the exit report only by the drain timeout."""
        run = games.game("spawn_orphans.py", 1, 0, "linger", drain_timeout=0.1)
        orphans = [int(pid) for pid in (await run.out.line("orphans")).split()[1:]]
        try:
            exit_ = await asyncio.wait_for(run.game.wait(), timeout=5)
            assert exit_.returncode == 0
            assert exit_.tail == (f"orphans {orphans[0]}",)
        finally:
            for pid in orphans:
                os.kill(pid, signal.SIGKILL)


def _pipe_pending(fd: int) -> int:
    import fcntl
    import struct
    import termios

    (pending,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))
    return int(pending)
