"""The agent's background tasks: created in one place, strongly referenced until done, a failure
reported once, and all cancelled and awaited (bounded) at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundTasks:
    """Owns every task the agent starts; `on_failure(task, exc)` hears a task that raised."""

    def __init__(self, on_failure: Callable[[asyncio.Task[Any], BaseException], None]) -> None:
        self._on_failure = on_failure
        # Strong references: the event loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"sidecar-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._on_failure(task, exc)

    async def cancel_all(self, within: float) -> None:
        """Cancel every task and wait up to `within` seconds for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=within)
