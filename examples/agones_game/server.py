"""A small UDP game server integrated with Agones only: it talks to the Agones SDK REST API and
knows nothing of Edgegap or the sidecar. Under `SIDECAR_AGONES=true edgegap-sidecar run -- ...`
it runs unchanged, and the sidecar turns its Agones calls into Edgegap's lifecycle.

The SDK calls are the ones Agones' Unity SDK (AgonesSdk.cs) makes, with the same bodies:

    connect      GET /gameserver until it answers 200 (the SDK's Connect(): once a second)
    Ready()      POST /ready {}                       once the UDP socket is bound
    Health()     POST /health {}                      every --health-interval seconds
    players      POST /alpha/player/connect|disconnect {"playerID": ...}  on JOIN / LEAVE
    label        PUT /metadata/label {"key", "value"} the match's result, at its end
    Shutdown()   POST /shutdown {}                    when the match is over

The port comes from AGONES_SDK_HTTP_PORT (default 9358), as in every Agones SDK.

Protocol (the same as examples/python_game, so its bots can play): one UTF-8 text datagram
per command, one reply per command.

    JOIN <player>            -> OK JOIN <player> players=<online>
    SCORE <player> <total>   -> OK SCORE <player> <total>
    LEAVE <player>           -> OK LEAVE <player> players=<online>
    PING                     -> OK PING - players=<online>
    anything refused         -> ERR <COMMAND> <player or -> <reason>

The match is over when a player reaches --target-score (0 = no target) or when every player
has left after at least one score. The server keeps answering until SIGTERM/SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from types import FrameType
from typing import Any

DEFAULT_PORT = 7777


def log(message: str) -> None:
    print(f"[agones-game] {message}", flush=True)


class AgonesSdk:
    """The Agones SDK over its REST API, as the Unity SDK calls it (stdlib only)."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.timeout = timeout

    def _send(self, path: str, body: Any = None, method: str = "POST") -> tuple[bool, Any]:
        data = json.dumps({} if body is None else body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                # Like the Unity SDK: only a 200 is a success.
                return response.status == 200, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            log(f"Agones {method} {path} failed: HTTP {exc.code} {exc.read()[:200]!r}")
        except (OSError, ValueError) as exc:
            log(f"Agones {method} {path} failed: {exc}")
        return False, None

    def connect(self, attempts: int = 30) -> dict[str, Any] | None:
        for _ in range(attempts):
            ok, gameserver = self._send("/gameserver", method="GET")
            if ok and isinstance(gameserver, dict):
                return gameserver
            time.sleep(1.0)
        return None

    def ready(self) -> bool:
        return self._send("/ready")[0]

    def health(self) -> bool:
        return self._send("/health")[0]

    def shutdown(self) -> bool:
        return self._send("/shutdown")[0]

    def set_label(self, key: str, value: str) -> bool:
        return self._send("/metadata/label", {"key": key, "value": value}, "PUT")[0]

    def player_connect(self, player: str) -> bool:
        ok, answer = self._send("/alpha/player/connect", {"playerID": player})
        return ok and bool(answer and answer.get("bool"))

    def player_disconnect(self, player: str) -> bool:
        ok, answer = self._send("/alpha/player/disconnect", {"playerID": player})
        return ok and bool(answer and answer.get("bool"))


class Match:
    """The game rules, no I/O."""

    def __init__(self, target_score: int) -> None:
        self.target_score = target_score
        self.online: set[str] = set()
        self.scores: dict[str, int] = {}
        self.winner: str | None = None
        self.over = False

    def join(self, player: str) -> None:
        self.online.add(player)
        self.scores.setdefault(player, 0)

    def leave(self, player: str) -> None:
        self.online.discard(player)
        if not self.online and any(self.scores.values()):
            self._finish()

    def score(self, player: str, total: int) -> None:
        self.scores[player] = max(self.scores[player], total)
        if self.target_score and self.scores[player] >= self.target_score:
            self._finish()

    def _finish(self) -> None:
        if self.over:
            return
        self.over = True
        best = max(self.scores.values(), default=0)
        leaders = [p for p, s in self.scores.items() if s == best]
        self.winner = leaders[0] if best > 0 and len(leaders) == 1 else None


class GameServer:
    def __init__(self, sock: socket.socket, sdk: AgonesSdk, match: Match) -> None:
        self.sock = sock
        self.sdk = sdk
        self.match = match
        self.shutdown_sent = False

    def handle(self, text: str) -> str:
        words = text.split()
        command = words[0].upper() if words else "?"
        player = words[1] if len(words) > 1 else "-"
        if command == "PING" and len(words) == 1:
            return f"OK PING - players={len(self.match.online)}"
        if command not in ("JOIN", "SCORE", "LEAVE"):
            return f"ERR {command} - unknown command"
        if len(words) != (3 if command == "SCORE" else 2):
            return f"ERR {command} {player} usage: JOIN <id> | SCORE <id> <total> | LEAVE <id>"
        if command == "LEAVE":
            if player in self.match.online:
                self.match.leave(player)
                self.sdk.player_disconnect(player)
                log(f"{player} left ({len(self.match.online)} online)")
                self._end_if_over()
            return f"OK LEAVE {player} players={len(self.match.online)}"
        if self.match.over:
            return f"ERR {command} {player} match over"
        if command == "JOIN":
            if player not in self.match.online:
                self.match.join(player)
                self.sdk.player_connect(player)
                log(f"{player} joined ({len(self.match.online)} online)")
            return f"OK JOIN {player} players={len(self.match.online)}"
        if player not in self.match.online:
            return f"ERR SCORE {player} not joined"
        try:
            total = int(words[2])
        except ValueError:
            return f"ERR SCORE {player} total must be a non-negative integer"
        self.match.score(player, max(0, total))
        self._end_if_over()
        return f"OK SCORE {player} {self.match.scores[player]}"

    def _end_if_over(self) -> None:
        if not self.match.over or self.shutdown_sent:
            return
        self.shutdown_sent = True
        log(f"match over: winner={self.match.winner} scores={self.match.scores}")
        self.sdk.set_label("winner", self.match.winner or "none")
        if self.sdk.shutdown():
            log("told Agones to shut down")

    def serve(self, stop: threading.Event, wakeup: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            selector.register(wakeup, selectors.EVENT_READ)
            while not stop.is_set():
                for key, _ in selector.select():
                    if key.fileobj is wakeup:
                        wakeup.recv(64)
                        continue
                    try:
                        data, peer = self.sock.recvfrom(2048)
                    except OSError:
                        continue
                    reply = self.handle(data.decode("utf-8", "replace").strip())
                    self.sock.sendto(reply.encode(), peer)


def game_port(environ: dict[str, str]) -> int:
    """The first UDP internal port of ARBITRIUM_PORTS_MAPPING, else DEFAULT_PORT."""
    try:
        for port in json.loads(environ.get("ARBITRIUM_PORTS_MAPPING", ""))["ports"].values():
            if "UDP" in str(port.get("protocol", "")).upper():
                return int(port["internal"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        # RecursionError: JSON nested ~1000 deep defeats json.loads; the game starts anyway.
        pass
    return DEFAULT_PORT


def health_loop(sdk: AgonesSdk, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        sdk.health()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="0.0.0.0", help="UDP bind address")
    parser.add_argument("--port", type=int, default=None, help="UDP port (default: from Edgegap)")
    parser.add_argument("--target-score", type=int, default=0, help="0: until everyone left")
    parser.add_argument("--health-interval", type=float, default=2.0, help="seconds")
    args = parser.parse_args(argv)

    sdk = AgonesSdk(int(os.environ.get("AGONES_SDK_HTTP_PORT", "9358")))
    gameserver = sdk.connect()
    if gameserver is None:
        log(f"could not reach the Agones SDK at {sdk.base_url}")
        return 1
    meta, status = gameserver["object_meta"], gameserver["status"]
    log(f"connected to Agones: GameServer {meta['name']} ({status['state']})")

    stop = threading.Event()
    wakeup_read, wakeup_write = socket.socketpair()
    wakeup_write.setblocking(False)
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    port = args.port if args.port is not None else game_port(dict(os.environ))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((args.host, port))
        log(f"listening on udp {args.host}:{sock.getsockname()[1]}")
        if sdk.ready():
            log("told Agones we are ready")
        threading.Thread(
            target=health_loop, args=(sdk, args.health_interval, stop), daemon=True
        ).start()
        GameServer(sock, sdk, Match(args.target_score)).serve(stop, wakeup_read)
    log(f"shutdown: {received[0] if received else 'stop'} received, bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
