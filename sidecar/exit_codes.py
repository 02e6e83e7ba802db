"""The process exit codes (SPEC §3) and the one rule for the code a finished agent exits with.

    0    ok
    1    an unexpected error, i.e. a bug; or the self-stop failed for good (policy `exit`)
    2    invalid configuration or usage (cli.py)
    3    cannot start, e.g. the local API port is in use (cli.py)
    N    run mode: the game's own exit code (128+signal when it was killed)
    130  a second SIGINT forced the exit

Pure and stdlib-only: the agent says why it finishes (`Ending`) and how the game ended, and
`exit_code` answers; `tests/test_exit_codes.py` holds the table.
"""

from __future__ import annotations

from enum import StrEnum

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANNOT_START = 3
EXIT_INTERRUPTED = 130  # as a shell reports a SIGINT


class Ending(StrEnum):
    """Why the agent finishes."""

    STOPPED = "stopped"  # the self-stop was accepted (or only logged) and the game is gone
    STOP_FAILED = "stop_failed"  # the self-stop failed for good and the policy is `exit`
    TERMINATED = "terminated"  # the platform's SIGTERM/SIGINT, once the game (if ours) is gone
    FORCED = "forced"  # a second SIGINT while terminating
    BUG = "bug"  # a background task failed


def exit_code(ending: Ending, game_exit_code: int | None = None) -> int:
    """The exit code for `ending`, given the game's own code when it has ended (None when there
    is no game or it is still running: a watched process is not ours to end).

    A failed stop never exits 0, even when the game did: the container must be seen to fail.
    """
    if ending is Ending.FORCED:
        return EXIT_INTERRUPTED
    if ending is Ending.BUG:
        return EXIT_FAILED
    if ending is Ending.STOP_FAILED:
        return game_exit_code or EXIT_FAILED
    return game_exit_code or EXIT_OK
