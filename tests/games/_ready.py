"""Shared by the games: print a line and flush it at once (tests wait for these lines)."""

import sys


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(part) for part in parts) + "\n")
    sys.stdout.flush()
