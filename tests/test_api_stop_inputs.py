"""What a game hands the stop routes, over real loopback HTTP: the grace is bounded and the max
duration ends any drain, ids that would break a header or a metrics label are refused, and a
secret of ours in a reason or a result never comes back out (status, events, the stop record,
the result delivery)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from sidecar.lifecycle import StopReason
from sidecar.metrics import Exposition
from tests.conftest import Launch, Receiver, SidecarFactory

SECRET = "SEKRETdeltoken99"


class TestGrace:
    @pytest.mark.parametrize("route", ["/v1/match/end", "/v1/shutdown"])
    @pytest.mark.parametrize("grace", [1e300, 3600.5, 86400])
    async def test_a_grace_over_an_hour_is_422_naming_the_field(
        self, sidecar: SidecarFactory, route: str, grace: float
    ) -> None:
        """A grace beyond 3600 s is refused, naming grace_seconds; no stop is decided."""
        sc = await sidecar()
        status, body = await sc.call("POST", route, {"grace_seconds": grace})
        assert status == 422
        assert body["error"]["code"] == "invalid_body"
        assert "grace_seconds" in body["error"]["message"]
        assert sc.agent.lifecycle.decision is None

    async def test_an_hour_is_accepted(self, sidecar: SidecarFactory) -> None:
        """3600 s is the longest grace a request may ask for."""
        sc = await sidecar()
        status, body = await sc.call("POST", "/v1/shutdown", {"grace_seconds": 3600})
        assert (status, body["state"]) == (202, "draining")

    async def test_the_max_duration_ends_a_long_drain(self, sidecar: SidecarFactory) -> None:
        """SIDECAR_MAX_DURATION is a hard cap: a drain asked for an hour stops at the max
        duration, for the decided reason, with max_duration recorded as a later trigger."""
        sc = await sidecar(SIDECAR_MAX_DURATION="500ms")
        await sc.call("POST", "/v1/ready")
        status, body = await sc.call("POST", "/v1/match/end", {"grace_seconds": 3600})
        assert status == 202
        assert body["drain_deadline_s"] <= 0.5
        final = await sc.wait_state("stopped", "failed", timeout=5)
        assert final["stop_reason"] == "match_ended"
        assert final["stop"]["outcome"] == "dry_run"
        lifecycle = sc.agent.lifecycle
        assert [t.reason for t in lifecycle.later_triggers] == [StopReason.MAX_DURATION]
        assert lifecycle.uptime() < 3


class TestMatchId:
    @pytest.mark.parametrize("match_id", ["m\nX", "m\r\nX-Injected: 1", "ctl\u0001", "\ud800"])
    async def test_an_id_that_is_not_printable_is_422_naming_the_field(
        self, sidecar: SidecarFactory, match_id: str
    ) -> None:
        """match/start takes 1-128 printable characters like player ids; a control character
        or a lone surrogate is refused and the match is not started."""
        sc = await sidecar()
        status, body = await sc.call("POST", "/v1/match/start", {"match_id": match_id})
        assert status == 422
        assert "match_id" in body["error"]["message"]
        assert sc.agent.lifecycle.match_id is None
        async with sc.http.get(sc.url + "/metrics") as response:
            assert response.status == 200

    async def test_an_id_over_128_characters_is_422(self, sidecar: SidecarFactory) -> None:
        """The bound the docs give."""
        sc = await sidecar()
        status, body = await sc.call("POST", "/v1/match/start", {"match_id": "m" * 129})
        assert status == 422
        assert "match_id" in body["error"]["message"]

    def test_metrics_render_whatever_a_label_holds(self) -> None:
        """A label value with a lone surrogate, a quote or a line break still renders as
        Prometheus text that parses: a scrape can never fail on one."""
        from prometheus_client.parser import text_string_to_metric_families

        page = Exposition()
        page.family("match_info", "gauge", "Match.", [({"match_id": 'm\ud800\n"x\\'}, 1)])
        text = page.render().decode()
        (family,) = text_string_to_metric_families(text)
        assert family.samples[0].labels["match_id"] == 'm?\n"x\\'


class TestTicketsNoConnectCanName:
    async def test_they_are_not_waited_for(self, sidecar: SidecarFactory) -> None:
        """MM_TICKET_IDS with an id the connect API refuses: the game connects every player it
        can name and meets quorum `all`; the no-show timer disarms instead of firing."""
        sc = await sidecar(
            environ={
                "MM_TICKET_IDS": json.dumps(["p1", "ctl\u0001", "x" * 129]),
                "MM_TICKET_p1": "{}",
            },
            SIDECAR_MATCH_QUORUM="all",
        )
        assert any("MM_TICKET_IDS" in w for w in sc.agent.deployment.warnings)
        await sc.call("POST", "/v1/ready")
        assert "no_show" in sc.agent.lifecycle.timers_left()
        assert (await sc.call("POST", "/v1/players/connect", {"player_id": "p1"}))[0] == 200
        status, match = await sc.call("GET", "/v1/match")
        assert (status, match["expected"], match["arrived"]) == (200, 1, 1)
        assert "no_show" not in sc.agent.lifecycle.timers_left()


async def first_state_event(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The first `state` event of GET /v1/events: the current status."""
    async with http.get(url + "/v1/events") as response:
        async with asyncio.timeout(5):
            async for raw in response.content:
                line = raw.decode()
                if line.startswith("data: "):
                    data: dict[str, Any] = json.loads(line[6:])
                    return data
    raise AssertionError("no state event")


class TestSecretsInGameText:
    async def test_a_token_in_the_shutdown_reason_is_redacted_everywhere(
        self, launch: Launch
    ) -> None:
        """POST /v1/shutdown {"reason": "bye <delete token>"}: status, the event stream, the
        stop record and stderr show `bye <redacted>`; the token is in no output."""
        sc = await launch("serve", ARBITRIUM_DELETE_TOKEN=SECRET, SIDECAR_MATCH_END_GRACE="5s")
        await sc.wait_status(state="starting")
        async with aiohttp.ClientSession() as http:
            async with http.post(
                sc.url + "/v1/shutdown", json={"reason": f"bye {SECRET}", "grace_seconds": 0.2}
            ) as r:
                assert r.status == 202
                answered = await r.json()
            event = await first_state_event(http, sc.url)
        assert answered["stop_detail"] == "bye <redacted>"
        assert event["stop_detail"] == "bye <redacted>"
        await sc.wait_output(b'"sidecar.stop"')
        sc.proc.terminate()
        _code, stdout, stderr = await sc.finish()
        (stop,) = [json.loads(line) for line in stdout.splitlines() if b'"sidecar.stop"' in line]
        assert stop["detail"] == "bye <redacted>"
        assert SECRET not in stdout.decode() + stderr

    async def test_a_token_in_the_match_result_is_redacted_everywhere(
        self, launch: Launch, receiver: Receiver
    ) -> None:
        """A match result naming the delete token (as a key and inside a value): the stop
        record and the result delivery's body carry it redacted; the token is in no output and
        reaches no receiver."""
        sc = await launch(
            "serve",
            ARBITRIUM_DELETE_TOKEN=SECRET,
            SIDECAR_RESULT_URL=receiver.url,
            SIDECAR_MATCH_END_GRACE="0.1s",
        )
        await sc.wait_status(state="starting")
        result = {"env": [f"TOKEN={SECRET}", 3], SECRET: {"nested": SECRET}}
        async with (
            aiohttp.ClientSession() as http,
            http.post(sc.url + "/v1/match/end", json={"result": result}) as r,
        ):
            assert r.status == 202
        await sc.wait_output(b'"sidecar.stop"')
        await asyncio.wait_for(receiver.got.wait(), 5)
        sc.proc.terminate()
        _code, stdout, stderr = await sc.finish()
        expected = {"env": ["TOKEN=<redacted>", 3], "<redacted>": {"nested": "<redacted>"}}
        (stop,) = [json.loads(line) for line in stdout.splitlines() if b'"sidecar.stop"' in line]
        assert stop["match_result"] == expected
        (_headers, body), *_ = receiver.requests
        assert body["result"] == expected
        assert SECRET not in stdout.decode() + stderr + json.dumps(receiver.requests)
