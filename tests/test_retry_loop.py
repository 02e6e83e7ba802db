"""The shared retry loop (sidecar.retry, issue 16 "seams"): the policy of SPEC §6/§11 on an
injected clock and sleep, for any platform client. No HTTP here: the loop owns none (the
self-stop client's use of it is tests/test_retry_policy.py and the fault matrix)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from sidecar.retry import BACKOFF_CAP, MIN_RETRY_DELAY, Attempt, Retry, RetryLoop


class FakeTime:
    """A monotonic clock that moves when the loop sleeps, or when an attempt says it took time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """Attempts that return (or raise) what the script says, in order; then "ok"."""

    def __init__(self, *steps: object, takes: float = 0.0, time: FakeTime | None = None) -> None:
        self.steps = list(steps)
        self.numbers: list[int] = []
        self._takes = takes
        self._time = time

    async def attempt(self, number: int) -> str:
        self.numbers.append(number)
        if self._time is not None:
            self._time.now += self._takes
        step = self.steps.pop(0) if self.steps else "ok"
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, str)
        return step


def decide(result: str) -> Retry | None:
    """ "ok" and "no" are final; "busy" is a plain failure; "paced:N" asks for N seconds;
    "option" is a refused option (retried at the floor, no backoff growth)."""
    if result in ("ok", "no"):
        return None
    if result.startswith("paced:"):
        return Retry(float(result.split(":")[1]))
    if result == "option":
        return Retry(backoff=False)
    return Retry()


def _loop(
    fake: FakeTime,
    budget: float = 600.0,
    on_unexpected: Callable[[str, Exception], None] | None = None,
) -> RetryLoop:
    return RetryLoop(
        budget, clock=fake.clock, sleep=fake.sleep, rng=lambda: 1.0, on_unexpected=on_unexpected
    )


class TestDecisions:
    async def test_a_final_result_ends_at_once(self) -> None:
        """A first answer that is final: one attempt, no wait, not a spent budget."""
        fake = FakeTime()
        ending = await _loop(fake).run(Script("no").attempt, decide)
        assert (ending.last.result, ending.attempts, ending.budget_spent) == ("no", 1, False)
        assert fake.sleeps == []

    async def test_backoff_doubles_from_half_a_second_to_the_cap(self) -> None:
        """Plain failures wait 0.5 s doubling (rng 1.0: the full step), never over 30 s."""
        fake = FakeTime()
        script = Script(*["busy"] * 9)
        ending = await _loop(fake).run(script.attempt, decide)
        assert ending.last.result == "ok"
        assert fake.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_CAP, BACKOFF_CAP, BACKOFF_CAP]
        assert script.numbers == list(range(1, 11))

    async def test_retry_after_is_honoured_and_does_not_grow_the_backoff(self) -> None:
        """Waits the platform asked for are its pacing: the plain failure after them waits the
        first backoff step, not the fourth."""
        fake = FakeTime()
        script = Script("paced:3", "paced:3", "paced:3", "busy")
        await _loop(fake).run(script.attempt, decide)
        assert fake.sleeps == [3.0, 3.0, 3.0, 0.5]

    @pytest.mark.parametrize("step", ["paced:0", "paced:0.1", "option"])
    async def test_no_retry_comes_sooner_than_the_floor(self, step: str) -> None:
        """`Retry-After: 0`, a tiny one, or a refused option: 0.5 s, never less."""
        fake = FakeTime()
        await _loop(fake).run(Script(step, step, step).attempt, decide)
        assert fake.sleeps == [MIN_RETRY_DELAY] * 3

    async def test_a_refused_option_does_not_grow_the_backoff(self) -> None:
        """A failure that is not the platform's (Retry(backoff=False)) leaves the backoff where
        it was: the plain failures around it wait 0.5 s then 1 s."""
        fake = FakeTime()
        await _loop(fake).run(Script("busy", "option", "busy").attempt, decide)
        assert fake.sleeps == [0.5, MIN_RETRY_DELAY, 1.0]


class TestBudget:
    async def test_retry_after_is_capped_at_what_is_left(self) -> None:
        """`Retry-After: 3600` with 7 s of budget: one wait of 7 s, then one last attempt, and
        the budget is spent."""
        fake = FakeTime()
        ending = await _loop(fake, budget=7.0).run(Script("paced:3600", "busy").attempt, decide)
        assert fake.sleeps == [7.0]
        assert ending.budget_spent
        assert (ending.attempts, ending.last.result, ending.last.retry_in) == (2, "busy", None)

    async def test_the_waits_add_up_to_the_budget(self) -> None:
        """Endless plain failures: the last wait is cut to what is left, then it ends."""
        fake = FakeTime()
        ending = await _loop(fake, budget=20.0).run(Script(*["busy"] * 100).attempt, decide)
        assert ending.budget_spent
        assert fake.sleeps[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
        assert sum(fake.sleeps) == pytest.approx(20.0)

    async def test_time_spent_in_attempts_counts(self) -> None:
        """Attempts that each take 4 s (timeouts) spend the budget too: a 10 s budget allows
        three of them."""
        fake = FakeTime()
        script = Script(*["busy"] * 10, takes=4.0, time=fake)
        ending = await _loop(fake, budget=10.0).run(script.attempt, decide)
        assert ending.budget_spent
        assert script.numbers == [1, 2, 3]
        assert fake.sleeps == [0.5, 1.0]


class TestNothingEndsTheLoop:
    async def test_an_attempt_that_raises_is_a_failed_attempt(self) -> None:
        """Any exception from an attempt is retried like a plain failure and reported once to
        `on_unexpected`; the loop goes on to the accepted answer."""
        fake = FakeTime()
        unexpected: list[tuple[str, Exception]] = []
        seen: list[Attempt[str]] = []
        loop = _loop(fake, on_unexpected=lambda what, exc: unexpected.append((what, exc)))
        ending = await loop.run(Script(ValueError("boom")).attempt, decide, seen.append)
        assert ending.last.result == "ok"
        assert isinstance(seen[0].error, ValueError)
        assert (seen[0].result, seen[0].retry_in) == (None, 0.5)
        assert [what for what, _ in unexpected] == ["making an attempt"]

    async def test_a_failing_decision_or_observer_does_not_end_it(self) -> None:
        """A bug in the caller's decision is a retry; one in its observer is only reported."""
        fake = FakeTime()
        unexpected: list[str] = []
        calls = 0

        def flaky_decide(result: str) -> Retry | None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KeyError("decision bug")
            return decide(result)

        def failing_observer(seen: Attempt[str]) -> None:
            raise RuntimeError("observer bug")

        loop = _loop(fake, on_unexpected=lambda what, exc: unexpected.append(what))
        ending = await loop.run(Script("ok").attempt, flaky_decide, failing_observer)
        assert (ending.last.result, ending.attempts) == ("ok", 2)
        assert unexpected == [
            "deciding on an attempt",
            "reporting an attempt",
            "reporting an attempt",
        ]

    async def test_unexpected_failures_are_logged_once_by_default(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Without an `on_unexpected`, the first failure is logged with its traceback and later
        ones are not (SPEC §11: logged once)."""
        fake = FakeTime()
        script = Script(OSError("one"), OSError("two"), OSError("three"))
        with caplog.at_level(logging.ERROR, logger="sidecar.retry"):
            ending = await _loop(fake).run(script.attempt, decide)
        assert ending.attempts == 4
        assert len(caplog.records) == 1
        assert caplog.records[0].exc_info is not None

    async def test_cancellation_is_not_a_failure(self) -> None:
        """Cancelling the task (the process is ending) ends the loop at once."""
        fake = FakeTime()
        with pytest.raises(asyncio.CancelledError):
            await _loop(fake).run(Script(asyncio.CancelledError()).attempt, decide)
        assert fake.sleeps == []

    async def test_the_observer_hears_every_attempt_and_its_delay(self) -> None:
        """One report per attempt, in order, with the wait chosen after it (None for the
        last)."""
        fake = FakeTime()
        seen: list[Attempt[str]] = []
        await _loop(fake).run(Script("busy", "paced:2").attempt, decide, seen.append)
        assert [(a.number, a.result, a.retry_in) for a in seen] == [
            (1, "busy", 0.5),
            (2, "paced:2", 2.0),
            (3, "ok", None),
        ]
