"""The bounded tail of a stream of output: what the emulator keeps of a game's logs.

A game may print without end; the emulator keeps the last `MAX_LOG_BYTES` of a deployment's
container logs (and of each run's output, for `crash_logs`) and counts what it dropped, oldest
first, at a line start where one is near. The end is what a CI needs (the stop record, the last
error), and the count says that something came before. Edgegap documents no size for container
logs; 10 MiB is what Kubernetes' kubelet keeps of a container's log file before it rotates
(`containerLogMaxSize`), the usual bound of a container platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LOG_BYTES = 10 * 1024 * 1024
# How far past the cut the kept part may start, to start at a line: a line longer than this is
# cut inside.
_LINE_SEARCH = 16 * 1024


@dataclass
class Tail:
    """The last `limit` bytes of what was appended, and how many came before them."""

    limit: int = MAX_LOG_BYTES
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        overflow = len(self.data) - self.limit
        if overflow <= 0:
            return
        newline = self.data.find(b"\n", overflow, overflow + _LINE_SEARCH)
        cut = overflow if newline < 0 else newline + 1
        # Deleting from the front of a bytearray moves its start, not its bytes.
        del self.data[:cut]
        self.dropped += cut

    def note(self) -> bytes:
        """The line that says what was dropped, empty when nothing was."""
        if not self.dropped:
            return b""
        return (
            f"[emulator] {self.dropped} bytes of earlier output dropped: the emulator keeps "
            f"the last {self.limit // (1024 * 1024)} MiB of a deployment's logs\n"
        ).encode()

    def kept(self) -> bytes:
        """The note, then what is kept."""
        return self.note() + bytes(self.data)
