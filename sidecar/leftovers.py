"""What the game left behind: find every descendant of this process that outlived the game
(even one that left its group and session: the reaper makes us their subreaper), and end it,
SIGTERM first, SIGKILL after the grace.

Run mode's sweep (`ChildGame.sweep`) uses it at the game's exit and at shutdown. Processes are
known by pid *and* start time, so a pid reused meanwhile is never signalled; the children this
process already had before the game started (an embedding program's) are spared, with their
subtrees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import psutil

# The supervisor's logger: these lines were always logged as run mode's.
log = logging.getLogger("sidecar.supervisor")

# While the game's leftovers get their grace: how often to look whether they are gone.
SWEEP_POLL_INTERVAL = 0.05
# How long the sweep waits for what it SIGKILLed to be gone.
KILL_SETTLE = 1.0


def current_children() -> frozenset[tuple[int, float]]:
    """(pid, start time) of this process's children: the ones a sweep must spare."""
    spared = set()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                spared.add((child.pid, child.create_time()))
    return frozenset(spared)


def _descendants(spared: frozenset[tuple[int, float]]) -> list[psutil.Process]:
    """Our live descendants, but for the spared children's subtrees."""
    found: list[psutil.Process] = []
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if _identity(child) in spared:
                continue
            found.append(child)
            found.extend(child.children(recursive=True))
    return [process for process in found if _running(process)]


def _running(process: psutil.Process) -> bool:
    """Alive and not yet a zombie (a zombie has ended; the reaper collects it)."""
    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def end_descendants(
    spared: frozenset[tuple[int, float]],
    grace: float,
    *,
    poll_interval: float = SWEEP_POLL_INTERVAL,
) -> int:
    """SIGTERM every descendant of this process (but the spared subtrees), SIGKILL what is left
    after `grace` seconds; returns how many were signalled. A process that appears meanwhile
    (one being ended may fork) gets the same treatment."""
    signalled: dict[tuple[int, float], psutil.Process] = {}

    def unsignalled() -> list[psutil.Process]:
        return [p for p in _descendants(spared) if _identity(p) not in signalled]

    def terminate_new_ones() -> None:
        for process in unsignalled():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGTERM)
                signalled[_identity(process)] = process

    def still_running() -> list[psutil.Process]:
        terminate_new_ones()
        return [process for process in signalled.values() if _running(process)]

    terminate_new_ones()
    if not signalled:
        return 0
    log.info(
        "ending %d process(es) the game left behind: SIGTERM, SIGKILL after %.3gs",
        len(signalled),
        grace,
    )
    if await _until_none(still_running, grace, poll_interval):
        return len(signalled)
    late = unsignalled()
    stubborn = [p for p in signalled.values() if _running(p)] + late
    for process in stubborn:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)  # psutil refuses a pid reused since
    log.warning(
        "%d process(es) the game left behind outlived SIGTERM by %.3gs: killed",
        len(stubborn),
        grace,
    )
    # SIGKILL takes effect at once, but a process in uninterruptible sleep dies when that ends:
    # give it a moment, so that "swept" means gone when we exit.
    await _until_none(lambda: [p for p in stubborn if _running(p)], KILL_SETTLE, poll_interval)
    return len(signalled) + len(late)


async def _until_none(
    pending: Callable[[], list[psutil.Process]], within: float, poll_interval: float
) -> bool:
    """Wait up to `within` seconds until `pending()` is empty; True if it became so. No event
    announces the end of a process that is not our child (or that the reaper collects on its own
    schedule): look again every `poll_interval`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while pending():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(poll_interval)
    return True


def _identity(process: psutil.Process) -> tuple[int, float]:
    """A process's pid with its start time: a pid reused meanwhile is another process."""
    try:
        return process.pid, process.create_time()
    except psutil.Error:
        return process.pid, 0.0
