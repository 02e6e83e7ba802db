"""The example's UDP bots, run for the demo: in a thread of their own (they block on sockets),
their joins, leaves and refusals on the timeline."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from sidecar.demo.example import LOOPBACK
from sidecar.demo.timeline import Timeline


async def play_bots(
    run_bots: Callable[..., dict[str, Any]],
    port: int,
    players: int,
    rounds: int,
    timeline: Timeline,
) -> dict[str, Any]:
    """The bots' outcome once they have played `rounds` against the game on `port`; raises
    whatever they raised."""
    done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

    def play() -> None:
        try:
            done.set_result(
                run_bots(
                    LOOPBACK,
                    port,
                    players,
                    rounds,
                    join_wait=5.0,
                    log=lambda line: bot_said(timeline, line),
                )
            )
        except BaseException as exc:
            # Not handled here: carried to the awaiting coroutine, which fails the step.
            done.set_exception(exc)

    # A daemon thread rather than the loop's executor, whose shutdown would make a failed
    # demo wait for bots still retrying against a server that is gone. (run_bots' own
    # worker threads are still joined at interpreter exit: a few seconds at worst.)
    threading.Thread(target=play, name="demo-bots", daemon=True).start()
    return await asyncio.wrap_future(done)


def bot_said(timeline: Timeline, line: str) -> None:
    """A bot's log line (from its thread): joins, leaves and refusals go on the timeline."""
    player, _, reply = line.partition(": ")
    words = reply.split()
    online = words[-1].partition("=")[2] if words and words[-1].startswith("players=") else "?"
    if words[:2] == ["OK", "JOIN"]:
        timeline.event("players", f"{player} joined over UDP ({online} online)")
    elif words[:2] == ["OK", "LEAVE"]:
        timeline.event("players", f"{player} left ({online} online)")
    elif words[:1] == ["ERR"]:
        timeline.event("players", f"{player}: the game answered {reply}")
    # Individual scores are left out: the match result line sums them up.
