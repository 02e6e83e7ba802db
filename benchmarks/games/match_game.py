"""A game server for the match simulation: one matchmaker deployment, some of whose players
never come.

Standard library only. Run by `sidecar run` (so it gets SIDECAR_URL). It learns its match from
the sidecar (`GET /v1/match`: the tickets and teams the matchmaker injected as `MM_*`), and which
of the tickets' players will actually connect from MATCH_ARRIVING (comma-separated ticket ids:
the simulation decides who shows up). Every event a stop's due time or the match's end of
playability is computed from is appended as a JSON line to $MATCH_EVENTS (a file: stdout is the
container log under test), each time taken *before* the call it stands for.

What it does, as a game that follows the integration guide would:

    ready; every arriving player connects with its ticket_id;
    if every team has at least one player: match start, play MATCH_PLAY s, everyone leaves,
        match end with a result and MATCH_GRACE s grace;
    else, if some players came (one team only): they wait in the lobby MATCH_PATIENCE s,
        give up and leave; the game never ends the match itself;
    else (nobody came): it waits.

Every line it prints starts with "game "; on SIGTERM it prints "game got SIGTERM" and exits.
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
EVENTS = os.environ.get("MATCH_EVENTS", os.devnull)
ARRIVING = [t for t in os.environ.get("MATCH_ARRIVING", "").split(",") if t]
PLAY = float(os.environ.get("MATCH_PLAY", "3"))
GRACE = float(os.environ.get("MATCH_GRACE", "0.5"))
PATIENCE = float(os.environ.get("MATCH_PATIENCE", "12"))


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


def timed(event: str, method: str, path: str, body: object = None) -> Any:
    sent = time.time()
    answer = call(method, path, body)
    record(event, sent=sent)
    return answer


def say(text: str) -> None:
    print(f"game {text}", flush=True)


def on_term(signum: int, frame: object) -> None:
    say("got SIGTERM")
    record("sigterm")
    sys.exit(0)


def sleep_forever() -> None:
    while True:
        signal.pause()


def main() -> None:
    signal.signal(signal.SIGTERM, on_term)
    status = call("GET", "/v1/status")
    record("start", pid=os.getpid(), sidecar_start=time.time() - float(status["uptime_s"]))
    match = call("GET", "/v1/match")
    record("roster", match_id=match["match_id"], expected=match["expected"])
    say(f"match {match['match_id']}: {match['expected']} expected, {len(ARRIVING)} coming")
    timed("ready", "POST", "/v1/ready")
    for ticket in ARRIVING:
        call("POST", "/v1/players/connect", {"player_id": f"player-{ticket}", "ticket_id": ticket})
    teams: dict[str, list[str]] = match["teams"]
    playable = bool(ARRIVING) and all(
        any(ticket in ARRIVING for ticket in members) for members in teams.values()
    )
    if playable:
        call("POST", "/v1/match/start", {"match_id": match["match_id"]})
        say("match on")
        time.sleep(PLAY)
        for ticket in ARRIVING:
            call("POST", "/v1/players/disconnect", {"player_id": f"player-{ticket}"})
        say("match over")
        body = {"result": {"winner": sorted(teams)[0] if teams else None}, "grace_seconds": GRACE}
        timed("match_end", "POST", "/v1/match/end", body)
        sleep_forever()
    if ARRIVING:
        say("waiting for the other team")
        time.sleep(PATIENCE)
        say("the lobby gives up")
        for ticket in ARRIVING:
            timed("disconnect", "POST", "/v1/players/disconnect", {"player_id": f"player-{ticket}"})
    sleep_forever()


if __name__ == "__main__":
    main()
