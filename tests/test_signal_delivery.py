"""Signals under pressure, with real sidecar processes: a flood of signals, a game churning
orphans, the first moments of start-up and the last moments before exit. A termination signal
is never lost, and no signal ends the sidecar silently (SPEC §11).

The pressure comes from real processes too: `FLOOD` sends signals as fast as it can (or at a
given rate) until its target is gone.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Launch, Sidecar, assert_answers_while_busy

# argv: pid, seconds, interval (0: unthrottled), signal names. Says "flooding" once it has sent
# a few hundred, then goes on until the target is gone or the time is up.
FLOOD = """
import os, signal, sys, time
pid, seconds, interval = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
sigs = [getattr(signal, name) for name in sys.argv[4:]]
end, sent = time.monotonic() + seconds, 0
while time.monotonic() < end:
    try:
        os.kill(pid, sigs[sent % len(sigs)])
    except ProcessLookupError:
        break
    sent += 1
    if sent == 300:
        print("flooding", flush=True)
    if interval:
        time.sleep(interval)
print("flooding", flush=True)
"""

# Ignores the flood's signals (forwarded to it in run mode), exits 0 on SIGTERM.
PATIENT_GAME = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("ready", flush=True)
while True:
    signal.pause()
"""


async def flood(pid: int, seconds: float, *names: str, interval: float = 0.0) -> Any:
    """Start flooding `pid`; returns once the flood is under way (the process, to await)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FLOOD,
        str(pid),
        str(seconds),
        str(interval),
        *names,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"flooding\n"
    return proc


def terminate_records(stdout: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in stdout.splitlines()
        if line.startswith(b'{"event": "sidecar.terminate"')
    ]


async def finish_within(sidecar: Sidecar, seconds: float) -> tuple[int, bytes, str, float]:
    started = time.monotonic()
    code, stdout, stderr = await sidecar.finish(timeout=seconds)
    return code, stdout, stderr, time.monotonic() - started


class TestFlood:
    """An unthrottled flood of signals the table ignores (serve) or forwards (run), with a
    SIGTERM in the middle: asyncio's wakeup pipe used to fill and drop the SIGTERM."""

    @pytest.mark.parametrize("mode", ["serve", "run"])
    async def test_sigterm_in_a_flood_is_handled_once(self, launch: Launch, mode: str) -> None:
        if mode == "run":
            sidecar = await launch("run", "--", sys.executable, "-c", PATIENT_GAME)
            await sidecar.wait_output(b"ready\n")
        else:
            sidecar = await launch("serve")
            await sidecar.wait_status(state="starting")
        flooder = await flood(sidecar.proc.pid, 8.0, "SIGUSR1", "SIGHUP")
        sidecar.proc.send_signal(signal.SIGTERM)
        # The flood goes on after the SIGTERM, through the shutdown, until the process is gone.
        code, stdout, stderr, took = await finish_within(sidecar, 15.0)
        await flooder.wait()
        assert code == 0, stderr[-2000:]
        assert [r["signal"] for r in terminate_records(stdout)] == ["SIGTERM"]
        assert "Traceback" not in stderr
        assert "wakeup fd" not in stderr
        assert took < 5.0

    async def test_stray_signals_until_the_exit_do_not_change_its_code(
        self, launch: Launch
    ) -> None:
        """A game that exits 0 while SIGHUP keeps coming (a monitoring agent, every 5 ms): the
        sidecar exits 0, not 129, however late the last one arrives."""
        sidecar = await launch(
            "run", "--", "sh", "-c", 'trap "" HUP; echo ready; sleep 0.5; exit 0'
        )
        await sidecar.wait_output(b"ready\n")
        flooder = await flood(sidecar.proc.pid, 15.0, "SIGHUP", interval=0.005)
        code, stdout, stderr, _ = await finish_within(sidecar, 15.0)
        await flooder.wait()
        assert code == 0, stderr[-2000:]
        assert b'"event": "sidecar.stop"' in stdout


def holds_sigterm(pid: int) -> bool:
    """The process has SIGTERM blocked (its start-up holds the signals of the table)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    blocked = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    return bool(int(blocked.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


async def until_held(sidecar: Sidecar) -> None:
    async with asyncio.timeout(10):
        while not holds_sigterm(sidecar.proc.pid):
            assert sidecar.proc.returncode is None
            await asyncio.sleep(0.001)


class TestStartUp:
    """Signals that arrive before the handlers exist wait for them (SPEC §11: no signal ends
    the sidecar silently), from the entry point's first line."""

    @pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
    async def test_early_sigterm_is_recorded_in_serve(self, launch: Launch, delay: float) -> None:
        sidecar = await launch("serve")
        await until_held(sidecar)
        await asyncio.sleep(delay)  # a few moments of start-up, each a different step
        sidecar.proc.send_signal(signal.SIGTERM)
        code, stdout, stderr, _ = await finish_within(sidecar, 15.0)
        assert code == 0, stderr[-2000:]
        assert [r["signal"] for r in terminate_records(stdout)] == ["SIGTERM"]

    async def test_early_stray_signals_do_not_end_it(self, launch: Launch) -> None:
        sidecar = await launch("serve")
        await until_held(sidecar)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM):
            sidecar.proc.send_signal(sig)
        await sidecar.wait_status(state="starting")
        sidecar.proc.send_signal(signal.SIGTERM)
        code, stdout, stderr, _ = await finish_within(sidecar, 15.0)
        assert code == 0, stderr[-2000:]
        assert "SIGHUP received: ignored in serve mode" in stderr
        assert len(terminate_records(stdout)) == 1

    async def test_a_terminated_sidecar_does_not_start_the_game(
        self, launch: Launch, tmp_path: Path
    ) -> None:
        """SIGTERM before the game started: recorded, and the game is never started."""
        marker = tmp_path / "started"
        sidecar = await launch("run", "--", "sh", "-c", f"touch {marker}; sleep 30")
        await until_held(sidecar)
        sidecar.proc.send_signal(signal.SIGTERM)
        code, stdout, stderr, _ = await finish_within(sidecar, 15.0)
        assert code == 0, stderr[-2000:]
        assert [r["signal"] for r in terminate_records(stdout)] == ["SIGTERM"]
        assert "game started" not in stderr
        assert not marker.exists()


class TestOrphanChurn:
    async def test_sigterm_while_the_game_churns_orphans(self, launch: Launch) -> None:
        """Hundreds of orphans a second, each a SIGCHLD: the API answers, and a SIGTERM reaches
        the game (exit 143: it dies of it) with its record."""
        # "ready" once a backlog has built up: each orphan stays a zombie for the reaper's grace.
        # Bounded, so that a sidecar that failed (and was killed) leaves no endless churn.
        churn = (
            "i=0; while [ $i -lt 5000 ]; do (sleep 0.001 &); i=$((i+1)); "
            "[ $i -eq 400 ] && echo ready; done"
        )
        sidecar = await launch("run", "--", "sh", "-c", churn, SIDECAR_TERM_GRACE="2s")
        await sidecar.wait_output(b"ready\n", timeout=30)
        await assert_answers_while_busy(sidecar.url)
        sidecar.proc.send_signal(signal.SIGTERM)
        code, stdout, stderr, took = await finish_within(sidecar, 15.0)
        assert code == 128 + signal.SIGTERM, stderr[-2000:]
        assert [r["signal"] for r in terminate_records(stdout)] == ["SIGTERM"]
        assert took < 2.0 + 3.0


class TestEmbedded:
    async def test_an_embedding_process_gets_its_signals_back(self) -> None:
        """An agent run inside another program (handle_signals=True, not started by the CLI)
        gives that program its own dispositions back at close: only a sidecar's own process
        leaves the signals ignored until it exits."""
        from sidecar.agent import Agent
        from sidecar.config import load_settings
        from sidecar.signal_relay import RELAY

        assert not RELAY.process_is_ours  # this test process never held the signals
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
        env = {"SIDECAR_PORT": "0"}
        agent = Agent(load_settings(env), environ=env, handle_signals=True)
        await agent.start()
        assert signal.getsignal(signal.SIGHUP) != before[signal.SIGHUP]  # routed meanwhile
        await agent.close()
        assert {sig: signal.getsignal(sig) for sig in before} == before
