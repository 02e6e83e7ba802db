"""The emulator's matchmaker rehearsal: `POST /_emulator/matches` (a deployment with the `MM_*`
variables of a match, SPEC §12 "Emulator") and the result sink of `--result-sink`
(`POST/GET /_emulator/results`), over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer
from sidecar.emulator.faults import FaultSpec
from sidecar.emulator.matches import MatchBody, build_match
from sidecar.emulator.options import add_arguments, options_from_args
from sidecar.errors import UsageError
from tests.conftest import ROOT

TOKEN = "matches-api-token-1234"
GAME_UNDER_SIDECAR = ROOT / "examples" / "python_game" / "server.py"
# A tiny game: prints its MM_* variables as one JSON line, then idles until stopped.
PRINT_ENV = """
import json, os, time
print("MM " + json.dumps({k: v for k, v in os.environ.items() if k.startswith("MM_")}),
      flush=True)
time.sleep(120)
"""
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    options = EmulatorOptions(port=0, status_step_seconds=0.0, api_token=TOKEN, result_sink=True)
    async with EmulatorServer(options) as server:
        yield server


def match_body(**extra: Any) -> dict[str, Any]:
    return {"app": "simulated", "tickets": [{}, {}], **extra}


class TestMatchVariables:
    def test_shapes_of_the_reference(self) -> None:
        """Ids generated (20 lowercase alphanumerics) or given; one group per ticket unless
        shared; MM_TEAMS maps teams to group ids; equality and intersection from the
        attributes; the match id in the mock's form."""
        body = MatchBody.model_validate(
            {
                "app": "game",
                "profile": "duo-ranked",
                "tickets": [
                    {
                        "team": "red",
                        "group": "party",
                        "attributes": {"mode": "duo", "maps": ["Mill", "Harbor"], "elo": 3},
                    },
                    {
                        "id": "t2",
                        "team": "red",
                        "group": "party",
                        "attributes": {"mode": "duo", "maps": ["Harbor"]},
                    },
                    {
                        "id": "t3",
                        "team": "blue",
                        "attributes": {"mode": "duo", "maps": ["Harbor", "Mill"]},
                    },
                ],
            }
        )
        now = datetime(2026, 3, 2, 10, 0, 5, 123456, tzinfo=UTC)
        match = build_match(body, now)
        first, second, third = match.ticket_ids
        assert re.fullmatch(r"[a-z0-9]{20}", first)
        assert (second, third) == ("t2", "t3")
        env = match.env
        assert (
            match.match_id
            == env["MM_MATCH_ID"]
            == "duo-ranked_initial-2026-03-02T10:00:05.1234560Z"
        )
        assert env["MM_MATCH_PROFILE"] == "duo-ranked"
        assert json.loads(env["MM_TICKET_IDS"]) == match.ticket_ids
        ticket = json.loads(env[f"MM_TICKET_{first}"])
        assert set(ticket) == {"id", "created_at", "player_ip", "group_id", "team_id", "attributes"}
        assert ticket["id"] == first
        assert ticket["team_id"] == "red"
        assert ticket["group_id"] == "party"
        assert CREATED_AT.match(ticket["created_at"])
        assert ticket["created_at"] < "2026-03-02T10:00:05"
        assert ticket["player_ip"] == "127.0.0.1"
        groups = json.loads(env["MM_GROUPS"])
        third_group = json.loads(env["MM_TICKET_t3"])["group_id"]
        assert groups == {"party": [first, "t2"], third_group: ["t3"]}
        assert re.fullmatch(r"[0-9a-f-]{36}", third_group)  # a UUID, as the matchmaker's
        assert json.loads(env["MM_TEAMS"]) == {"red": ["party"], "blue": [third_group]}
        assert json.loads(env["MM_EQUALITY"]) == {"mode": "duo"}
        assert json.loads(env["MM_INTERSECTION"]) == {"maps": ["Harbor"]}
        assert env["MM_EXPANSION"] == "initial"

    def test_no_teams(self) -> None:
        match = build_match(MatchBody.model_validate({"app": "g", "tickets": [{}, {}]}))
        assert json.loads(match.env["MM_TEAMS"]) == {}
        groups = json.loads(match.env["MM_GROUPS"])
        assert sorted(len(members) for members in groups.values()) == [1, 1]
        for tid in match.ticket_ids:
            assert json.loads(match.env[f"MM_TICKET_{tid}"])["team_id"] is None


class TestMatchesRoute:
    async def test_creates_a_deployment_with_the_variables(self, emu: EmulatorServer) -> None:
        """201 {request_id, match_id, ticket_ids}; the deployment's env has the MM_* variables
        beside the ARBITRIUM_* ones and the deploy's own variables."""
        variables = [{"key": "SIDECAR_NO_SHOW_TIMEOUT", "value": "5s"}]
        status, body = await emu.call(
            "POST",
            "/_emulator/matches",
            json=match_body(
                profile="casual",
                tickets=[{"id": "alice"}, {"id": "bob", "attributes": {"mode": "ffa"}}],
                deploy={"version": "v7", "environment_variables": variables, "tags": ["m"]},
            ),
        )
        assert status == 201, body
        assert set(body) == {"request_id", "match_id", "ticket_ids"}
        assert body["ticket_ids"] == ["alice", "bob"]
        assert body["match_id"].startswith("casual_initial-")
        env = await emu.env(body["request_id"])
        assert env["MM_MATCH_ID"] == body["match_id"]
        assert env["MM_TICKET_IDS"] == '["alice", "bob"]'
        assert json.loads(env["MM_TICKET_bob"])["attributes"] == {"mode": "ffa"}
        assert env["SIDECAR_NO_SHOW_TIMEOUT"] == "5s"
        assert env["ARBITRIUM_REQUEST_ID"] == body["request_id"]
        deployment = await emu.status(body["request_id"])
        assert deployment["app_version"] == "v7"
        assert deployment["tags"] == ["m"]

    @pytest.mark.parametrize(
        ("body", "needle"),
        [
            ({"app": "simulated", "tickets": []}, "tickets"),
            ({"tickets": [{}]}, "app"),
            (match_body(tickets=[{"id": "a b"}]), "tickets.0.id"),
            (match_body(tickets=[{"id": "IDS"}]), "tickets.0.id"),
            # MM_TICKET_bot-1 would not survive the shell that starts a backed deployment.
            (match_body(tickets=[{"id": "bot-1"}]), "tickets.0.id"),
            (match_body(tickets=[{"id": "x"}, {"id": "x"}]), "same id"),
            (match_body(tickets=[{"team": "a"}, {}]), "every ticket or to none"),
            (
                match_body(tickets=[{"team": "a", "group": "g"}, {"team": "b", "group": "g"}]),
                "split",
            ),
            (match_body(tickets=[{"name": "x"}]), "tickets.0.name"),
            (match_body(tickets=[{"attributes": {"a": "x" * 5000}}]), "4096"),
            (match_body(deploy={"application": "other"}), "deploy.application"),
            (match_body(deploy={"version": 3}), "deploy.version"),
            (match_body(deploy={"bogus": 1}), "deploy.bogus"),
            (
                match_body(
                    deploy={"environment_variables": [{"key": "MM_MATCH_ID", "value": "x"}]}
                ),
                "MM_MATCH_ID",
            ),
        ],
    )
    async def test_bad_bodies_are_400(
        self, emu: EmulatorServer, body: dict[str, Any], needle: str
    ) -> None:
        status, answer = await emu.call("POST", "/_emulator/matches", json=body)
        assert status == 400, answer
        assert needle in json.dumps(answer)
        assert (await emu.call("GET", "/v1/deployments"))[1]["total_count"] == 0

    async def test_not_json_is_400_and_auth_is_the_control_apis(self, emu: EmulatorServer) -> None:
        status, _ = await emu.call("POST", "/_emulator/matches", data=b"{nope")
        assert status == 400
        status, _ = await emu.call("POST", "/_emulator/matches", json=match_body(), auth=False)
        assert status == 401

    @pytest.mark.timeout(60)
    async def test_a_backed_game_sees_the_variables(self, tmp_path: Path) -> None:
        """The process of the match's deployment gets the variables in its environment."""
        script = tmp_path / "game.py"
        script.write_text(PRINT_ENV)
        options = EmulatorOptions(
            port=0,
            status_step_seconds=0.0,
            game_port_check=False,
            apps={"game": f"{sys.executable} {script}"},
        )
        async with EmulatorServer(options) as emu:
            status, body = await emu.call(
                "POST",
                "/_emulator/matches",
                json={"app": "game", "tickets": [{"team": "a"}, {"team": "b"}]},
            )
            assert status == 201, body
            rid = body["request_id"]
            await emu.wait_for_status(rid, "Status.READY", 30)
            seen: dict[str, str] = {}
            async with asyncio.timeout(20):
                while not seen:
                    _, logs = await emu.call("GET", f"/_emulator/deployments/{rid}/logs")
                    for line in (logs or "").splitlines():
                        if line.startswith("MM "):
                            seen = json.loads(line[3:])
                    await asyncio.sleep(0.1)
            assert json.loads(seen["MM_TICKET_IDS"]) == body["ticket_ids"]
            assert seen["MM_MATCH_ID"] == body["match_id"]
            assert set(json.loads(seen["MM_TEAMS"])) == {"a", "b"}
            assert {f"MM_TICKET_{tid}" for tid in body["ticket_ids"]} <= set(seen)

    @pytest.mark.timeout(90)
    async def test_the_real_sidecar_reads_the_match(self) -> None:
        """`edgegap-sidecar run` as the backed command: its GET /v1/match (through the
        emulator's proxy) shows the tickets, their teams, and nobody arrived."""
        command = f"{sys.executable} -m sidecar run -- {sys.executable} {GAME_UNDER_SIDECAR}"
        options = EmulatorOptions(
            port=0, status_step_seconds=0.0, isolation="ports", apps={"game": command}
        )
        async with EmulatorServer(options) as emu:
            status, body = await emu.call(
                "POST",
                "/_emulator/matches",
                json={
                    "app": "game",
                    "profile": "duo",
                    "tickets": [
                        {"id": "alice", "team": "red", "attributes": {"mode": "duo"}},
                        {"id": "bob", "team": "blue"},
                    ],
                },
            )
            assert status == 201, body
            rid = body["request_id"]
            await emu.wait_for_status(rid, "Status.READY", 60)
            proxied = f"/_emulator/deployments/{rid}/sidecar/v1/match"
            answer: Any = None
            async with asyncio.timeout(30):
                while True:
                    code, answer = await emu.call("GET", proxied)
                    if code == 200:
                        break
                    await asyncio.sleep(0.2)
            assert answer["match_id"] == body["match_id"]
            assert answer["profile"] == "duo"
            assert answer["expansion"] == "initial"
            assert answer["expected"] == 2
            assert answer["arrived"] == 0
            tickets = {ticket["id"]: ticket for ticket in answer["tickets"]}
            assert set(tickets) == {"alice", "bob"}
            assert tickets["alice"]["team_id"] == "red"
            assert tickets["alice"]["attributes"] == {"mode": "duo"}
            assert answer["teams"] == {"red": ["alice"], "blue": ["bob"]}


def delivery(**extra: Any) -> dict[str, Any]:
    return {
        "request_id": "0123456789ab",
        "match_id": "duo_initial-2026-03-02T10:00:05.1234567Z",
        "reason": "match_ended",
        "detail": None,
        "result": {"winner": "red"},
        "players_peak": 2,
        "arrived": 2,
        "started_at": "2026-03-02T10:00:06Z",
        "ended_at": "2026-03-02T10:09:00.5Z",
        **extra,
    }


KEY = "0123456789ab:duo_initial-2026-03-02T10:00:05.1234567Z"


async def post_result(
    url: str, body: Any, key: str | None = KEY, token: str | None = "s3cret-result-token"
) -> tuple[int, Any, dict[str, str]]:
    """A delivery as the sidecar sends it, with a plain HTTP client (no management token)."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/_emulator/results", data=json.dumps(body), headers=headers) as answer,
    ):
        return answer.status, await answer.json(), dict(answer.headers)


class TestResultSink:
    async def test_delivery_listed_and_idempotent(self, emu: EmulatorServer) -> None:
        """A delivery is kept (201) and listed; a repeat with the same key answers the first
        answer and stores nothing new; the bearer token is recorded redacted."""
        status, first, _ = await post_result(emu.url, delivery())
        assert status == 201, first
        assert first["delivered"] is True
        assert first["idempotency_key"] == KEY
        again, second, headers = await post_result(emu.url, delivery(reason="other"))
        assert (again, second) == (201, first)
        assert headers["Idempotent-Replayed"] == "true"
        status, listed = await emu.call("GET", "/_emulator/results")
        assert status == 200
        (entry,) = listed["results"]
        assert entry["body"] == delivery()
        assert entry["idempotency_key"] == KEY
        assert entry["replays"] == 1
        assert entry["problems"] == []
        assert entry["authorization"] == "Bearer <redacted>"
        assert "s3cret-result-token" not in json.dumps(listed)
        by_match = await emu.call("GET", "/_emulator/results?match_id=nope")
        assert by_match[1]["results"] == []

    async def test_contract_problems_are_noted(self, emu: EmulatorServer) -> None:
        """No key, or a key that is not <request_id>:<match_id or none>: kept, with a note."""
        assert (await post_result(emu.url, delivery(match_id=None), key=None, token=None))[0] == 201
        assert (await post_result(emu.url, delivery(), key="wrong"))[0] == 201
        _, listed = await emu.call("GET", "/_emulator/results")
        first, second = listed["results"]
        assert "no Idempotency-Key" in first["problems"][0]
        assert first["authorization"] is None
        assert "0123456789ab:duo_initial" in second["problems"][0]
        assert (await emu.call("DELETE", "/_emulator/results"))[1] == {"cleared": 2}

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ([1], ""),
            ({k: v for k, v in delivery().items() if k != "reason"}, "reason"),
            (delivery(players_peak="2"), "players_peak"),
            (delivery(arrived=True), "arrived"),
            (delivery(ended_at="yesterday"), "ended_at"),
            (delivery(started_at="2026-03-02"), "started_at"),
            (delivery(match_id=7), "match_id"),
        ],
    )
    async def test_not_a_delivery_is_400(self, emu: EmulatorServer, body: Any, field: str) -> None:
        status, answer, _ = await post_result(emu.url, body)
        assert status == 400, answer
        assert field in [detail["field"] for detail in answer["details"]]
        assert (await emu.call("GET", "/_emulator/results"))[1]["results"] == []

    async def test_wrong_content_type_and_control_auth(self, emu: EmulatorServer) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.post(emu.url + "/_emulator/results", data=b"{}") as answer,
        ):
            assert answer.status == 415
        assert (await emu.call("GET", "/_emulator/results", auth=False))[0] == 401

    async def test_faults_then_the_key_still_counts_once(self, emu: EmulatorServer) -> None:
        """Faults target `result_sink`: the next N answers a chosen status; the retry with the
        same key is then accepted once."""
        status, _ = await emu.call(
            "POST",
            "/_emulator/faults",
            json={"target": "result_sink", "status": 503, "count": 2, "retry_after": 1},
        )
        assert status == 201
        for _ in range(2):
            status, _, headers = await post_result(emu.url, delivery())
            assert status == 503
            assert headers["Retry-After"] == "1"
        assert (await post_result(emu.url, delivery()))[0] == 201
        assert (await post_result(emu.url, delivery()))[0] == 201
        (entry,) = (await emu.call("GET", "/_emulator/results"))[1]["results"]
        assert entry["replays"] == 1

    async def test_delay_fault_from_options(self) -> None:
        options = EmulatorOptions(
            port=0,
            result_sink=True,
            faults=(FaultSpec(target="result_sink", status=None, delay_seconds=0.3),),
        )
        async with EmulatorServer(options) as emu:
            started = asyncio.get_running_loop().time()
            assert (await post_result(emu.url, delivery()))[0] == 201
            assert asyncio.get_running_loop().time() - started >= 0.3

    async def test_absent_without_the_flag(self) -> None:
        async with EmulatorServer(EmulatorOptions(port=0)) as emu:
            assert (await post_result(emu.url, delivery()))[0] == 404

    def test_flags(self) -> None:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        ns = parser.parse_args(
            ["--result-sink", "--result-sink-fault", "503x2", "--result-sink-delay", "1.5"]
        )
        options = options_from_args(ns)
        assert options.result_sink is True
        assert [(f.target, f.status, f.count, f.delay_seconds) for f in options.faults] == [
            ("result_sink", 503, 2, 0.0),
            ("result_sink", None, 1, 1.5),
        ]
        with pytest.raises(UsageError, match="need --result-sink"):
            options_from_args(parser.parse_args(["--result-sink-fault", "503"]))
        with pytest.raises(UsageError, match="--result-sink-fault"):
            options_from_args(parser.parse_args(["--result-sink", "--result-sink-fault", "5x"]))


def test_the_routes_are_documented() -> None:
    """docs/emulator.md names the matches and result-sink routes (the sink's exist only with
    --result-sink, so the general docs test does not see them)."""
    from sidecar.emulator import create_app

    doc = (ROOT / "docs" / "emulator.md").read_text()
    app = create_app(EmulatorOptions(port=0, result_sink=True))
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and path.startswith(("/_emulator/matches", "/_emulator/results")):
            assert f"{route.method} {path}" in doc


class TestDemoMatch:
    @pytest.mark.timeout(120)
    def test_a_played_match_and_a_no_show_both_deliver_their_result(self) -> None:
        """`demo --match`: two matches of 3 tickets through POST /_emulator/matches, with the
        emulator's result sink. In the first every ticket arrives, the bots play, the game ends
        the match and its result (winner, scores) reaches the sink once, under the key of its
        deployment and match; in the second two players arrive with their tickets, the third
        never does: the sidecar stops it for no_show, the stop record names the missing
        ticket, and that result reaches the sink once too. No token is printed."""
        import os
        import subprocess

        from sidecar.config import without_sidecar_variables

        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "demo", "--match", "--players", "3"],
            cwd=ROOT,
            env=without_sidecar_variables(os.environ),
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        assert "two matches of 3 tickets" in out
        assert out.count("POST /_emulator/matches -> request_id") == 2
        assert out.count(" arrived with ticket ") == 3 + 2
        assert out.count(" never shows up\n") == 1
        played, no_show = [
            json.loads(line.removeprefix("  | "))
            for line in out.splitlines()
            if line.startswith("  | {") and '"sidecar.stop"' in line
        ]
        assert played["reason"] == "match_ended"
        assert set(played["match_result"]["scores"]) == {"bot-1", "bot-2", "bot-3"}
        assert (played["match"]["expected"], played["match"]["arrived"]) == (3, 3)
        assert no_show["reason"] == "no_show"
        assert (no_show["match"]["expected"], no_show["match"]["arrived"]) == (3, 2)
        assert len(no_show["match"]["missing"]) == 1
        assert played["result_delivery"] == no_show["result_delivery"] == "delivered"

        arrived = [line for line in out.splitlines() if "the match result arrived once" in line]
        assert len(arrived) == 2, out
        for line, record in zip(arrived, (played, no_show), strict=True):
            key = f"{record['request_id']}:{record['match_id']}"
            assert f"(Idempotency-Key {key})" in line
            assert f"reason {record['reason']}" in line
            assert "Authorization Bearer <redacted>" in line
        assert '"winner": ' in arrived[0]
        assert "no result" in arrived[1]
        last = out.splitlines()[-1]
        assert last.startswith("demo ok in "), last
        assert "stopped itself (match_ended)" in last
        assert "stopped itself (no_show)" in last
        assert last.count("result delivered once") == 2
        assert "token=" not in out.replace("/_emulator/ui#token=", "")

    def test_match_and_agones_are_exclusive(self) -> None:
        from sidecar.demo import add_arguments as demo_arguments
        from sidecar.demo import options_from_args as demo_options

        parser = argparse.ArgumentParser()
        demo_arguments(parser)
        assert demo_options(parser.parse_args(["--match"])).match is True
        with pytest.raises(UsageError, match="--agones"):
            demo_options(parser.parse_args(["--match", "--agones"]))


# A game that delivers a result itself, to the origin of its ARBITRIUM_DELETE_URL, as a sidecar
# with SIDECAR_RESULT_URL=<that origin>/_emulator/results would.
DELIVER = """
import json, os, time, urllib.parse, urllib.request
origin = urllib.parse.urlsplit(os.environ["ARBITRIUM_DELETE_URL"])
rid = os.environ["ARBITRIUM_REQUEST_ID"]
body = {"request_id": rid, "match_id": os.environ["MM_MATCH_ID"], "reason": "match_ended",
        "detail": None, "result": None, "players_peak": 0, "arrived": 0,
        "started_at": None, "ended_at": "2026-03-02T10:09:00Z"}
request = urllib.request.Request(
    f"{origin.scheme}://{origin.netloc}/_emulator/results", data=json.dumps(body).encode(),
    headers={"Content-Type": "application/json", "Authorization": "Bearer from-inside",
             "Idempotency-Key": rid + ":" + os.environ["MM_MATCH_ID"]})
print("DELIVERED", urllib.request.urlopen(request, timeout=5).status, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(60)
async def test_a_deployment_reaches_the_sink_in_its_isolation(tmp_path: Path) -> None:
    """The sink answers inside a backed deployment at the emulator's own origin (a network
    namespace where available), as ARBITRIUM_DELETE_URL does."""
    script = tmp_path / "deliver.py"
    script.write_text(DELIVER)
    options = EmulatorOptions(
        port=0,
        status_step_seconds=0.0,
        isolation="auto",
        game_port_check=False,
        result_sink=True,
        apps={"game": f"{sys.executable} {script}"},
    )
    async with EmulatorServer(options) as emu:
        status, body = await emu.call(
            "POST", "/_emulator/matches", json={"app": "game", "tickets": [{}]}
        )
        assert status == 201, body
        results: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while not results:
                results = (await emu.call("GET", "/_emulator/results"))[1]["results"]
                await asyncio.sleep(0.1)
        (entry,) = results
        assert entry["body"]["request_id"] == body["request_id"]
        assert entry["body"]["match_id"] == body["match_id"]
        assert entry["problems"] == []
        assert entry["authorization"] == "Bearer <redacted>"
