"""A game server for the fleet simulation: plays one failure mode against its sidecar.

Standard library only. Run by `sidecar run` (so it gets SIDECAR_URL); the mode and its timings
come from the environment (FLEET_MODE, FLEET_PLAY, FLEET_GRACE), and every event a stop's due
time is computed from is appended as a JSON line to $FLEET_EVENTS: a file, not stdout, because
stdout is what is under test (and in one mode it is broken). Each time is taken *before* the
call that starts the sidecar's timer, so a due time derived from it is never later than the
sidecar's own: lateness is never under-reported.

Every line the game prints starts with "game " so the simulation can tell the game's output
from the sidecar's in the stored container logs. After SIGTERM it prints "game got SIGTERM"
and exits; that line is the only game output allowed after the `sidecar.stop` record.

Modes (see benchmarks/fleet/scenarios.py for the stop each one must cause):

    normal        ready, 2 players, match, players leave, match end
    crash         ready, players, match, 200 lines, then exit 3 in the middle of a line
    hang          heartbeats every 0.5 s while playing, then silence
    never_ready   never calls ready, never listens
    no_players    ready, nobody comes
    empty         players play, then leave; the match never ends
    never_ends    players stay forever
    ignore_term   a match that ends with a shutdown request; SIGTERM is ignored
    broken_stdout plays `crash`; the sidecar's own stdout is a broken pipe
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from typing import Any

URL = os.environ.get("SIDECAR_URL", "http://127.0.0.1:8787")
MODE = os.environ.get("FLEET_MODE", "normal")
EVENTS = os.environ.get("FLEET_EVENTS", os.devnull)
PLAY = float(os.environ.get("FLEET_PLAY", "4"))
GRACE = float(os.environ.get("FLEET_GRACE", "1"))


def record(event: str, **extra: object) -> None:
    with open(EVENTS, "a") as out:
        out.write(json.dumps({"event": event, "t": time.time(), **extra}) + "\n")


def call(method: str, path: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else {}


def timed(event: str, method: str, path: str, body: object = None) -> None:
    sent = time.time()
    call(method, path, body)
    record(event, sent=sent)


def say(text: str) -> None:
    print(f"game {text}", flush=True)


def on_term(signum: int, frame: object) -> None:
    say("got SIGTERM")
    record("sigterm")
    sys.exit(0)


def sleep_forever() -> None:
    while True:
        signal.pause()


def crash() -> None:
    for n in range(200):
        say(f"tick {n}: the world is simulated")
    time.sleep(PLAY)
    # An unfinished line: the stop record must still stand on a line of its own after it.
    sys.stdout.write("game fatal: assertion failed in physics step")
    sys.stdout.flush()
    record("exit", code=3)
    os._exit(3)


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN if MODE == "ignore_term" else on_term)
    before = time.time()
    status = call("GET", "/v1/status")
    # The ready and max-duration timers run from the sidecar's start; uptime_s says when that
    # was. `before` minus the uptime is the earliest it can have been.
    record("start", pid=os.getpid(), sidecar_start=before - float(status["uptime_s"]))
    say(f"{MODE} started")
    if MODE == "never_ready":
        sleep_forever()
    timed("ready", "POST", "/v1/ready")
    if MODE == "no_players":
        sleep_forever()
    for player in ("alice", "bob"):
        call("POST", "/v1/players/connect", {"player_id": player})
    call("POST", "/v1/match/start", {"match_id": MODE})
    if MODE in ("crash", "broken_stdout"):
        crash()
    if MODE == "hang":
        end = time.time() + PLAY
        while time.time() < end:
            timed("heartbeat", "POST", "/v1/health")
            time.sleep(0.5)
        say("main loop stuck")
        sleep_forever()
    if MODE == "never_ends":
        say("the match goes on and on")
        sleep_forever()
    time.sleep(PLAY)
    say("everyone leaves")
    for player in ("alice", "bob"):
        timed("disconnect", "POST", "/v1/players/disconnect", {"player_id": player})
    if MODE == "empty":
        sleep_forever()
    say("match over")
    if MODE == "ignore_term":
        timed("shutdown", "POST", "/v1/shutdown", {"grace_seconds": GRACE})
    else:
        body = {"result": {"winner": "alice"}, "grace_seconds": GRACE}
        timed("match_end", "POST", "/v1/match/end", body)
    sleep_forever()


if __name__ == "__main__":
    main()
