"""The guardian of one backed deployment's process tree: nothing it holds outlives the emulator.

Run as a script by path (`python guardian.py FD -- /bin/sh -c COMMAND`, no package import, so it
starts fast and needs nothing of ours), it starts the command in a process group of its own and
owns everything that command ever starts:

* it is the tree's reaper: a child subreaper (PR_SET_CHILD_SUBREAPER), or PID 1 of a PID
  namespace when the emulator runs it under `unshare --pid` (netns isolation, root), so a
  descendant that leaves the group or the session (`setsid`, a daemon's double fork) still
  hangs below it and is found;
* the emulator talks to it over the socket FD (the lifeline): `term <grace>` sends SIGTERM to
  the command's process group (the shell and the game, as a stop always did: a helper that
  left the group is not asked, as a container runtime asks only its main process) and SIGKILL
  to the whole tree, whatever is left of it, after `grace` seconds; `kill` sends SIGKILL now;
  end of file (the emulator exited, however: SIGKILL included, since the kernel closes a dead
  process's descriptors) means `kill` too. PR_SET_PDEATHSIG would only cover a direct child;
* when the command's shell exits on its own, what it left behind is killed, as a container's
  processes die with its main one; during a `term` the guardian waits (up to the grace) for the
  rest of the tree, so a game behind a shell that exits first still gets its grace;
* it exits once no descendant is left, after writing `exit <code>` on the lifeline: asyncio's
  return code of the shell (negative: killed by that signal), which PID 1 of a namespace cannot
  reproduce by killing itself.

Linux only (prctl, /proc through psutil).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import socket
import sys
import time

import psutil

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Enough rounds to catch processes forked while the previous round was being killed.
_KILL_ROUNDS = 50


class Guardian:
    def __init__(self, lifeline: socket.socket, argv: list[str]) -> None:
        self._lifeline = lifeline
        self._argv = argv
        self._main_pid = 0
        self._main_status: int | None = None  # asyncio-style return code once it exited
        self._kill_at: float | None = None  # the end of a `term`'s grace
        self._terminating = False
        self._buffer = b""

    def run(self) -> int:
        if os.getpid() != 1:
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        os.set_blocking(wakeup_r, False)
        signal.set_wakeup_fd(wakeup_w)
        # A handler (not SIG_DFL) so SIGCHLD writes to the wakeup pipe; SIGTERM/SIGINT sent to
        # the guardian itself are ignored: only the lifeline decides (a terminal's Ctrl-C to
        # the emulator must not take a deployment down behind its back).
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._main_pid = os.fork()
        if self._main_pid == 0:
            _exec_command(self._argv)  # never returns
        selector = selectors.DefaultSelector()
        selector.register(self._lifeline, selectors.EVENT_READ, "lifeline")
        selector.register(wakeup_r, selectors.EVENT_READ, "wakeup")
        while True:
            has_children = self._reap()
            if self._main_status is not None and not self._terminating:
                self._kill_tree()  # the main process is gone: so is its container
                has_children = self._reap()
            if not has_children:
                break
            timeout = None
            if self._kill_at is not None:
                timeout = max(0.0, self._kill_at - time.monotonic())
                if timeout == 0.0:
                    self._kill_at = None
                    self._kill_tree()
                    continue
            for key, _ in selector.select(timeout):
                if key.data == "wakeup":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wakeup_r, 4096)
                else:
                    self._read_lifeline(selector)
        status = self._main_status if self._main_status is not None else -signal.SIGKILL
        self._report(status)
        return 128 - status if status < 0 else status

    def _read_lifeline(self, selector: selectors.BaseSelector) -> None:
        try:
            data = self._lifeline.recv(4096)
        except OSError:
            data = b""
        if not data:
            # The emulator is gone (or dropped us): nothing of this tree may outlive it.
            selector.unregister(self._lifeline)
            self._terminating = True
            self._kill_tree()
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            command, _, argument = line.decode("ascii", "replace").partition(" ")
            if command == "term" and not self._terminating:
                self._terminating = True
                self._kill_at = time.monotonic() + _seconds(argument)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._main_pid, signal.SIGTERM)
            elif command == "kill":
                self._terminating = True
                self._kill_tree()

    def _reap(self) -> bool:
        """Reap every exited child; True while any child (so any descendant) is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self._main_pid:
                self._main_status = _return_code(status)

    def _descendants(self) -> list[psutil.Process]:
        try:
            children: list[psutil.Process] = psutil.Process().children(recursive=True)
        except psutil.Error:
            return []
        return children

    def _signal_tree(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._main_pid, signum)
        for process in self._descendants():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)

    def _kill_tree(self) -> None:
        for _ in range(_KILL_ROUNDS):
            if os.getpid() == 1:
                # PID 1 of a namespace: -1 is everyone else in it, however they were started.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)
            self._signal_tree(signal.SIGKILL)
            self._reap()
            if not any(_alive(process) for process in self._descendants()):
                return

    def _report(self, status: int) -> None:
        with contextlib.suppress(OSError):
            self._lifeline.sendall(f"exit {status}\n".encode())


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        return 0.0
    return seconds if 0.0 <= seconds < 1e9 else 0.0


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _return_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _exec_command(argv: list[str]) -> None:
    """In the forked child: a process group of its own, default signal dispositions (not the
    guardian's ignored SIGTERM/SIGINT, nor the SIGPIPE/SIGXFSZ every Python ignores: what
    subprocess's restore_signals undoes), then the command. Forking is safe here: the
    guardian has one thread."""
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        os.setpgid(0, 0)
        # Should the guardian itself be SIGKILLed (by someone else), its direct child goes too;
        # in a PID namespace the kernel takes everything anyway.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.execvp(argv[0], argv)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"{argv[0]}: {exc.strerror or exc}\n".encode(errors="replace"))
    finally:
        os._exit(127)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: guardian.py FD -- COMMAND...", file=sys.stderr)
        return 2
    fd = int(argv[0])
    os.set_inheritable(fd, False)  # the game gets no handle on the emulator's lifeline
    lifeline = socket.socket(fileno=fd)
    return Guardian(lifeline, argv[2:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
