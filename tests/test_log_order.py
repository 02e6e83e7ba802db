"""The sidecar's records (stdout) and log lines (stderr) reach the stored logs in the order the
sidecar emitted them.

A container runtime stores stdout and stderr merged. Two real set-ups, each run several times to
catch a race:
* a real sidecar in run mode writes both to one pipe (``2>&1``: the merge is exactly the order
  of the writes), goes through a whole stop against the project's emulator, and every line whose
  emission order is known (the decision, the stop record, "self-stop accepted", the terminate
  record and the log lines right after it) must come out in that order;
* the emulator runs the sidecar as a deployment's container, reads its two pipes separately as
  a runtime does, stores the logs, and stops it with SIGTERM once it accepts the self-stop.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import sys

import aiohttp
import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from tests.conftest import free_port
from tests.sidecar_process import request_shutdown, start_sidecar, wait_healthy, wait_state

# A quiet game: the only lines in the merged output are the sidecar's own. It reports ready
# once its SIGTERM handler is in place, and the tests stop it only then: a SIGTERM forwarded
# before that would kill it (exit 143) while Python is still starting.
QUIET_GAME = (
    "import os,signal,sys,time,urllib.request\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "urllib.request.urlopen(urllib.request.Request("
    "os.environ['SIDECAR_URL'] + '/v1/ready', data=b'', method='POST'), timeout=10).close()\n"
    "while True: time.sleep(1)\n"
)

# In the order the sidecar emits them. The SIGTERM is sent only once the status says `stopped`,
# which the sidecar reports after logging "self-stop accepted" and the transition: everything
# before it was emitted before everything after it. After the signal the terminate record is
# queued, then the line saying so is logged, then the transition: a record and two log lines
# within microseconds, where two writer threads raced.
MARKERS = (
    ("log", "stop decided (shutdown_requested"),
    ("record", "sidecar.stop"),
    ("log", "self-stop accepted"),
    ("log", "state stopping -> stopped"),
    ("record", "sidecar.terminate"),
    ("log", "SIGTERM received"),
    ("log", "-> terminating"),
)
ROUNDS = 6


def _marker_of(line: str) -> int | None:
    """Which marker `line` is (its index in MARKERS), if any."""
    record = None
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
    for index, (kind, text) in enumerate(MARKERS):
        if kind == "record" and isinstance(record, dict) and record.get("event") == text:
            return index
        if kind == "log" and record is None and text in line:
            return index
    return None


async def _one_stop(emulator: EmulatorServer) -> list[str]:
    """A whole stop of a real sidecar whose stdout and stderr share one pipe; its output lines."""
    proc, url, _ = await start_sidecar(
        emulator,
        sys.executable,
        "-c",
        QUIET_GAME,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe for both, in the order the writes reach it
    )
    assert proc.stdout is not None
    reader = asyncio.create_task(proc.stdout.read())
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as http:
            await wait_healthy(http, url)
            await wait_state(http, url, "ready")
            await request_shutdown(http, url)
            await wait_state(http, url, "stopped")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            output = await reader
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.gather(reader, return_exceptions=True)
    assert code == 0, output.decode(errors="replace")[-2000:]
    return output.decode(errors="replace").splitlines()


@pytest.mark.parametrize("round_number", range(ROUNDS))
async def test_records_and_log_lines_are_stored_in_emission_order(
    emulator: EmulatorServer, round_number: int
) -> None:
    """A studio reading the stored logs sees why and when the deployment stopped in the order it
    happened: the stop record after its decision, the terminate record after "self-stop
    accepted", the lines about the signal after its record."""
    lines = await _one_stop(emulator)
    found = [(marker, line) for line in lines if (marker := _marker_of(line)) is not None]
    seen = [marker for marker, _ in found]
    assert sorted(seen) == list(range(len(MARKERS))), "\n".join(lines)
    assert seen == sorted(seen), "out of order:\n" + "\n".join(line for _, line in found)


# Chains whose order holds in every stop, whichever of the platform's SIGTERM and its answer to
# the DELETE the sidecar hears first: the decision, its record, the DELETE's outcome; the
# signal's record, then the lines about it. A marker that is not there (the SIGTERM beat the
# answer: no "self-stop accepted") is skipped.
CHAINS = ((0, 1, 2, 3), (4, 5, 6))
STORED_ROUNDS = 4


@pytest.mark.parametrize("round_number", range(STORED_ROUNDS))
async def test_the_emulator_stores_them_in_emission_order(round_number: int) -> None:
    """The same, as the emulator's container logs keep them: read from two pipes by separate
    readers, stopped by the platform's SIGTERM after the self-stop."""
    port = free_port()
    command = "exec " + shlex.join(
        [sys.executable, "-m", "sidecar", "run", "--", sys.executable, "-c", QUIET_GAME]
    )
    options = EmulatorOptions(
        port=0,
        status_step_seconds=0.0,
        apps={"ordered": command},
        restart_policy="never",
        game_port_check=False,  # the quiet game listens on nothing
    )
    async with EmulatorServer(options) as emulator:
        settings = {
            "SIDECAR_PORT": str(port),
            "SIDECAR_MATCH_END_GRACE": "0s",
            "SIDECAR_LOG_STORAGE": "true",
        }
        request_id = await emulator.deploy(
            "ordered",
            environment_variables=[{"key": key, "value": value} for key, value in settings.items()],
        )
        await emulator.wait_for_status(request_id, "Status.READY", timeout=20)
        url = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(20), aiohttp.ClientSession() as http:
            await wait_healthy(http, url)
            await wait_state(http, url, "ready")
            await request_shutdown(http, url)
        await emulator.wait_for_status(request_id, "Status.TERMINATED", timeout=20)
        lines = str((await emulator.logs(request_id)).get("logs") or "").splitlines()
    positions: dict[int, int] = {}
    for index, line in enumerate(lines):
        marker = _marker_of(line)
        if marker is not None:
            assert marker not in positions, "\n".join(lines)
            positions[marker] = index
    for required in (0, 1, 4, 5, 6):
        assert required in positions, "\n".join(lines)
    for chain in CHAINS:
        present = [positions[marker] for marker in chain if marker in positions]
        assert present == sorted(present), "out of order:\n" + "\n".join(
            lines[index] for index in sorted(positions.values())
        )
