"""Linux network namespaces for backed deployments: create one, make sockets inside it, and the
command prefix that starts a process in it.

A namespace is held by a file descriptor only (never bind-mounted under /run/netns), so
nothing outlives the emulator: when it exits the descriptor closes, and the namespace goes away
with the last process in it. Creating a namespace or a socket inside one needs the calling
thread to switch namespaces (`unshare`, `setns` act on one thread), so each such step runs in a
fresh thread of its own that ends right after: no thread of the event loop or of a shared pool
ever leaves the emulator's own namespace. Processes enter the namespace through `nsenter`
(util-linux), which execs the shell in place, so the process id is the shell's.

Needs CAP_SYS_ADMIN (root); `unavailable()` says why not, and the emulator then isolates
deployments by ports instead (network.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import shutil
import socket
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sh22x"  # struct ifreq: the name, then ifr_flags in the union (40 bytes on Linux)


def _libc_call(name: str, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def _unshare_network() -> None:
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(CLONE_NEWNET)
    else:
        _libc_call("unshare", CLONE_NEWNET)


def _enter(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
    else:
        _libc_call("setns", fd, CLONE_NEWNET)


def _loopback_up() -> None:
    """`ip link set lo up` in the calling thread's namespace (a new one has lo down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def _run_in_fresh_thread(work: Callable[[], T]) -> T:
    """Run `work` in a new thread and return its result (blocking); the thread then ends, so
    whatever namespace it switched to dies with it."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # handed to the caller, whatever it is
            error.append(exc)

    thread = threading.Thread(target=run, name="emulator-netns", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _new_namespace() -> int:
    _unshare_network()
    fd = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        _loopback_up()
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_namespace() -> int:
    """A new network namespace with its loopback up; returns the descriptor that holds it
    (close it to let the namespace go). Blocking: call it through `asyncio.to_thread`."""
    return _run_in_fresh_thread(_new_namespace)


def socket_in(fd: int, family: int, kind: int) -> socket.socket:
    """A socket of the namespace held by `fd` (it stays there whatever thread uses it)."""

    def make() -> socket.socket:
        _enter(fd)
        return socket.socket(family, kind)

    return _run_in_fresh_thread(make)


async def async_socket_in(fd: int, family: int, kind: int) -> socket.socket:
    return await asyncio.to_thread(socket_in, fd, family, kind)


def spawn_prefix(fd: int) -> list[str]:
    """argv prefix that runs a command in the namespace of `fd` (pass `fd` to the child)."""
    return ["nsenter", f"--net=/proc/self/fd/{fd}", "--"]


def unavailable() -> str | None:
    """None when this process may isolate deployments in namespaces, else the reason."""
    for tool in ("nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    try:
        os.close(create_namespace())
    except OSError as exc:
        return f"cannot create a network namespace: {exc.strerror or exc}"
    return None
