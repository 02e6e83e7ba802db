"""The match over real loopback HTTP (SPEC §12): GET /v1/match, tickets, ticket_id on connect,
strict mode, status and metrics, and the no_show stop record of a real sidecar process."""

from __future__ import annotations

import json
import typing

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from sidecar import responses
from sidecar.lifecycle import TIMER_NAMES
from sidecar.status_command import render_table
from tests.conftest import Launch, SidecarFactory

T1, T2, T3 = "aaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaaaaaa3"


def ticket(ticket_id: str, team: str, group: str) -> str:
    return json.dumps(
        {
            "id": ticket_id,
            "created_at": "2026-03-02T09:59:58.100000Z",
            "player_ip": "203.0.113.7",
            "group_id": group,
            "team_id": team,
            "attributes": {"selected_map": ["Mill"]},
        }
    )


MATCH = {
    "MM_MATCH_ID": "duo_initial-2026",
    "MM_MATCH_PROFILE": "duo",
    "MM_EXPANSION_STAGE": "initial",
    "MM_TICKET_IDS": json.dumps([T1, T2, T3]),
    f"MM_TICKET_{T1}": ticket(T1, "red", "g1"),
    f"MM_TICKET_{T2}": ticket(T2, "red", "g1"),
    f"MM_TICKET_{T3}": ticket(T3, "blue", "g2"),
    "MM_GROUPS": json.dumps({"g1": [T1, T2], "g2": [T3]}),
    "MM_TEAMS": json.dumps({"red": ["g1"], "blue": ["g2"]}),
}


class TestMatchDocument:
    async def test_the_match_and_its_arrivals(self, sidecar: SidecarFactory) -> None:
        """GET /v1/match shows the tickets, teams, quorum and the no-show deadline."""
        sc = await sidecar(environ=MATCH, SIDECAR_MATCH_QUORUM="teams")
        await sc.call("POST", "/v1/ready")
        await sc.call("POST", "/v1/players/connect", {"player_id": "p1", "ticket_id": T3})
        status, body = await sc.call("GET", "/v1/match")
        assert status == 200
        assert {k: v for k, v in body.items() if k not in ("tickets", "no_show_deadline_s")} == {
            "match_id": "duo_initial-2026",
            "profile": "duo",
            "expansion": "initial",
            "expected": 3,
            "arrived": 1,
            "quorum": "teams",
            "teams": {"red": [T1, T2], "blue": [T3]},
            "result_delivery": "off",
        }
        assert 59 < body["no_show_deadline_s"] <= 60
        assert [t["id"] for t in body["tickets"]] == [T1, T2, T3]
        assert body["tickets"][2] == {
            "id": T3,
            "team_id": "blue",
            "group_id": "g2",
            "player_ip": "203.0.113.7",
            "attributes": {"selected_map": ["Mill"]},
            "arrived": True,
            "player_id": "p1",
        }
        assert body["tickets"][0]["arrived"] is False

    async def test_without_match_data(self, sidecar: SidecarFactory) -> None:
        """No MM_TICKET_IDS: no tickets, no teams, nothing expected."""
        sc = await sidecar()
        status, body = await sc.call("GET", "/v1/match")
        assert status == 200
        assert body == {
            "match_id": None,
            "profile": None,
            "expansion": None,
            "expected": 0,
            "arrived": 0,
            "quorum": 1,
            "no_show_deadline_s": None,
            "tickets": [],
            "teams": {},
            "result_delivery": "off",
        }

    async def test_the_no_show_deadline_is_null_once_the_quorum_is_met(
        self, sidecar: SidecarFactory
    ) -> None:
        """An arrival meeting the quorum disarms the no-show."""
        sc = await sidecar(environ=MATCH)
        await sc.call("POST", "/v1/ready")
        await sc.call("POST", "/v1/players/connect", {"player_id": T2})
        _, body = await sc.call("GET", "/v1/match")
        assert body["no_show_deadline_s"] is None
        _, status = await sc.call("GET", "/v1/status")
        assert "no_show" not in status["timers"]


class TestTickets:
    async def test_a_game_checks_a_joiners_ticket(self, sidecar: SidecarFactory) -> None:
        """GET /v1/match/tickets/{id}: the ticket, or 404 unknown_ticket."""
        sc = await sidecar(environ=MATCH)
        status, body = await sc.call("GET", f"/v1/match/tickets/{T1}")
        assert status == 200
        assert (body["id"], body["team_id"], body["arrived"]) == (T1, "red", False)
        status, body = await sc.call("GET", "/v1/match/tickets/not-a-ticket")
        assert (status, body["error"]["code"]) == (404, "unknown_ticket")

    async def test_no_ticket_without_match_data(self, sidecar: SidecarFactory) -> None:
        """Without match data every ticket is unknown."""
        sc = await sidecar()
        status, body = await sc.call("GET", f"/v1/match/tickets/{T1}")
        assert (status, body["error"]["code"]) == (404, "unknown_ticket")


class TestConnect:
    async def test_ticket_id_on_connect_arrives_the_ticket(self, sidecar: SidecarFactory) -> None:
        """A connect naming a ticket marks it arrived; the player counts as usual."""
        sc = await sidecar(environ=MATCH)
        status, body = await sc.call(
            "POST", "/v1/players/connect", {"player_id": "alice", "ticket_id": T1}
        )
        assert (status, body) == (200, {"count": 1})
        _, ticket = await sc.call("GET", f"/v1/match/tickets/{T1}")
        assert (ticket["arrived"], ticket["player_id"]) == (True, "alice")
        await sc.call("POST", "/v1/players/disconnect", {"player_id": "alice"})
        _, ticket = await sc.call("GET", f"/v1/match/tickets/{T1}")
        assert ticket["arrived"] is True  # an arrived ticket stays arrived

    async def test_an_unknown_ticket_is_422(self, sidecar: SidecarFactory) -> None:
        """A ticket that is not expected is 422 unknown_ticket, and nobody is added."""
        sc = await sidecar(environ=MATCH)
        status, body = await sc.call(
            "POST", "/v1/players/connect", {"player_id": "alice", "ticket_id": "nope"}
        )
        assert (status, body["error"]["code"]) == (422, "unknown_ticket")
        assert (await sc.call("GET", "/v1/players"))[1] == {"count": 0, "ids": []}

    async def test_any_ticket_is_422_without_match_data(self, sidecar: SidecarFactory) -> None:
        """No MM_TICKET_IDS: a connect naming a ticket is 422 unknown_ticket."""
        sc = await sidecar()
        status, body = await sc.call(
            "POST", "/v1/players/connect", {"player_id": "alice", "ticket_id": T1}
        )
        assert (status, body["error"]["code"]) == (422, "unknown_ticket")

    async def test_disconnect_takes_no_ticket(self, sidecar: SidecarFactory) -> None:
        """ticket_id belongs to connect only: elsewhere it is an unknown field (422)."""
        sc = await sidecar(environ=MATCH)
        status, body = await sc.call(
            "POST", "/v1/players/disconnect", {"player_id": "alice", "ticket_id": T1}
        )
        assert (status, body["error"]["code"]) == (422, "invalid_body")


class TestStrict:
    async def test_strangers_are_403_and_change_nothing(self, sidecar: SidecarFactory) -> None:
        """SIDECAR_MATCH_STRICT: a player bringing no ticket is refused; ticket holders pass."""
        sc = await sidecar(environ=MATCH, SIDECAR_MATCH_STRICT="true")
        status, body = await sc.call("POST", "/v1/players/connect", {"player_id": "stranger"})
        assert (status, body["error"]["code"]) == (403, "not_in_match")
        _, roster = await sc.call("GET", "/v1/players")
        assert roster == {"count": 0, "ids": []}
        assert (await sc.call("GET", "/v1/status"))[1]["state"] == "starting"
        assert (await sc.call("POST", "/v1/players/connect", {"player_id": T1}))[0] == 200
        named = {"player_id": "bob", "ticket_id": T2}
        assert (await sc.call("POST", "/v1/players/connect", named))[0] == 200

    async def test_a_roster_of_strangers_or_a_count_is_403(self, sidecar: SidecarFactory) -> None:
        """PUT /v1/players naming a non-ticket id, or by count, is refused and changes
        nothing; a roster of tickets is taken."""
        sc = await sidecar(environ=MATCH, SIDECAR_MATCH_STRICT="true")
        for body in ({"player_ids": [T1, "stranger"]}, {"count": 2}):
            status, answer = await sc.call("PUT", "/v1/players", body)
            assert (status, answer["error"]["code"]) == (403, "not_in_match")
        assert (await sc.call("GET", "/v1/players"))[1]["count"] == 0
        status, answer = await sc.call("PUT", "/v1/players", {"player_ids": [T1, T3]})
        assert (status, answer["count"]) == (200, 2)

    async def test_strict_needs_match_data(self, sidecar: SidecarFactory) -> None:
        """Without match data strict mode does not apply."""
        sc = await sidecar(SIDECAR_MATCH_STRICT="true")
        assert (await sc.call("POST", "/v1/players/connect", {"player_id": "anyone"}))[0] == 200
        assert (await sc.call("PUT", "/v1/players", {"count": 3}))[0] == 200


class TestStatusAndMetrics:
    async def test_status_and_metrics_show_the_match(self, sidecar: SidecarFactory) -> None:
        """Status has match {match_id, expected, arrived}; metrics the same figures."""
        sc = await sidecar(environ=MATCH)
        await sc.call("POST", "/v1/players/connect", {"player_id": T1})
        _, status = await sc.call("GET", "/v1/status")
        assert status["match"] == {"match_id": "duo_initial-2026", "expected": 3, "arrived": 1}
        async with sc.http.get(sc.url + "/metrics") as response:
            text = await response.text()
        samples = {
            (sample.name, sample.labels.get("match_id")): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        assert samples[("edgegap_sidecar_match_expected_players", None)] == 3
        assert samples[("edgegap_sidecar_match_arrived_players", None)] == 1
        assert samples[("edgegap_sidecar_match_info", "duo_initial-2026")] == 1

    async def test_status_without_match_data(self, sidecar: SidecarFactory) -> None:
        """No match data: expected 0; the match id comes from match start."""
        sc = await sidecar()
        _, status = await sc.call("POST", "/v1/match/start", {"match_id": "m-7"})
        assert status["match"] == {"match_id": "m-7", "expected": 0, "arrived": 0}

    def test_the_status_command_shows_the_arrivals(self) -> None:
        """`edgegap-sidecar status` shows how many of the expected players arrived."""
        table = render_table(
            {
                "state": "ready",
                "match_id": "m",
                "match": {"match_id": "m", "expected": 3, "arrived": 1},
            }
        )
        assert "match  m, 1 of 3 arrived\n" in table

    def test_the_documented_timer_names_are_the_lifecycles(self) -> None:
        """The OpenAPI timer names are the lifecycle's table plus the drain and the hold."""
        assert set(typing.get_args(responses.TimerName)) == {*TIMER_NAMES.values(), "drain", "hold"}


class TestNoShowStop:
    async def test_the_stop_record_says_who_did_not_come(self, launch: Launch) -> None:
        """A real sidecar: nobody arrives → no_show with the error log storage, and the stop
        record names the match and the missing tickets."""
        sc = await launch(
            "serve",
            env=MATCH,
            SIDECAR_NO_SHOW_TIMEOUT="300ms",
            SIDECAR_LOG_STORAGE="normal",
            SIDECAR_ERROR_LOG_STORAGE="errors",
            SIDECAR_MATCH_QUORUM="all",
        )
        await sc.wait_status(state="starting")
        async with aiohttp.ClientSession() as http:
            await post(http, sc.url + "/v1/ready")
            await post(http, sc.url + "/v1/players/connect", {"player_id": "x", "ticket_id": T2})
        await sc.wait_output(b'"sidecar.stop"')
        await sc.stop()
        line = next(line for line in bytes(sc.stdout).splitlines() if b'"sidecar.stop"' in line)
        record = json.loads(line)
        assert record["reason"] == "no_show"
        assert record["log_storage"] == "errors"
        assert record["detail"] == (
            "1 of 3 expected players arrived within 0.3s of ready (quorum all)"
        )
        assert record["match_id"] == "duo_initial-2026"
        assert record["match"] == {
            "match_id": "duo_initial-2026",
            "expected": 3,
            "arrived": 1,
            "missing": [T1, T3],
            "quorum": "all",
        }

    async def test_a_record_without_match_data_has_no_match(self, launch: Launch) -> None:
        """No MM_*: no `match` in the stop record, and `match_id` only once one is given."""
        sc = await launch("serve")
        await sc.wait_status(state="starting")
        async with aiohttp.ClientSession() as http:
            await post(http, sc.url + "/v1/match/start", {"match_id": "m-3"})
            await post(http, sc.url + "/v1/shutdown", {"grace_seconds": 0})
        await sc.wait_output(b'"sidecar.stop"')
        await sc.stop()
        line = next(line for line in bytes(sc.stdout).splitlines() if b'"sidecar.stop"' in line)
        record = json.loads(line)
        assert record["match_id"] == "m-3"
        assert "match" not in record


async def post(http: aiohttp.ClientSession, url: str, body: typing.Any = None) -> None:
    async with http.post(url, json=body) as response:
        assert response.status < 300, await response.text()
