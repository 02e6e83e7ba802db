"""The platform fault model: the condition each deployment's self-stop meets (an outage, a 429
storm, slow answers, or calm), the fleet-wide outage, and the wall-clock windows they cover."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.fleet.scenarios import MODES
from sidecar.emulator import EmulatorServer


@dataclass(frozen=True)
class Condition:
    """The platform one deployment meets: a fault on its own self-stop, from `lead` seconds
    before its stop is expected, for `length(args)` seconds."""

    name: str
    describe: Callable[[argparse.Namespace], str]
    status: int | None = None
    retry_after: str | None = None
    delay: Callable[[argparse.Namespace], float] = lambda args: 0.0
    length: Callable[[argparse.Namespace], float] = lambda args: 0.0

    @property
    def active(self) -> bool:
        return self.name != "calm"


CONDITIONS = [
    Condition("calm", lambda a: "no fault of its own"),
    Condition("outage", lambda a: f"503 without Retry-After for {a.outage:g} s",
              503, None, length=lambda a: a.outage),
    Condition("storm_ra0", lambda a: f"429 with Retry-After: 0 for {a.storm:g} s",
              429, "0", length=lambda a: a.storm),
    Condition("storm_ra1", lambda a: f"429 with Retry-After: 1 for {a.storm:g} s",
              429, "1", length=lambda a: a.storm),
    Condition("slow", lambda a: f"every answer held {a.slow:g} s for {a.storm:g} s",
              None, None, delay=lambda a: a.slow, length=lambda a: a.storm),
    Condition("outage_ra2", lambda a: f"503 with Retry-After: 2 for {a.outage:g} s",
              503, "2", length=lambda a: a.outage),
]  # fmt: skip


@dataclass
class Window:
    """A span (wall-clock seconds) in which the platform refused or held a self-stop."""

    start: float
    end: float
    label: str
    refusing: bool  # False: calls are held (slow answers), then processed


def condition_for(index: int) -> Condition:
    # Every mode meets every condition over the rounds, and every round holds every condition.
    return CONDITIONS[(index % len(MODES) + index // len(MODES)) % len(CONDITIONS)]


async def add_window(
    emu: EmulatorServer,
    *,
    label: str,
    status: int | None,
    retry_after: str | None,
    delay: float,
    starts_in: float,
    duration: float,
    request_id: str | None = None,
    target: str = "self_stop",
) -> Window:
    """Queue a timed fault on the emulator's clock for `target` (a route name: the self-stop,
    or the result sink); return its span on the wall clock."""
    before = time.time()
    await emu.add_fault(
        status=status,
        count=None,
        target=target,
        delay=delay,
        retry_after=retry_after,
        request_id=request_id,
        starts_in=starts_in,
        duration=duration,
    )
    after = time.time()
    # The fault's clock started between `before` and `after`: credit the platform only with
    # the span it certainly covered, so an outage never excuses more lateness than it caused.
    return Window(after + starts_in, before + starts_in + duration, label, status is not None)
