"""A file named by the user read from disk within bounds: a regular file or an error, never a hang.

`read_regular_file(path, max_bytes)` returns the file's bytes, or raises ValueError saying why it
cannot be used (without quoting the file). The file must be a regular file (a symlink to one is
fine) of 1 to `max_bytes` bytes. It is checked with stat() before it is opened, because opening
some devices has effects (a tape rewinds, a TTY is acquired), and again with fstat() on the open
descriptor, which is opened non-blocking: a FIFO swapped in between can neither block the open
nor be read. At most `max_bytes + 1` bytes are read, so a file that grows while it is read cannot
fill memory either.

Shared by the Agones manifest reader and the emulator's `--app-version` files; stdlib only.
"""

from __future__ import annotations

import os
import stat


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`; ValueError if it is not one, empty or too big."""
    raw = b""
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind is None:
            # O_NONBLOCK: if a FIFO replaced the file since stat(), open() does not wait for a
            # writer, and fstat() below refuses it.
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            descriptor = os.open(path, flags)
            try:
                kind = _kind(os.fstat(descriptor).st_mode)
                if kind is None:
                    raw = _read_at_most(descriptor, max_bytes + 1)
            finally:
                os.close(descriptor)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if kind is not None:
        raise ValueError(f"{path} is {kind}, not a regular file")
    if not raw:
        raise ValueError(f"{path} is empty")
    if len(raw) > max_bytes:
        raise ValueError(f"{path} is larger than {_size(max_bytes)}")
    return raw


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is, for the message; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(descriptor, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _size(max_bytes: int) -> str:
    mib, kib = 1024 * 1024, 1024
    if max_bytes % mib == 0:
        return f"{max_bytes // mib} MiB"
    if max_bytes % kib == 0:
        return f"{max_bytes // kib} KiB"
    return f"{max_bytes} bytes"
