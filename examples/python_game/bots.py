"""Simulated players for the example game server: real UDP clients, one thread each.

    python3 examples/python_game/bots.py --host 127.0.0.1 --port 7777 --count 4 --rounds 3

Every bot JOINs, waits until all bots have joined (so nobody leaves an empty server before the
last one arrives, which would end the match early), sends `--rounds` SCOREs with its running
total, then LEAVEs. A datagram without an answer is resent, and JOIN keeps trying for
`--join-wait` seconds because the server may still be starting. When the server says the match
is over the bot stops scoring and leaves. `run_bots()` is the same thing as a function for the
demo and the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class BotError(Exception):
    """The server did not answer a bot's command in time."""


class Bot:
    """One player with its own connected UDP socket."""

    def __init__(self, player_id: str, host: str, port: int, timeout: float, retries: int) -> None:
        self.player_id = player_id
        self.timeout = timeout
        self.retries = retries
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Connected, so only the server's datagrams reach us and a closed port raises an error.
        self.sock.connect((socket.gethostbyname(host), port))
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()

    def send(self, command: str, *args: str, wait: float = 0.0) -> list[str]:
        """Send one command until its reply arrives; return the reply's words.

        Replies echo the command and the player id, so a late answer to an earlier resend is
        recognised and skipped. `wait` extends the retries to that many seconds in total.
        """
        message = " ".join((command, self.player_id, *args)).encode()
        deadline = time.monotonic() + max(wait, self.timeout * self.retries)
        while time.monotonic() < deadline:
            try:
                self.sock.send(message)
                while True:
                    words = self.sock.recv(2048).decode("utf-8", "replace").split()
                    if words[1:3] == [command, self.player_id]:
                        return words
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                # Nothing bound yet (ICMP port unreachable): the server is still starting.
                time.sleep(min(self.timeout, 0.1))
        raise BotError(f"{self.player_id}: no answer to {command} from the server")


def run_bot(
    bot: Bot,
    rounds: int,
    rng: random.Random,
    all_joined: threading.Barrier,
    *,
    join_wait: float,
    interval: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Play one bot's session; returns its outcome."""
    outcome: dict[str, Any] = {"score": 0, "joined": False, "left": False, "match_over": False}
    try:
        reply = bot.send("JOIN", wait=join_wait)
        outcome["joined"] = reply[0] == "OK"
        outcome["match_over"] = not outcome["joined"]
        log(f"{bot.player_id}: {' '.join(reply)}")
    finally:
        # Everyone passes the barrier even when this bot failed, so no thread waits forever.
        with contextlib.suppress(threading.BrokenBarrierError):
            all_joined.wait()
    if outcome["joined"]:
        total = 0
        for _ in range(rounds):
            time.sleep(interval)
            total += rng.randint(1, 10)
            reply = bot.send("SCORE", str(total))
            log(f"{bot.player_id}: {' '.join(reply)}")
            if reply[0] != "OK":
                outcome["match_over"] = True
                break
            outcome["score"] = int(reply[3])
        reply = bot.send("LEAVE")
        outcome["left"] = reply[0] == "OK"
        log(f"{bot.player_id}: {' '.join(reply)}")
    return outcome


def run_bots(
    host: str = "127.0.0.1",
    port: int = 7777,
    count: int = 4,
    rounds: int = 3,
    *,
    seed: int | None = None,
    interval: float = 0.1,
    timeout: float = 0.5,
    retries: int = 6,
    join_wait: float = 10.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run `count` bots concurrently against the server; returns `{"bots": {id: outcome}}`.

    Each outcome is `{"score", "joined", "left", "match_over"}`. `seed` makes the points
    reproducible. Raises BotError when a bot gets no answer at all.
    """
    if count < 1 or rounds < 0:
        raise ValueError("count must be >= 1 and rounds >= 0")
    master = random.Random(seed)
    all_joined = threading.Barrier(count, timeout=join_wait + timeout * retries)
    bots = [Bot(f"bot-{n}", host, port, timeout, retries) for n in range(1, count + 1)]
    try:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="bot") as pool:
            futures = {
                bot.player_id: pool.submit(
                    run_bot,
                    bot,
                    rounds,
                    random.Random(master.random()),
                    all_joined,
                    join_wait=join_wait,
                    interval=interval,
                    log=log,
                )
                for bot in bots
            }
            outcomes = {player_id: future.result() for player_id, future in futures.items()}
    finally:
        for bot in bots:
            bot.close()
    return {"bots": outcomes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="game server address")
    parser.add_argument("--port", type=int, default=7777, help="game server UDP port")
    parser.add_argument("--count", type=int, default=4, help="number of bots (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="scores each bot sends (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the points")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between scores")
    parser.add_argument(
        "--join-wait", type=float, default=10.0, help="seconds to wait for the server to come up"
    )
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(f"[bots] {line}", flush=True)

    try:
        summary = run_bots(
            args.host,
            args.port,
            args.count,
            args.rounds,
            seed=args.seed,
            interval=args.interval,
            join_wait=args.join_wait,
            log=log,
        )
    except (BotError, OSError) as exc:
        print(f"[bots] error: {exc}", file=sys.stderr, flush=True)
        return 1
    scores = {player: outcome["score"] for player, outcome in summary["bots"].items()}
    log(f"done: {scores}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
