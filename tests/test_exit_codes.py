"""The exit code of a finished sidecar (SPEC §3), one pure rule checked on a table."""

from __future__ import annotations

import pytest

from sidecar.exit_codes import Ending, exit_code

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
