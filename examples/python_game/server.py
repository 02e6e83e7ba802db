"""A small real UDP game server that uses the sidecar's local API through `sidecar.client`.

Run it under the sidecar (`edgegap-sidecar run -- python3 examples/python_game/server.py`) or
beside one (`edgegap-sidecar serve`), then drive it with `examples/python_game/bots.py`.

Protocol: one UTF-8 text datagram per command, one reply datagram per command.

    JOIN <player>            -> OK JOIN <player> players=<online>
    SCORE <player> <total>   -> OK SCORE <player> <total>        (total, not a delta: see below)
    LEAVE <player>           -> OK LEAVE <player> players=<online>
    PING                     -> OK PING - players=<online>
    anything refused         -> ERR <COMMAND> <player or -> <reason>

SCORE carries the player's running total rather than the points of one round so a bot may resend
a datagram it got no answer for without counting the points twice (UDP loses and duplicates).

Sidecar calls: `ready` once the socket is bound, a heartbeat every `--heartbeat` seconds,
`match_start` on the first JOIN, `connect` / `disconnect` on JOIN / LEAVE, and `match_end` with
`{"reason", "winner", "scores"}` when a player reaches `--target-score` (0 = no target) or when
every player has left after at least one score. The server then keeps serving (LEAVE still
works, JOIN and SCORE are refused) until SIGTERM or SIGINT: it prints a shutdown line, exits 0.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

try:
    from sidecar.client import Heartbeat, SidecarClient, SidecarClientError
except ImportError:
    # Running from a checkout without the package installed: client.py is a single stdlib-only
    # file, so the repository copy works as a vendored one.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sidecar.client import Heartbeat, SidecarClient, SidecarClientError

DEFAULT_PORT = 7777
MAX_PLAYER_ID = 128
T = TypeVar("T")


def log(message: str) -> None:
    """One readable line on stdout; flushed so the sidecar relays it immediately."""
    print(f"[game] {message}", flush=True)


def game_port_from_env(environ: Mapping[str, str]) -> int | None:
    """The first UDP internal port Edgegap mapped for us, or None when the variables are absent.

    `ARBITRIUM_PORTS_MAPPING` keys are port names in new deployments and numbers in old ones,
    so only the values are read. Malformed values are ignored: the game must still start.
    """
    try:
        ports = json.loads(environ.get("ARBITRIUM_PORTS_MAPPING", ""))["ports"]
        for port in ports.values():
            if "UDP" in str(port.get("protocol", "")).upper():
                return int(port["internal"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        # RecursionError: JSON nested ~1000 deep defeats json.loads; the game starts anyway.
        pass
    try:
        return int(environ["ARBITRIUM_PORT_GAMEPORT_INTERNAL"])
    except (KeyError, ValueError):
        return None


class Match:
    """The game rules, no I/O: who is online, the scores, and whether the match is over."""

    def __init__(self, target_score: int) -> None:
        self.target_score = target_score
        self.scores: dict[str, int] = {}
        self.online: set[str] = set()
        self.started = False
        self.result: dict[str, Any] | None = None

    def join(self, player: str) -> None:
        self.started = True
        self.online.add(player)
        self.scores.setdefault(player, 0)

    def leave(self, player: str) -> None:
        self.online.discard(player)
        if not self.online and any(self.scores.values()) and self.result is None:
            self._finish("all_players_left")

    def score(self, player: str, total: int) -> None:
        # A late duplicate must not lower a score that a newer datagram already raised.
        self.scores[player] = max(self.scores[player], total)
        if self.target_score and self.scores[player] >= self.target_score:
            self._finish("target_score")

    def _finish(self, reason: str) -> None:
        best = max(self.scores.values(), default=0)
        leaders = sorted(p for p, s in self.scores.items() if s == best)
        winner = leaders[0] if best > 0 and len(leaders) == 1 else None
        self.result = {
            "reason": reason,
            "winner": winner,
            "scores": dict(sorted(self.scores.items())),
        }


class GameServer:
    """Serves the UDP protocol and reports the lifecycle to the sidecar."""

    def __init__(self, sock: socket.socket, client: SidecarClient, match: Match) -> None:
        self.sock = sock
        self.client = client
        self.match = match
        self.match_end_sent = False

    def sidecar(self, what: str, call: Callable[[], T]) -> T | None:
        """Call the sidecar; a failure is logged, never fatal: players matter more than stats."""
        try:
            return call()
        except SidecarClientError as exc:
            log(f"sidecar {what} failed: {exc}")
            return None

    def handle(self, text: str) -> str:
        """Apply one command and return the reply."""
        words = text.split()
        command = words[0].upper() if words else "?"
        player = words[1] if len(words) > 1 else "-"
        if command == "PING" and len(words) == 1:
            return f"OK PING - players={len(self.match.online)}"
        if command not in ("JOIN", "SCORE", "LEAVE"):
            return f"ERR {command} - unknown command"
        if len(words) != (3 if command == "SCORE" else 2):
            return f"ERR {command} {player} usage: JOIN <id> | SCORE <id> <total> | LEAVE <id>"
        if not player.isprintable() or len(player) > MAX_PLAYER_ID:
            return f"ERR {command} - player id must be 1-{MAX_PLAYER_ID} printable characters"
        if command == "LEAVE":
            return self._leave(player)
        if self.match.result is not None:
            return f"ERR {command} {player} match over"
        if command == "JOIN":
            return self._join(player)
        return self._score(player, words[2])

    def _join(self, player: str) -> str:
        if not self.match.started:
            self.sidecar("match_start", self.client.match_start)
            log("match started")
        if player not in self.match.online:
            self.match.join(player)
            self.sidecar("connect", lambda: self.client.connect(player))
            log(f"{player} joined ({len(self.match.online)} online)")
        return f"OK JOIN {player} players={len(self.match.online)}"

    def _leave(self, player: str) -> str:
        if player in self.match.online:
            self.match.leave(player)
            self.sidecar("disconnect", lambda: self.client.disconnect(player))
            log(f"{player} left ({len(self.match.online)} online)")
            self._report_match_end()
        return f"OK LEAVE {player} players={len(self.match.online)}"

    def _score(self, player: str, total_text: str) -> str:
        if player not in self.match.online:
            return f"ERR SCORE {player} not joined"
        try:
            total = int(total_text)
        except ValueError:
            total = -1
        if total < 0:
            return f"ERR SCORE {player} total must be a non-negative integer"
        before = self.match.scores[player]
        self.match.score(player, total)
        if self.match.scores[player] != before:
            log(f"{player} scored, total {self.match.scores[player]}")
        self._report_match_end()
        return f"OK SCORE {player} {self.match.scores[player]}"

    def _report_match_end(self) -> None:
        if self.match.result is None or self.match_end_sent:
            return
        self.match_end_sent = True
        result = self.match.result
        log(f"match over ({result['reason']}): winner={result['winner']} scores={result['scores']}")
        self.sidecar("match_end", lambda: self.client.match_end(result=result))

    def serve(self, stop: threading.Event, wakeup: socket.socket) -> None:
        """Answer datagrams until `stop` is set; `wakeup` becomes readable when a signal lands."""
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
                        continue  # an ICMP error from an earlier reply to a vanished client
                    reply = self.handle(data.decode("utf-8", "replace").strip())
                    self.sock.sendto(reply.encode(), peer)


def watch_sidecar_events(client: SidecarClient) -> None:
    """Log the sidecar's state changes, so the console shows when a stop is coming."""
    last_state = None
    try:
        for event, data in client.events():
            state = data.get("state")
            if event == "state" and state != last_state:
                last_state = state
                log(f"sidecar state: {state} (stop reason: {data.get('stop_reason')})")
    except SidecarClientError as exc:
        log(f"sidecar event stream ended: {exc}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="0.0.0.0", help="UDP bind address (default 0.0.0.0)")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="UDP port (default: the first UDP internal port of ARBITRIUM_PORTS_MAPPING, "
        f"else ARBITRIUM_PORT_GAMEPORT_INTERNAL, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--target-score",
        type=int,
        default=0,
        help="end the match when a player reaches this total (0: only when everyone has left)",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=5.0, help="seconds between heartbeats (default 5)"
    )
    parser.add_argument(
        "--sidecar-url", default=None, help="local API URL (default from SIDECAR_HOST/PORT)"
    )
    parser.add_argument(
        "--sidecar-wait",
        type=float,
        default=10.0,
        help="seconds to keep retrying while the sidecar is not up yet (default 10)",
    )
    parser.add_argument(
        "--no-events", action="store_true", help="do not follow the sidecar's event stream"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    port = args.port if args.port is not None else game_port_from_env(os.environ) or DEFAULT_PORT

    stop = threading.Event()
    received: list[str] = []
    wakeup_read, wakeup_write = socket.socketpair()
    wakeup_write.setblocking(False)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only record it: the loop notices through the wakeup socket and shuts down in order.
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.set_wakeup_fd(wakeup_write.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    client = SidecarClient(args.sidecar_url, startup_wait=args.sidecar_wait)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((args.host, port))
        log(f"listening on udp {args.host}:{sock.getsockname()[1]}, sidecar {client.base_url}")
        game = GameServer(sock, client, Match(args.target_score))
        if game.sidecar("ready", client.ready) is not None:
            log("told the sidecar we are ready")
        if not args.no_events:
            threading.Thread(
                target=watch_sidecar_events, args=(client,), name="sidecar-events", daemon=True
            ).start()

        def heartbeat_failed(exc: Exception) -> None:
            log(f"sidecar heartbeat failed: {exc}")

        with Heartbeat(client, args.heartbeat, on_error=heartbeat_failed):
            game.serve(stop, wakeup_read)

    signal.set_wakeup_fd(-1)
    wakeup_read.close()
    wakeup_write.close()
    online = len(game.match.online)
    log(f"shutdown: {received[0] if received else 'stop'} received, {online} players online, bye")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
