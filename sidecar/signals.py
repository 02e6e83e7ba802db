"""The signal table: what every catchable signal does to the sidecar, per mode, as data.

The agent installs one handler per row (`plan(mode)`; sidecar.signal_relay delivers them);
docs/integration.md shows the same rows (`markdown_table()`, kept in step by a test). No signal
that would end a process by default ends the sidecar silently:

* terminate: the platform (or an operator) is stopping us: the `sidecar.terminate` record, no
  self-stop from then on, the game (run mode) gets the signal as received, then SIGKILL after
  SIDECAR_TERM_GRACE.
* forward: passed on to the game's process group, as the termination signals are (what a shell
  or `tini -g` would do: the game's helpers started in its group hear it too). Logged the first
  time each signal arrives, not per delivery.
* ignore: logged the first time each signal arrives, then ignored: a stray SIGUSR1 from a
  monitoring agent, or the SIGALRM of a forgotten `timeout`, must not end the deployment's
  supervisor with no record and no self-stop, leaving the game billing.

Handlers (not SIG_IGN) are what is installed, because a caught signal goes back to its default
action in a program we exec (the game), and an ignored one would stay ignored there.

Left alone, on purpose (`LEFT_ALONE`): SIGKILL and SIGSTOP cannot be caught; SIGSEGV, SIGBUS,
SIGFPE and SIGILL are synchronous faults (returning from a handler would re-run the faulting
instruction); SIGPIPE and SIGXFSZ are already ignored by the interpreter (the write that caused
them reports the error); SIGCHLD, SIGURG, SIGWINCH and SIGCONT do nothing by default (SIGCHLD is
the reaper's in run mode); SIGTSTP, SIGTTIN and SIGTTOU stop, they do not end.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum

# The `Game.mode` of each implementation (sidecar.game): the table's columns.
RUN = "run mode"
SERVE = "serve mode"
WATCH = "watch mode"
MODES = (RUN, SERVE, WATCH)
# How the docs name the columns.
MODE_TITLES = {RUN: "run", SERVE: "serve", WATCH: "serve --watch-pid/--watch-name"}

REAL_TIME = "SIGRTMIN..SIGRTMAX"


class SignalAction(StrEnum):
    """What the sidecar does when a signal arrives."""

    TERMINATE = "terminate"  # shut down: terminate record, the game (run mode) ended, exit
    FORWARD = "forward"  # to the game's process group; the sidecar carries on
    IGNORE = "ignore"  # one log line per signal, then nothing


TERMINATE = SignalAction.TERMINATE
FORWARD = SignalAction.FORWARD
IGNORE = SignalAction.IGNORE


@dataclass(frozen=True)
class SignalRule:
    """One row: a signal (or the real-time range) and its action in each mode."""

    name: str
    run: SignalAction
    beside: SignalAction  # serve mode, with or without a watched process: not the game's parent
    why: str

    def action(self, mode: str) -> SignalAction:
        return self.run if mode == RUN else self.beside

    def numbers(self) -> list[int]:
        """The signal's number(s) on this platform; none when it does not exist here (SIGPWR,
        SIGSTKFLT and the real-time signals are Linux's)."""
        if self.name == REAL_TIME:
            low = getattr(signal, "SIGRTMIN", None)
            high = getattr(signal, "SIGRTMAX", None)
            return [] if low is None or high is None else list(range(low, high + 1))
        number = getattr(signal, self.name, None)
        return [] if number is None else [int(number)]


_STOP = "the platform or an operator stops the deployment"
_GAME_SIGNAL = "a game's own signal (reload, dump, rotate logs…)"

TABLE: tuple[SignalRule, ...] = (
    SignalRule("SIGTERM", TERMINATE, TERMINATE, _STOP + " (Edgegap, `docker stop`)"),
    SignalRule("SIGINT", TERMINATE, TERMINATE, _STOP + " (Ctrl-C); a second one forces the exit"),
    SignalRule("SIGQUIT", TERMINATE, TERMINATE, _STOP + " (`Ctrl-\\`)"),
    SignalRule("SIGHUP", FORWARD, IGNORE, _GAME_SIGNAL),
    SignalRule("SIGUSR1", FORWARD, IGNORE, _GAME_SIGNAL),
    SignalRule("SIGUSR2", FORWARD, IGNORE, _GAME_SIGNAL),
    SignalRule("SIGALRM", FORWARD, IGNORE, _GAME_SIGNAL),
    SignalRule("SIGPWR", FORWARD, IGNORE, _GAME_SIGNAL + "; Linux only"),
    SignalRule("SIGXCPU", IGNORE, IGNORE, "a CPU limit warning; the hard limit still kills"),
    SignalRule("SIGVTALRM", IGNORE, IGNORE, "a stray timer"),
    SignalRule("SIGPROF", IGNORE, IGNORE, "a stray profiler timer"),
    SignalRule("SIGSYS", IGNORE, IGNORE, "stray; a refused system call reports its error"),
    SignalRule("SIGTRAP", IGNORE, IGNORE, "stray; nothing here sets breakpoints"),
    SignalRule("SIGIO", IGNORE, IGNORE, "stray; nothing here asks for it"),
    SignalRule("SIGSTKFLT", IGNORE, IGNORE, "stray; Linux only"),
    SignalRule("SIGABRT", IGNORE, IGNORE, "sent from outside; an abort() inside still ends it"),
    SignalRule(REAL_TIME, IGNORE, IGNORE, "stray; Linux only"),
)

LEFT_ALONE: tuple[tuple[str, str], ...] = (
    ("SIGKILL, SIGSTOP", "cannot be caught"),
    ("SIGSEGV, SIGBUS, SIGFPE, SIGILL", "synchronous faults: the default action (end, core dump)"),
    ("SIGPIPE, SIGXFSZ", "already ignored: the write that caused them reports the error"),
    ("SIGCHLD, SIGURG, SIGWINCH, SIGCONT", "do nothing by default (SIGCHLD: the reaper, run mode)"),
    ("SIGTSTP, SIGTTIN, SIGTTOU", "default action (they pause the process, they do not end it)"),
)


def plan(mode: str) -> dict[int, SignalAction]:
    """Signal number → action for `mode` (a `Game.mode`), for the signals this platform has."""
    return {number: rule.action(mode) for rule in TABLE for number in rule.numbers()}


def signal_name(number: int) -> str:
    """``SIGHUP``; ``SIGRTMIN+3`` for a real-time signal without a name of its own."""
    try:
        return signal.Signals(number).name
    except ValueError:
        low = getattr(signal, "SIGRTMIN", None)
        if low is not None and number > low:
            return f"SIGRTMIN+{number - low}"
        return f"SIG{number}"


def markdown_table() -> str:
    """The table as docs/integration.md shows it."""
    actions = {
        TERMINATE: "terminate",
        FORWARD: "forward to the game",
        IGNORE: "ignore (logged once)",
    }
    header = ["signal", *(MODE_TITLES[mode] for mode in MODES), "why"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rule in TABLE:
        cells = [f"`{rule.name}`", *(actions[rule.action(mode)] for mode in MODES), rule.why]
        lines.append("| " + " | ".join(cells) + " |")
    for names, why in LEFT_ALONE:
        lines.append(f"| {names} | left alone | left alone | left alone | {why} |")
    return "\n".join(lines) + "\n"
