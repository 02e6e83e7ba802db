"""The local HTTP API over real loopback HTTP: routes, bad input, auth, events, metrics."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.conftest import SidecarFactory


class TestRoutes:
    async def test_healthz_and_status_shape(self, sidecar: SidecarFactory) -> None:
        """/healthz is ok and /v1/status has every field of SPEC §7."""
        sc = await sidecar()
        assert await sc.call("GET", "/healthz") == (200, {"status": "ok"})
        status, body = await sc.call("GET", "/v1/status")
        assert status == 200
        for key in ("state", "stop_reason", "players", "timers", "uptime_s", "dry_run", "stop"):
            assert key in body
        assert body["state"] == "starting"
        assert body["players"] == {"count": 0, "ids": []}
        assert set(body["stop"]) >= {"attempts", "last_error"}
        assert set(body["deployment"]) == {"request_id", "public_ip", "ports"}
        assert body["dry_run"] is True
        assert "ready" in body["timers"]

    async def test_a_whole_match(self, sidecar: SidecarFactory) -> None:
        """ready → players → match start/end walks the states and ends in stopped (dry-run)."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="50ms")
        status, body = await sc.call("POST", "/v1/ready")
        assert (status, body["state"], body["ready_source"]) == (200, "ready", "api")
        assert (await sc.call("POST", "/v1/ready"))[0] == 200
        assert await sc.call("POST", "/v1/players/connect", {"player_id": "alice"}) == (
            200,
            {"count": 1},
        )
        assert await sc.call("POST", "/v1/players/connect", {"player_id": "alice"}) == (
            200,
            {"count": 1},
        )
        assert (await sc.call("POST", "/v1/players/connect", {"player_id": "bob"}))[1] == {
            "count": 2
        }
        assert await sc.call("GET", "/v1/players") == (
            200,
            {"count": 2, "ids": ["alice", "bob"]},
        )
        status, body = await sc.call("POST", "/v1/match/start", {"match_id": "m-1"})
        assert (status, body["state"], body["match_id"]) == (200, "active", "m-1")
        status, body = await sc.call("POST", "/v1/match/end", {"result": {"winner": "alice"}})
        assert status == 202
        assert body["state"] == "draining"
        assert body["stop_reason"] == "match_ended"
        assert 0 < body["drain_deadline_s"] <= 0.05
        final = await sc.wait_state("stopped")
        assert final["stop"]["outcome"] == "dry_run"

    async def test_put_players_replaces_the_roster(self, sidecar: SidecarFactory) -> None:
        """PUT /v1/players with ids or count sets the whole roster."""
        sc = await sidecar()
        status, body = await sc.call("PUT", "/v1/players", {"player_ids": ["a", "b", "c"]})
        assert (status, body["count"], body["ids"]) == (200, 3, ["a", "b", "c"])
        status, body = await sc.call("PUT", "/v1/players", {"count": 5})
        assert (status, body["count"], body["ids"]) == (200, 5, [])
        assert (await sc.call("POST", "/v1/players/disconnect", {"player_id": "x"}))[1] == {
            "count": 4
        }

    async def test_hold_activity_and_health_answer_200(self, sidecar: SidecarFactory) -> None:
        """hold shows a hold timer; activity and health answer 200."""
        sc = await sidecar()
        await sc.call("POST", "/v1/ready")
        status, body = await sc.call("POST", "/v1/hold", {"seconds": 30})
        assert status == 200
        assert 29 < body["timers"]["hold"] <= 30
        assert (await sc.call("POST", "/v1/activity"))[0] == 200
        status, _ = await sc.call("POST", "/v1/health")
        assert status == 200
        assert "health" in sc.agent.status_view.to_json()["timers"]

    async def test_deployment_parses_platform_variables(self, sidecar: SidecarFactory) -> None:
        """GET /v1/deployment parses ports (name or number keys), location, tags, matchmaker."""
        environ = {
            "ARBITRIUM_REQUEST_ID": "f68e011bfb01",
            "ARBITRIUM_PUBLIC_IP": "203.0.113.7",
            "ARBITRIUM_PORTS_MAPPING": json.dumps(
                {
                    "ports": {
                        "gameport": {
                            "name": "gameport",
                            "internal": 7777,
                            "external": 32013,
                            "protocol": "UDP",
                        },
                        "5000": {"internal": "5000", "external": 31000, "protocol": "TCP"},
                    }
                }
            ),
            "ARBITRIUM_DEPLOYMENT_LOCATION": json.dumps({"city": "Montreal", "country": "CA"}),
            "ARBITRIUM_DEPLOYMENT_TAGS": "eu, ranked",
            "MM_MATCH_ID": "match-9",
            "MM_TICKET_IDS": '["t1","t2"]',
            "MM_TICKET_t1": '{"player": "alice"}',
        }
        sc = await sidecar(environ=environ)
        status, body = await sc.call("GET", "/v1/deployment")
        assert status == 200
        assert body["request_id"] == "f68e011bfb01"
        assert body["ports"] == [
            {"name": "gameport", "internal": 7777, "external": 32013, "protocol": "UDP"},
            {"name": "5000", "internal": 5000, "external": 31000, "protocol": "TCP"},
        ]
        assert body["location"]["city"] == "Montreal"
        assert body["tags"] == ["eu", "ranked"]
        assert body["matchmaker"]["match_id"] == "match-9"
        assert body["matchmaker"]["ticket_ids"] == ["t1", "t2"]
        assert body["matchmaker"]["tickets"] == {"t1": {"player": "alice"}}
        _, status_body = await sc.call("GET", "/v1/status")
        assert status_body["deployment"]["ports"] == [32013, 31000]

    async def test_malformed_platform_variables_still_work(self, sidecar: SidecarFactory) -> None:
        """Broken ARBITRIUM_* values are reported as warnings, never a crash."""
        environ = {
            "ARBITRIUM_PORTS_MAPPING": "{not json",
            "ARBITRIUM_DEPLOYMENT_LOCATION": "[1,2]",
            "MM_TEAMS": "{bad",
        }
        sc = await sidecar(environ=environ)
        status, body = await sc.call("GET", "/v1/deployment")
        assert status == 200
        assert body["ports"] == []
        assert body["location"] is None
        warned = " ".join(body["warnings"])
        for name in ("ARBITRIUM_PORTS_MAPPING", "ARBITRIUM_DEPLOYMENT_LOCATION", "MM_TEAMS"):
            assert name in warned
        assert body["matchmaker"]["teams"] is None  # ignored as a whole


class TestAfterStopDecided:
    async def test_idempotent_and_refused_calls(self, sidecar: SidecarFactory) -> None:
        """After a stop: end/shutdown 202, ready/match-start 409, others 200."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="10s")
        await sc.call("POST", "/v1/ready")
        assert (await sc.call("POST", "/v1/match/end"))[0] == 202
        status, body = await sc.call("POST", "/v1/match/end", {"result": 1})
        assert (status, body["stop_reason"]) == (202, "match_ended")
        status, body = await sc.call("POST", "/v1/shutdown", {"reason": "x"})
        assert (status, body["stop_reason"]) == (202, "match_ended")
        status, body = await sc.call("POST", "/v1/ready")
        assert (status, body["error"]["code"]) == (409, "conflict")
        assert (await sc.call("POST", "/v1/match/start"))[0] == 409
        for method, path, payload in [
            ("POST", "/v1/players/connect", {"player_id": "late"}),
            ("POST", "/v1/players/disconnect", {"player_id": "late"}),
            ("POST", "/v1/health", None),
            ("POST", "/v1/activity", None),
            ("POST", "/v1/hold", {"seconds": 1}),
        ]:
            assert (await sc.call(method, path, payload))[0] == 200, path


class TestBadInput:
    @pytest.mark.parametrize(
        ("path", "raw", "status", "code"),
        [
            ("/v1/players/connect", b"{not json", 400, "bad_request"),
            ("/v1/players/connect", b"", 400, "bad_request"),
            ("/v1/players/connect", b"[1,2]", 422, "invalid_body"),
            ("/v1/players/connect", b'{"player_id": 5}', 422, "invalid_body"),
            ("/v1/players/connect", b'{"player_id": ""}', 422, "invalid_body"),
            ("/v1/players/connect", b'{"player_id": "a\\u0000b"}', 422, "invalid_body"),
            ("/v1/players/connect", b'{"player_id": "a", "team": 1}', 422, "invalid_body"),
            ("/v1/hold", b'{"seconds": -1}', 422, "invalid_body"),
            ("/v1/hold", b'{"seconds": "soon"}', 422, "invalid_body"),
            ("/v1/match/end", b'{"grace_seconds": -3}', 422, "invalid_body"),
            ("/v1/shutdown", b'{"reason": "x", "extra": true}', 422, "invalid_body"),
        ],
    )
    async def test_bad_bodies_get_a_4xx_with_a_message(
        self, sidecar: SidecarFactory, path: str, raw: bytes, status: int, code: str
    ) -> None:
        """Malformed JSON 400; wrong shape, unknown field or bad values 422."""
        sc = await sidecar()
        got, body = await sc.call("POST", path, data=raw)
        assert got == status
        assert body["error"]["code"] == code
        assert body["error"]["message"]

    async def test_over_long_player_id_is_422(self, sidecar: SidecarFactory) -> None:
        """player_id is at most 128 characters."""
        sc = await sidecar()
        assert (await sc.call("POST", "/v1/players/connect", {"player_id": "x" * 128}))[0] == 200
        status, body = await sc.call("POST", "/v1/players/connect", {"player_id": "x" * 129})
        assert status == 422
        assert "player_id" in body["error"]["message"]

    async def test_put_players_needs_exactly_one_field(self, sidecar: SidecarFactory) -> None:
        """PUT /v1/players with both or neither field is 422."""
        sc = await sidecar()
        assert (await sc.call("PUT", "/v1/players", {}))[0] == 422
        assert (await sc.call("PUT", "/v1/players", {"count": 1, "player_ids": []}))[0] == 422

    async def test_body_over_64_kib_is_413(self, sidecar: SidecarFactory) -> None:
        """A body larger than 64 KiB gets 413 and the server keeps serving."""
        sc = await sidecar()
        big = json.dumps({"result": "x" * (70 * 1024)}).encode()
        status, body = await sc.call("POST", "/v1/match/end", data=big)
        assert (status, body["error"]["code"]) == (413, "payload_too_large")
        assert (await sc.call("GET", "/healthz"))[0] == 200
        assert sc.agent.lifecycle.decision is None

    async def test_match_result_over_16_kib_is_422(self, sidecar: SidecarFactory) -> None:
        """match_result larger than 16 KiB is refused with 422 and no stop."""
        sc = await sidecar()
        status, body = await sc.call("POST", "/v1/match/end", {"result": "x" * 17_000})
        assert status == 422
        assert "16 KiB" in body["error"]["message"]
        assert sc.agent.lifecycle.decision is None

    async def test_unknown_path_404_and_wrong_method_405(self, sidecar: SidecarFactory) -> None:
        """Routing errors use the same JSON error shape."""
        sc = await sidecar()
        status, body = await sc.call("GET", "/v1/nope")
        assert (status, body["error"]["code"]) == (404, "not_found")
        status, body = await sc.call("DELETE", "/v1/status")
        assert (status, body["error"]["code"]) == (405, "method_not_allowed")
        status, body = await sc.call("GET", "/v1/ready")
        assert status == 405


class TestAuth:
    async def test_bearer_token_required_on_v1_only(self, sidecar: SidecarFactory) -> None:
        """With SIDECAR_API_TOKEN, /v1/* needs the bearer token; /healthz and /metrics do not."""
        sc = await sidecar(SIDECAR_API_TOKEN="s3cret-api")
        status, body = await sc.call("GET", "/v1/status")
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        assert (await sc.call("POST", "/v1/ready", headers=wrong))[0] == 401
        raw = {"Authorization": "s3cret-api"}
        assert (await sc.call("POST", "/v1/ready", headers=raw))[0] == 401
        good = {"Authorization": "Bearer s3cret-api"}
        assert (await sc.call("POST", "/v1/ready", headers=good))[0] == 200
        assert (await sc.call("GET", "/healthz"))[0] == 200
        assert (await sc.call("GET", "/metrics"))[0] == 200


class TestConcurrency:
    async def test_300_concurrent_connects_count_exactly(self, sidecar: SidecarFactory) -> None:
        """300 concurrent connects of distinct ids give a count of exactly 300."""
        sc = await sidecar()
        results = await asyncio.gather(
            *(sc.call("POST", "/v1/players/connect", {"player_id": f"p{i}"}) for i in range(300))
        )
        assert all(status == 200 for status, _ in results)
        assert (await sc.call("GET", "/v1/players"))[1]["count"] == 300


class TestEvents:
    async def test_sse_stream_sends_one_state_event_per_change(
        self, sidecar: SidecarFactory
    ) -> None:
        """GET /v1/events sends the current status, then a state event per change with the
        drain deadline."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="5s")
        events: list[dict[str, object]] = []
        async with sc.http.get(sc.url + "/v1/events") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")

            async def read() -> None:
                name = None
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name == "state":
                        events.append(json.loads(line[6:]))
                        if events[-1]["state"] == "draining":
                            return

            reader = asyncio.create_task(read())
            await sc.call("POST", "/v1/ready")
            await sc.call("POST", "/v1/players/connect", {"player_id": "a"})
            await sc.call("POST", "/v1/match/end")
            await asyncio.wait_for(reader, 5)
        assert [e["state"] for e in events] == ["starting", "ready", "active", "draining"]
        assert 4 < float(events[-1]["drain_deadline_s"]) <= 5  # type: ignore[arg-type]


class TestMetrics:
    async def test_metrics_are_valid_prometheus_text(self, sidecar: SidecarFactory) -> None:
        """/metrics parses with prometheus_client and carries state, players, timers and
        requests by route and status."""
        from prometheus_client.parser import text_string_to_metric_families

        sc = await sidecar()
        await sc.call("POST", "/v1/ready")
        await sc.call("POST", "/v1/players/connect", {"player_id": "a"})
        await sc.call("GET", "/v1/nope")
        async with sc.http.get(sc.url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        state = {s.labels["state"]: s.value for s in families["edgegap_sidecar_state"].samples}
        assert state["active"] == 1
        assert sum(state.values()) == 1
        assert families["edgegap_sidecar_players"].samples[0].value == 1
        requests = {
            (s.labels["route"], s.labels["status"]): s.value
            for s in families["edgegap_sidecar_http_requests"].samples
        }
        assert requests[("/v1/players/connect", "200")] == 1
        assert requests[("unmatched", "404")] == 1
        timers = {s.labels["timer"] for s in families["edgegap_sidecar_timer_seconds_left"].samples}
        assert "empty" not in timers  # a player is connected


async def test_client_disconnect_mid_body_does_not_crash(sidecar: SidecarFactory) -> None:
    """A client that hangs up mid-request leaves the sidecar serving."""
    sc = await sidecar()
    _, writer = await asyncio.open_connection("127.0.0.1", sc.agent.port)
    writer.write(
        b'POST /v1/players/connect HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"pla'
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    assert (await sc.call("GET", "/healthz"))[0] == 200
    async with aiohttp.ClientSession() as session, session.get(sc.url + "/v1/status") as r:
        assert r.status == 200
