"""The exit code of a finished sidecar (SPEC §3) and what it does once the stop is over: pure
rules checked on tables."""

from __future__ import annotations

import pytest

from sidecar.config import StopFailurePolicy
from sidecar.exit_codes import Ending, exit_code
from sidecar.stop import after_stop

# (why it finishes, the game's exit code or None when there is none or it is still running,
#  the process's exit code, what a user sees)
TABLE = [
    (Ending.STOPPED, 0, 0, "run: the game quit cleanly and the stop was accepted"),
    (Ending.STOPPED, 3, 3, "run: the game crashed with 3, the stop was accepted: 3"),
    (Ending.STOPPED, 137, 137, "run: the game was killed by SIGKILL: 128+9"),
    (Ending.STOPPED, 127, 127, "run: the command was not found"),
    (Ending.STOP_FAILED, 0, 1, "the stop failed for good: never 0, even if the game quit cleanly"),
    (Ending.STOP_FAILED, 3, 3, "the stop failed and the game crashed: the game's code"),
    (Ending.STOP_FAILED, 143, 143, "the stop failed, the game was terminated: 128+SIGTERM"),
    (Ending.STOP_FAILED, None, 1, "the stop failed in serve mode, or a watched game still runs"),
    (Ending.TERMINATED, None, 0, "serve mode: SIGTERM from the platform"),
    (Ending.TERMINATED, 0, 0, "run: SIGTERM forwarded, the game exited 0"),
    (Ending.TERMINATED, 143, 143, "run: the game died of the forwarded SIGTERM"),
    (Ending.TERMINATED, 137, 137, "run: the game ignored SIGTERM and was killed after the grace"),
    (Ending.FORCED, None, 130, "a second SIGINT forces the exit"),
    (Ending.FORCED, 0, 130, "... whatever the game did"),
    (Ending.BUG, None, 1, "a background task failed"),
    (Ending.BUG, 0, 1, "... whatever the game did"),
]


@pytest.mark.parametrize(
    ("ending", "game_code", "expected", "case"), TABLE, ids=[row[3] for row in TABLE]
)
def test_exit_code_table(ending: Ending, game_code: int | None, expected: int, case: str) -> None:
    """Each way of finishing exits with the code SPEC §3 gives it."""
    assert exit_code(ending, game_code) == expected


def test_every_ending_is_in_the_table() -> None:
    """A new way of finishing cannot be added without its row."""
    assert {row[0] for row in TABLE} == set(Ending)


# (the stop ok, SIDECAR_ON_STOP_FAILURE, the game gone, what the agent does, when)
AFTER_STOP = [
    (True, StopFailurePolicy.EXIT, True, Ending.STOPPED, "run: the game quit, the stop was taken"),
    (True, StopFailurePolicy.EXIT, False, None, "serve, or the game still runs: wait for SIGTERM"),
    (True, StopFailurePolicy.STAY, True, Ending.STOPPED, "the policy only concerns failures"),
    (False, StopFailurePolicy.EXIT, True, Ending.STOP_FAILED, "failed, the game is gone: exit"),
    (False, StopFailurePolicy.EXIT, False, Ending.STOP_FAILED, "failed: end the game, then exit"),
    (False, StopFailurePolicy.STAY, True, None, "failed with `stay`: keep serving"),
    (False, StopFailurePolicy.STAY, False, None, "failed with `stay`, game running: keep going"),
]


@pytest.mark.parametrize(
    ("ok", "policy", "game_gone", "expected", "case"),
    AFTER_STOP,
    ids=[row[4] for row in AFTER_STOP],
)
def test_after_stop_table(
    ok: bool, policy: StopFailurePolicy, game_gone: bool, expected: Ending | None, case: str
) -> None:
    """Once the stop is over, the sidecar finishes, ends the game first, or keeps serving until
    the platform's SIGTERM, as SIDECAR_ON_STOP_FAILURE says (SPEC §4)."""
    assert after_stop(ok, policy, game_gone=game_gone) is expected
