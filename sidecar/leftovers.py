"""What the game left behind: find every descendant of this process that outlived the game
(even one that left its group and session: the reaper makes us their subreaper), and end it,
SIGTERM first, SIGKILL after the grace.

Run mode's sweep (`ChildGame.sweep`) uses it at the game's exit and at shutdown. Processes are
known by pid *and* start time, so a pid reused meanwhile is never signalled; the children this
process already had before the game started (an embedding program's) are spared, with their
subtrees.

Why this shape
--------------
* One pass over /proc per look, building the parent → children map, in a worker thread: a game
  can leave a thousand processes behind, and walking the tree per child (psutil's
  ``children(recursive=True)``) is quadratic, and on the event loop it starved the local API
  and the stop for tens of seconds.
* The SIGKILL phase looks again until nothing is left (bounded by KILL_SETTLE): a leftover that
  ignores SIGTERM may still be forking, and a list taken once misses what it forks meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterable

from sidecar.reaper import read_stat

# The supervisor's logger: these lines were always logged as run mode's.
log = logging.getLogger("sidecar.supervisor")

# While the game's leftovers get their grace: how often to look whether they are gone.
SWEEP_POLL_INTERVAL = 0.05
# How long the SIGKILL phase may take: killing what is found again and again (a leftover may
# fork until it is killed), and waiting for it to be gone.
KILL_SETTLE = 1.0
# Between two SIGKILL passes: short, a forker is still forking.
KILL_PASS_INTERVAL = 0.01

# A process: its pid and its start time (clock ticks after boot, /proc/PID/stat): a pid reused
# meanwhile is another process.
Identity = tuple[int, int]


def current_children() -> frozenset[Identity]:
    """This process's children: the ones a sweep must spare, with their subtrees."""
    me = os.getpid()
    return frozenset(
        (pid, start) for pid, (ppid, _, start) in _process_table().items() if ppid == me
    )


def _process_table() -> dict[int, tuple[int, bytes, int]]:
    """pid → (parent pid, state, start time) of every process, in one pass over /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def _descendants(spared: frozenset[Identity]) -> list[Identity]:
    """Our live descendants (zombies have ended: the reaper collects them), but for the spared
    children's subtrees."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    pending = [pid for pid in children.get(os.getpid(), []) if (pid, table[pid][2]) not in spared]
    found = []
    while pending:
        pid = pending.pop()
        _, state, start = table[pid]
        if state != b"Z":
            found.append((pid, start))
        pending.extend(children.get(pid, []))
    return found


def _send(process: Identity, sig: int) -> bool:
    """Signal `process` unless it is gone (or its pid now names another process)."""
    pid, start = process
    stat = read_stat(pid)
    if stat is None or stat[2] != start or stat[1] == b"Z":
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


async def end_descendants(
    spared: frozenset[Identity],
    grace: float,
    *,
    poll_interval: float = SWEEP_POLL_INTERVAL,
) -> int:
    """SIGTERM every descendant of this process (but the spared subtrees), SIGKILL what is left
    after `grace` seconds; returns how many were signalled. A process that appears meanwhile
    (one being ended may fork) gets the same treatment."""
    loop = asyncio.get_running_loop()
    signalled: set[Identity] = set()

    async def look() -> list[Identity]:
        return await asyncio.to_thread(_descendants, spared)

    def terminate(found: Iterable[Identity]) -> None:
        for process in found:
            if process not in signalled and _send(process, signal.SIGTERM):
                signalled.add(process)

    terminate(await look())
    if not signalled:
        return 0
    log.info(
        "ending %d process(es) the game left behind: SIGTERM, SIGKILL after %.3gs",
        len(signalled),
        grace,
    )
    deadline = loop.time() + grace
    while True:
        found = await look()
        if not found:
            return len(signalled)
        if loop.time() >= deadline:
            break
        terminate(found)
        await asyncio.sleep(poll_interval)
    killed: set[Identity] = set()
    settle = loop.time() + KILL_SETTLE
    while found and loop.time() < settle:
        for process in found:
            if _send(process, signal.SIGKILL):
                killed.add(process)
        await asyncio.sleep(KILL_PASS_INTERVAL)
        found = await look()
    log.warning(
        "%d process(es) the game left behind outlived SIGTERM by %.3gs: killed",
        len(killed),
        grace,
    )
    if found:
        # In uninterruptible sleep (they die when it ends), or forking faster than we kill.
        log.warning(
            "%d process(es) the game left behind were still there after SIGKILL", len(found)
        )
    return len(signalled | killed)
