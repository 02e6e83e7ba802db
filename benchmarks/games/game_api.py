"""What the simulation's games share: the sidecar's API over HTTP, the events file every due time
is computed from, the "game " prefix of their output and the SIGTERM answer.

Standard library only, and imported by its bare name: the games run as scripts
(`python benchmarks/games/<game>.py`), so this folder is first on their path."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from typing import Any

URL = os.environ.get("SIDECAR_URL", "http://127.0.0.1:8787")


def call(method: str, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else {}


def say(text: str) -> None:
    print(f"game {text}", flush=True)


def sleep_forever() -> None:
    while True:
        signal.pause()


class Events:
    """The JSON-lines file of the game's events (`path`: the game's own variable)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def record(self, event: str, **extra: object) -> None:
        with open(self.path, "a") as out:
            out.write(json.dumps({"event": event, "t": time.time(), **extra}) + "\n")

    def timed(self, event: str, method: str, path: str, body: object = None) -> Any:
        """The call, recorded with the time taken *before* it was sent."""
        sent = time.time()
        answer = call(method, path, body)
        self.record(event, sent=sent)
        return answer

    def on_term(self, signum: int, frame: object) -> None:
        say("got SIGTERM")
        self.record("sigterm")
        sys.exit(0)
