"""Measurement 2b: the sidecar in three configurations, in the same run, so that a feature's cost
shows as a difference between rows and not between runs: plain; with the match data Edgegap's
matchmaker injects (a 5v5, 10 tickets, all of which arrive); and after traffic that includes 4xx
answers, which the access log writes at its default level. Each one's RSS after its session,
then its CPU time over the idle window, the three windows side by side."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import psutil

from benchmarks.core.harness import Children, Client, free_port, rss_mb, running, wait_http_ok
from benchmarks.core.memory import IdleCpu, IdleProbe, realistic_session

TEAM_SIZE = 5


# Identical sidecars differ by up to ~1 MB of RSS (heap layout), as much as the differences
# looked for: each configuration runs this many times, interleaved, and the median is kept.
COPIES = 3


@dataclass(frozen=True)
class VariantFigures:
    label: str
    calls: int
    errors_4xx: int  # calls answered 4xx on purpose
    rss_mb: float  # the median of the copies
    uss_mb: float
    idle: IdleCpu  # the copy with the median CPU time
    rss_range_mb: tuple[float, float] = (0.0, 0.0)  # lowest and highest of the copies


def match_env() -> tuple[dict[str, str], list[str]]:
    """The `MM_*` variables of a 5v5 (10 tickets, two teams of group ids), as the matchmaker
    injects them (the emulator's own builder), and the ticket ids."""
    from sidecar.emulator.matches import MatchBody, MatchTicket, build_match

    tickets = [
        MatchTicket(team=team, attributes={"region": "eu"})
        for team in ("red", "blue")
        for _ in range(TEAM_SIZE)
    ]
    match = build_match(MatchBody(app="bench", profile="5v5", tickets=tickets))
    return match.env, match.ticket_ids


def match_session(tickets: list[str]) -> Callable[[Client], int]:
    """The realistic session, with the matched players arriving first by their ticket (half by
    id, half by `ticket_id` on connect) and the game reading the match."""

    def session(client: Client) -> int:
        client.call("GET", "/v1/match")
        for i, ticket in enumerate(tickets):
            client.call("GET", f"/v1/match/tickets/{ticket}")
            body = {"player_id": ticket} if i % 2 else {"player_id": f"p-{i}", "ticket_id": ticket}
            client.call("POST", "/v1/players/connect", body)
        realistic_session(client)
        client.call("GET", "/v1/match")
        return 0

    return session


def session_with_4xx(client: Client) -> int:
    """The realistic session with 40 refused calls among it (each an INFO line of the access log,
    rate-limited to 10 per 10 s): what a game under development sends."""
    refused = [
        ("GET", "/v1/nope", None, 404),
        ("GET", "/v1/ready", None, 405),
        ("POST", "/v1/players/connect", {"player_id": ""}, 422),
        ("POST", "/v1/hold", b'{"seconds": ', 400),
    ]
    for _ in range(5):
        for method, path, body, status in refused:
            client.call(method, path, body, expect=status)
    realistic_session(client)
    for _ in range(5):
        for method, path, body, status in refused:
            client.call(method, path, body, expect=status)
    return 10 * len(refused)


def plain_session(client: Client) -> int:
    realistic_session(client)
    return 0


@dataclass(frozen=True)
class Variant:
    label: str
    env: dict[str, str]
    session: Callable[[Client], int]  # plays the session; returns the calls refused on purpose


def variants() -> list[Variant]:
    env, tickets = match_env()
    return [
        Variant("plain", {}, plain_session),
        Variant("with match data (5v5, 10 tickets)", env, match_session(tickets)),
        Variant("access log at its default level, after 40 4xx", {}, session_with_4xx),
    ]


@dataclass(frozen=True)
class _Copy:
    variant: Variant
    calls: int
    refused: int
    rss_mb: float
    uss_mb: float
    probe: IdleProbe


def _median_copy(copies: list[_Copy], key: Callable[[_Copy], float]) -> _Copy:
    return sorted(copies, key=key)[len(copies) // 2]


def _figures(copies: list[_Copy]) -> VariantFigures:
    idle = {id(copy): copy.probe.join() for copy in copies}
    by_rss = _median_copy(copies, lambda copy: copy.rss_mb)
    by_cpu = _median_copy(copies, lambda copy: idle[id(copy)].cpu_s or 0.0)
    rss = [copy.rss_mb for copy in copies]
    return VariantFigures(
        by_rss.variant.label,
        by_rss.calls,
        by_rss.refused,
        by_rss.rss_mb,
        by_rss.uss_mb,
        idle[id(by_cpu)],
        (min(rss), max(rss)),
    )


@contextmanager
def measured(
    children: Children, seconds: float, copies: int = COPIES
) -> Iterator[Callable[[], list[VariantFigures]]]:
    """Start every variant `copies` times (interleaved), play each one's session and read its
    memory, then start the idle windows (side by side) and yield; the callable waits for them
    and returns the figures, one row per variant. Every sidecar is killed on exit."""
    with ExitStack() as stack:
        started = []
        for _ in range(copies):
            for variant in variants():
                port = free_port()
                # A far health timeout: the idle sidecars keep an armed timer but never stop.
                env = {"SIDECAR_HEALTH_TIMEOUT": "10m", **variant.env}
                proc = stack.enter_context(running(children.spawn_sidecar(port, env)))
                started.append((variant, proc, port))
        played = []
        for variant, proc, port in started:
            wait_http_ok(port, proc)
            client = Client(port)
            refused = variant.session(client)
            client.close()
            uss = psutil.Process(proc.pid).memory_full_info().uss / 2**20
            played.append((variant, proc, client.calls, refused, rss_mb(proc.pid), uss))
        time.sleep(0.5)  # let the last connections close before the idle windows start
        runs = []
        for variant, proc, calls, refused, rss, uss in played:
            probe = IdleProbe(proc.pid, seconds)
            probe.start()
            runs.append(_Copy(variant, calls, refused, rss, uss, probe))

        def figures() -> list[VariantFigures]:
            labels = list(dict.fromkeys(run.variant.label for run in runs))
            return [
                _figures([run for run in runs if run.variant.label == label]) for label in labels
            ]

        yield figures
