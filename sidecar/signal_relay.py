"""Caught signals handed to the event loop without losing one, and held at start-up.

Why not ``loop.add_signal_handler``
-----------------------------------
asyncio learns which signal arrived from the byte the interpreter's C-level handler writes to
the wakeup pipe. A flood of signals (an unthrottled ``kill`` loop, a game's orphans each sending
SIGCHLD) fills that pipe; the byte of the SIGTERM that follows is dropped and the SIGTERM lost,
every dropped byte prints a traceback, and under a long flood CPython's pending call that
reports the failed write can deadlock the process.

The interpreter's own per-signal "tripped" flags are never lost, only coalesced: a Python-level
handler (``signal.signal``) runs for every kind of signal that arrived. :class:`SignalRelay`
installs one that hands the signal to the loop with ``call_soon_threadsafe``, at most once per
kind until the loop has run it (a flood costs one callback per loop turn, not one per delivery).
The wakeup fd stays, only to wake the loop when the kernel delivers a signal to another thread
(the handler runs on the main thread); a full pipe then means the loop is awake already, so a
failed write is not reported (``warn_on_full_buffer=False``).

After :meth:`SignalRelay.release` with ``keep_ignoring`` the signals are ignored: the agent's
shutdown is over but the process has not exited yet (the last records are being flushed, the
interpreter finalizes), and a stray signal must not end it then with its default action. (The
game was reaped before: no program we exec inherits SIG_IGN.)

Start-up (:func:`hold_startup_signals`): until the handlers exist, the signals of the table are
blocked, so one that arrives meanwhile waits (one per kind) and is handled as soon as they do,
instead of ending the sidecar silently.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # asyncio itself is not imported: `python -m sidecar` holds signals first
    import asyncio
    from types import FrameType

SignalCallback = Callable[[int], None]


class SignalRelay:
    """Python-level handlers that hand each caught signal to one event loop; see the module
    docstring for why. Use it from the main thread; :data:`RELAY` is the process's."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callbacks: dict[int, SignalCallback] = {}
        self._queued: set[int] = set()
        self._previous: dict[int, Any] = {}
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_wakeup_fd = -1
        # True once the entry point held the signals: the process is a sidecar's own, so its
        # signals may be left ignored until it exits. An embedding process (a test runner, a
        # demo) gets its own dispositions back instead.
        self.process_is_ours = False

    def route(self, loop: asyncio.AbstractEventLoop, sig: int, callback: SignalCallback) -> None:
        """From now on `sig` calls ``callback(sig)`` on `loop` (the running loop, main thread)."""
        self._attach(loop)
        try:
            previous = signal.signal(sig, self._caught)  # ValueError off the main thread
        except (ValueError, OSError):
            if not self._callbacks:
                self._detach()
            raise
        self._previous.setdefault(sig, previous)
        self._callbacks[sig] = callback

    def release(self, sigs: Iterable[int], *, keep_ignoring: bool = False) -> None:
        """Stop handing `sigs` to the loop: give each its previous disposition back, or (with
        `keep_ignoring`) ignore it until exit. SIG_IGN, not a handler that drops it: the
        interpreter puts Python-level handlers back to the default action as it finalizes,
        and a stray signal then would still end the process."""
        if keep_ignoring:
            _quiet_reports_of_ignored_signals()
        for sig in sigs:
            self._callbacks.pop(sig, None)
            previous = self._previous.pop(sig, None)
            if keep_ignoring:
                signal.signal(sig, signal.SIG_IGN)
            elif previous is not None:
                signal.signal(sig, previous)
        if not self._callbacks:
            self._detach()

    def _caught(self, sig: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of whatever the main thread was doing: only queue, and
        # never raise (an exception here would surface in the interrupted code).
        loop = self._loop
        if loop is None or sig not in self._callbacks or sig in self._queued:
            return
        self._queued.add(sig)
        try:
            loop.call_soon_threadsafe(self._deliver, sig)
        except RuntimeError:  # the loop is closed: nothing left to hand it to
            self._queued.discard(sig)

    def _deliver(self, sig: int) -> None:
        self._queued.discard(sig)  # first: one arriving during the callback is handled again
        callback = self._callbacks.get(sig)
        if callback is not None:
            callback(sig)

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None and self._loop.is_closed():
            self._detach()  # a loop that ended without releasing us
        if self._loop is loop:
            return
        if self._loop is not None:
            raise RuntimeError("signals are already routed to another event loop")
        read, write = socket.socketpair()
        read.setblocking(False)
        write.setblocking(False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        loop.add_reader(read.fileno(), _drain, read)
        self._wakeup = (read, write)
        self._loop = loop

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        self._queued.clear()
        if self._wakeup is None:
            return
        read, write = self._wakeup
        self._wakeup = None
        # warn_on_full_buffer=False here too: a signal whose C-level handler runs on another
        # thread while the fd is swapped may still write to ours, find it full and, with the
        # default flag, report it on stderr (the flag is read after the write).
        signal.set_wakeup_fd(self._previous_wakeup_fd, warn_on_full_buffer=False)
        self._previous_wakeup_fd = -1
        if loop is not None and not loop.is_closed():
            loop.remove_reader(read.fileno())
        read.close()
        write.close()


def _quiet_reports_of_ignored_signals() -> None:
    """Keep the interpreter's reports about signals we now ignore off stderr.

    A signal whose C-level handler ran just before its disposition became SIG_IGN is reported by
    CPython as "OSError: Signal N ignored due to race condition", through sys.unraisablehook; so
    is a wakeup-fd write that found the pipe full. Both say only that a stray signal in a flood
    was dropped, which is what ignoring it means: a traceback in the game's stored logs would
    suggest a crash that did not happen. Every other report still goes to the previous hook.
    (Seen about once in six floods that went on through the exit.)"""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        about_ignored_signal = isinstance(exc, OSError) and str(exc).endswith(
            "ignored due to race condition"
        )
        about_wakeup_fd = isinstance(exc, BlockingIOError) and "wakeup fd" in str(
            unraisable.err_msg or ""
        )
        if not (about_ignored_signal or about_wakeup_fd):
            previous(unraisable)

    sys.unraisablehook = hook


def _drain(read: socket.socket) -> None:
    """Empty the wakeup pipe: its bytes only woke the loop; the handlers say what arrived."""
    with contextlib.suppress(OSError):
        while read.recv(4096):
            pass


RELAY = SignalRelay()


SERVING_COMMANDS = ("run", "serve")


def hold_startup_signals_for(args: Sequence[str]) -> None:
    """At the process's start: hold the signals when `args` (the command line after the program
    name) starts a sidecar; the other commands keep the default dispositions."""
    if args[:1] and args[0] in SERVING_COMMANDS:
        hold_startup_signals()


def hold_startup_signals() -> None:
    """Block the signals of the table (sidecar.signals) until :func:`release_startup_signals`:
    one arriving before the handlers exist then waits for them. The mask is per thread and
    inherited by the threads started meanwhile, which keeps those signals for the main thread.
    A path that exits without installing the handlers leaves them blocked: a pending one is
    then discarded with the process, which was ending anyway, with its own exit code."""
    from sidecar.signals import TABLE

    RELAY.process_is_ours = True
    signal.pthread_sigmask(signal.SIG_BLOCK, {n for rule in TABLE for n in rule.numbers()})


def release_startup_signals() -> None:
    """Unblock every signal; pending ones are delivered now, to the handlers if installed.
    Harmless when nothing was held (the game, spawned later, starts with an empty mask)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
