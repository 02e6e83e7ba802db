"""`demo --match`: the two matchmaker matches it plays, and the result each one delivers.

    played   one ticket per bot; each bot's ticket is reported as its handshake would
             (`POST /v1/players/connect {player_id, ticket_id}`: the example game's UDP
             protocol has no ticket), so every ticket arrives; the bots play, the game ends the
             match with its winner and scores, and the sidecar delivers that result
    no-show  one ticket per player; every player but the last reports its ticket through
             `POST /v1/players/connect`, the last never shows up, and the sidecar stops the
             deployment for `no_show` once its short timeout passes; it delivers that too

Both go through `POST /_emulator/matches` (the `MM_*` variables the matchmaker injects) with
`SIDECAR_RESULT_URL` pointed at the emulator's result sink (`--result-sink`,
`/_emulator/results`), which the demo reads once the deployment has terminated: exactly one
delivery per deployment, with its `Idempotency-Key`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

from sidecar.demo.timeline import Timeline
from sidecar.emulator import EmulatorError, EmulatorServer
from sidecar.errors import DemoError

# The played match's players join within a second of ready; the timeout only has to outlast a
# slow machine, and it is disarmed as soon as every ticket has arrived.
PLAYED_NO_SHOW_TIMEOUT = "20s"
# How long the no-show match's players have to arrive (SIDECAR_NO_SHOW_TIMEOUT).
NO_SHOW_TIMEOUT = "4s"
RESULTS_PATH = "/_emulator/results"


@dataclass(frozen=True)
class MatchPlan:
    """One matchmaker match of the demo: its tickets, its settings, how it should end."""

    name: str
    tickets: list[dict[str, Any]]
    no_show_timeout: str
    # The stop reason the match must end with; any other fails the demo.
    stop_reason: str
    # Whether the example's bots play it (else players only report their tickets).
    played: bool

    def settings(self, sink_url: str) -> dict[str, str]:
        return {
            "SIDECAR_NO_SHOW_TIMEOUT": self.no_show_timeout,
            "SIDECAR_MATCH_QUORUM": "all",
            "SIDECAR_RESULT_URL": sink_url,
            # Made up for this run; the sink records it as `Bearer <redacted>`.
            "SIDECAR_RESULT_TOKEN": secrets.token_hex(16),
        }


def played_match(players: int) -> MatchPlan:
    tickets = [{"team": f"team-{n % 2 + 1}"} for n in range(players)]
    return MatchPlan("played", tickets, PLAYED_NO_SHOW_TIMEOUT, "match_ended", played=True)


def no_show_match(players: int) -> MatchPlan:
    tickets = [{"team": f"team-{n % 2 + 1}"} for n in range(players)]
    return MatchPlan("no-show", tickets, NO_SHOW_TIMEOUT, "no_show", played=False)


@dataclass(frozen=True)
class MadeMatch:
    request_id: str
    match_id: str
    ticket_ids: list[str]


async def deploy_match(
    emulator: EmulatorServer,
    plan: MatchPlan,
    app: str,
    variables: list[dict[str, Any]],
    timeline: Timeline,
) -> MadeMatch:
    """`POST /_emulator/matches` for `plan`, its settings added to the deployment's `variables`."""
    sink_url = emulator.url + RESULTS_PATH
    settings = [
        {"key": key, "value": value, "is_hidden": key == "SIDECAR_RESULT_TOKEN"}
        for key, value in plan.settings(sink_url).items()
    ]
    status, body = await emulator.call(
        "POST",
        "/_emulator/matches",
        json={
            "app": app,
            "profile": "demo",
            "tickets": plan.tickets,
            "deploy": {"version": "demo", "environment_variables": [*variables, *settings]},
        },
    )
    if status != 201:
        raise EmulatorError(status, body)
    made = MadeMatch(str(body["request_id"]), str(body["match_id"]), list(body["ticket_ids"]))
    timeline.event(
        "emulator",
        f"POST /_emulator/matches -> request_id {made.request_id}, match {made.match_id}, "
        f"{len(made.ticket_ids)} tickets (MM_* injected), quorum all, no-show timeout "
        f"{plan.no_show_timeout}, result to {sink_url}",
    )
    return made


async def arrive(
    session: aiohttp.ClientSession,
    url: str,
    api_token: str,
    arrivals: list[tuple[str, str]],
    timeline: Timeline,
    step: str,
) -> None:
    """Each (player, ticket) connects with its ticket, as a game's handshake reports it
    (`POST /v1/players/connect {player_id, ticket_id}`; connecting is idempotent per player,
    so the game's own connect when the player joins changes nothing more)."""
    headers = {"Authorization": f"Bearer {api_token}"}
    for player, ticket in arrivals:
        body = {"player_id": player, "ticket_id": ticket}
        async with session.post(f"{url}/v1/players/connect", json=body, headers=headers) as answer:
            if answer.status >= 300:
                text = f"{answer.status}: {await answer.text()}"
                raise DemoError(step, f"POST /v1/players/connect answered {text}")
        timeline.event("players", f"{player} arrived with ticket {ticket}")


async def delivered_result(emulator: EmulatorServer, made: MadeMatch, step: str) -> str:
    """The one delivery the sink holds for `made`, described in one line; DemoError when it
    holds none or more than one (exactly one is accepted per deployment)."""
    status, body = await emulator.call("GET", RESULTS_PATH, params={"match_id": made.match_id})
    if status != 200 or not isinstance(body, dict):
        raise DemoError(step, f"GET {RESULTS_PATH} answered {status}: {body}")
    entries = [
        entry
        for entry in body.get("results") or []
        if (entry.get("body") or {}).get("request_id") == made.request_id
    ]
    if len(entries) != 1:
        raise DemoError(
            step, f"the result sink holds {len(entries)} deliveries of {made.request_id}, not 1"
        )
    return describe_delivery(entries[0])


def describe_delivery(entry: dict[str, Any]) -> str:
    body = entry.get("body") or {}
    result = body.get("result")
    parts = [
        f"the match result arrived once (Idempotency-Key {entry.get('idempotency_key')})",
        f"reason {body.get('reason')}",
        f"result {json.dumps(result, sort_keys=True)}" if result is not None else "no result",
        f"tickets arrived {body.get('arrived')}, players peak {body.get('players_peak')}",
        f"Authorization {entry.get('authorization')}",
    ]
    replays = entry.get("replays") or 0
    if replays:
        parts.append(f"{replays} repeated deliveries answered from the first")
    problems = entry.get("problems") or []
    if problems:
        parts.append("problems: " + "; ".join(str(problem) for problem in problems))
    return "; ".join(parts)
