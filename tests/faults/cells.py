"""What the three matrices (platform answers, signals, result receivers) share around their
cells: which cells this session selected, and running them all at once within a time limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import pytest

CellT = TypeVar("CellT", bound=Hashable)
ResultT = TypeVar("ResultT")


def selected_cells(request: pytest.FixtureRequest, param: str) -> list[Any]:
    """The cells of the tests this session runs (`-k` and `-m` applied), by parameter name."""
    cells = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)  # parametrized tests only
        if callspec is not None and param in callspec.params:
            cells.append(callspec.params[param])
    return cells


async def run_cells(
    cells: Sequence[CellT],
    run: Callable[[CellT], Awaitable[ResultT]],
    *,
    concurrency: int,
    timeout: float,
) -> dict[CellT, ResultT | None]:
    """Each cell's result, None for a cell the time limit cut short. Cells start in the order
    given (the slowest first keeps the tail short), at most `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def gated(cell: CellT) -> ResultT:
        async with gate:
            return await run(cell)

    tasks = {cell: asyncio.ensure_future(gated(cell)) for cell in cells}
    _, late = await asyncio.wait(tasks.values(), timeout=timeout)
    for task in late:
        task.cancel()  # each cell's clean-up still runs: no process is left behind
    await asyncio.gather(*late, return_exceptions=True)
    return {cell: None if task.cancelled() else task.result() for cell, task in tasks.items()}
