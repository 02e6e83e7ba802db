"""A fork server for the fault matrix: imports the sidecar once, then forks one sidecar process
per cell, so 360 cells do not pay 360 interpreter start-ups (~0.5 s of CPU each, most of the
matrix's cost on 2 cores).

Each child is a whole sidecar process as `python -m sidecar ARGS` would make it: its own pid,
environment (replaced, not merged), stdin/stdout/stderr (the pipes the test passed), signal
dispositions back to the defaults, a fresh random seed, and `sidecar.cli.main(ARGS)` as its
program, its return value as the exit status. Only the imports are shared, copy-on-write.
`FAULT_MATRIX_SPAWN=exec` runs the matrix with plain `python -m sidecar` processes instead.

Protocol on the AF_UNIX SOCK_SEQPACKET socket whose fd is argv[1], one JSON object a message:
  test -> server  {"id": n, "argv": [...], "env": {...}}  with stdin, stdout, stderr as SCM_RIGHTS
  server -> test  {"id": n, "pid": pid}                   the child is forked
  server -> test  {"pid": pid, "returncode": code}        the child ended (-N: killed by signal N)
The server ends when the test closes its end.

`"probe": true` in a request installs `install_probe()` in that child (the fault matrix's cells).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from typing import Any, NoReturn


def preload() -> None:
    """Everything a sidecar imports on its way to serving, run or watch mode."""
    import email.utils  # noqa: F401
    import http.client  # noqa: F401

    import aiohttp  # noqa: F401
    import psutil  # noqa: F401

    import sidecar.agent
    import sidecar.api
    import sidecar.bodies
    import sidecar.cli
    import sidecar.config
    import sidecar.edgegap
    import sidecar.logs
    import sidecar.reaper
    import sidecar.supervisor
    import sidecar.watchers  # noqa: F401


PROBE = b"fault-matrix probe: "


def install_probe() -> None:
    """Mark, on stderr and in program order, every DELETE the sidecar puts on the wire and the
    moment its termination-signal handler has run.

    The fault matrix asks whether a DELETE was sent once the SIGTERM was handled (SPEC §7). Only
    the sidecar's own thread knows: the platform reads a request, and the test sees the
    `sidecar.terminate` record, each through a loop that a loaded machine runs hundreds of
    milliseconds late (and the kernel's receive stamp on loopback lags the send as much, when
    softirqs are deferred). Both marks are written here with os.write(2) on the event loop's
    thread, in the order the loop did the two things, and a line that short is written to a
    pipe whole: their order on stderr is the order of the events, with no clock to compare.

    "Sent" is the request head handed to the kernel (aiohttp writes a bodiless request's head
    in one transport.write); "handled" is the return from `Agent.on_terminate_signal`, which
    cancels the stop task. The sidecar's own code is unchanged; only these two calls are
    wrapped. Not installed with FAULT_MATRIX_SPAWN=exec.
    """
    import asyncio.selector_events
    import time

    import sidecar.agent

    transport = asyncio.selector_events._SelectorSocketTransport
    write = transport.write

    def probed_write(self: Any, data: Any) -> None:
        if bytes(data[:7]) == b"DELETE ":
            os.write(2, PROBE + b"DELETE sent %.6f\n" % time.monotonic())
        write(self, data)

    transport.write = probed_write  # type: ignore[method-assign]
    agent = sidecar.agent.Agent
    handler = agent.on_terminate_signal

    def probed_handler(self: Any, sig: int) -> None:
        try:
            handler(self, sig)
        finally:
            os.write(2, PROBE + b"signal %d handled %.6f\n" % (sig, time.monotonic()))

    agent.on_terminate_signal = probed_handler  # type: ignore[method-assign]


def run_child(request: dict[str, Any], fds: list[int], closing: list[int]) -> NoReturn:
    """In the forked child: become the sidecar."""
    code = 1
    try:
        # The only dispositions the server changed; the rest are a fresh interpreter's.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in closing:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        import random

        random.seed()
        if request.get("probe"):
            install_probe()
        sys.argv = ["edgegap-sidecar", *request["argv"]]
        from sidecar.cli import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    os._exit(code)


def serve(control: socket.socket) -> None:
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the wakeup fd

    live: set[int] = set()

    def send(message: dict[str, Any]) -> None:
        control.sendall(json.dumps(message).encode())

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            live.discard(pid)
            send({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})

    while True:
        ready, _, _ = select.select([control, wake_read], [], [])
        if wake_read in ready:
            while True:
                try:
                    if not os.read(wake_read, 512):
                        break
                except BlockingIOError:
                    break
            reap()
        if control in ready:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 3)
            if not message:
                # The test is gone (finished, or killed mid-run): so are its sidecars.
                for pid in live:
                    os.kill(pid, signal.SIGKILL)
                return
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                run_child(request, fds, [control.fileno(), wake_read, wake_write])
            live.add(pid)
            for fd in fds:
                os.close(fd)
            send({"id": request["id"], "pid": pid})
            reap()


def main() -> None:
    preload()
    control = socket.socket(fileno=int(sys.argv[1]))
    serve(control)


if __name__ == "__main__":
    main()
