"""Run mode's sweep of what the game left behind, with real sidecars and real leftovers: a
leftover still forking while it is killed, and hundreds of them at once.

Each test marks its leftovers with an argument of its own (`sleep <marker>`), finds them by it,
and kills any that survive at teardown.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import Launch, assert_answers_while_busy


@pytest.fixture
def marker() -> Iterator[str]:
    """A `sleep` argument no other process uses; its processes are killed at teardown."""
    value = f"{7000 + os.getpid() % 1000}.{time.monotonic_ns() % 10**6:06d}"
    yield value
    for process in marked(value):
        with contextlib.suppress(psutil.Error):
            process.kill()


def marked(value: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["cmdline"] == ["sleep", value] and (
            process.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(process)
    return found


class TestSweep:
    async def test_a_leftover_forking_while_it_is_killed_leaves_nothing(
        self, launch: Launch, marker: str
    ) -> None:
        """A SIGTERM-deaf leftover that keeps starting `sleep`s: after the grace it and
        everything it started are gone before the sidecar exits."""
        forker = f'(trap "" TERM; while :; do sleep {marker} & sleep 0.005; done) & echo ready'
        sidecar = await launch("run", "--", "sh", "-c", forker, SIDECAR_TERM_GRACE="300ms")
        await sidecar.wait_output(b"ready\n")
        code, _, stderr = await sidecar.finish(timeout=15)
        assert code == 0, stderr[-2000:]
        assert "outlived SIGTERM" in stderr
        assert marked(marker) == []

    async def test_hundreds_of_leftovers_do_not_hold_up_the_stop(
        self, launch: Launch, marker: str
    ) -> None:
        """500 SIGTERM-deaf leftovers: the stop is decided and the API answers while they get
        their grace, and the sidecar exits within the grace and a bounded kill phase."""
        game = (
            f'trap "" TERM; i=0; while [ $i -lt 500 ]; do sleep {marker} & i=$((i+1)); done; '
            "echo ready; exit 0"
        )
        sidecar = await launch("run", "--", "sh", "-c", game, SIDECAR_TERM_GRACE="2s")
        await sidecar.wait_output(b"ready\n", timeout=30)
        # The stop decided promptly: the sweep starts after it, and never holds up the loop.
        await sidecar.wait_status(stop_reason="game_exited", timeout=3)
        exited = time.monotonic()
        await assert_answers_while_busy(sidecar.url)
        code, _, stderr = await sidecar.finish(timeout=30)
        assert code == 0, stderr[-2000:]
        assert time.monotonic() - exited < 2.0 + 2.5, stderr[-2000:]
        assert "ending 500 process(es)" in stderr
        assert marked(marker) == []
