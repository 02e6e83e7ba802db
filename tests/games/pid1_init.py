"""Run as PID 1 of a fresh PID namespace: supervise spawn_orphans.py with the sidecar's reaper.

`unshare --pid --fork --mount-proc python3 pid1_init.py N` makes this process the namespace's
init, so the game's orphans are re-parented to it exactly as in a container where the sidecar is
the entrypoint. Prints the game's output, then one JSON report line:
{"pid": 1, "exit_code": ..., "orphans": [...], "orphans_reaped": ..., "zombies": [...]}.
"""

import asyncio
import json
import os
import sys

import psutil

from sidecar.reaper import Reaper
from sidecar.supervisor import GameProcess

GAMES = os.path.dirname(os.path.abspath(__file__))


def zombie_children() -> list[int]:
    return [
        child.pid for child in psutil.Process().children() if child.status() == psutil.STATUS_ZOMBIE
    ]


async def main(count: int) -> dict[str, object]:
    read_fd, write_fd = os.pipe()
    async with Reaper(orphan_grace=0.05) as reaper:
        game = GameProcess(
            [sys.executable, os.path.join(GAMES, "spawn_orphans.py"), str(count), "7"],
            stdout_fd=write_fd,
            reaper=reaper,
        )
        game.start()
        exit_ = await game.wait()
        os.close(write_fd)
        output = os.read(read_fd, 65536).decode()
        os.close(read_fd)
        orphans = [int(pid) for pid in output.split()[1:]]
        async with asyncio.timeout(10):
            while reaper.orphans_reaped < count or zombie_children():
                # No event announces "every orphan reaped": re-check at a short interval.
                await asyncio.sleep(0.01)
        return {
            "pid": os.getpid(),
            "exit_code": exit_.exit_code,
            "orphans": orphans,
            "orphans_reaped": reaper.orphans_reaped,
            "zombies": zombie_children(),
        }


print(json.dumps(asyncio.run(main(int(sys.argv[1])))), flush=True)
