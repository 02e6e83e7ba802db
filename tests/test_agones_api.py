"""The Agones SDK facade over real loopback HTTP: every route's answer and status, the state
mapping through the lifecycle, the watch (NDJSON and WebSocket), and the two APIs side by side."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from sidecar.agones.app import MAX_WATCHERS
from sidecar.errors import StartupError
from tests import agones_swagger as swagger
from tests.agones_client import Agones, open_watch
from tests.conftest import SidecarFactory

AgonesFactory = Callable[..., Awaitable[Agones]]


@pytest.fixture
def agones(sidecar: SidecarFactory) -> AgonesFactory:
    """Factory: an in-process sidecar with the facade on a free port → its Agones client."""

    async def make(environ: dict[str, str] | None = None, **variables: str) -> Agones:
        handle = await sidecar(
            environ, SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT="0", **variables
        )
        return Agones(handle)

    return make


PLATFORM = {
    "ARBITRIUM_REQUEST_ID": "9f3c1a2b7d4e",
    "ARBITRIUM_PUBLIC_IP": "203.0.113.7",
    "ARBITRIUM_PORTS_MAPPING": json.dumps(
        {"ports": {"gameport": {"name": "gameport", "internal": 7777, "external": 31504}}}
    ),
}


class TestRoutes:
    async def test_gameserver_has_every_field_in_agones_form(self, agones: AgonesFactory) -> None:
        """GET /gameserver: proto names, every field present, int64 as strings, int32 numbers,
        the platform's request id, address and external ports."""
        client = await agones(environ=PLATFORM)
        status, body = await client.call("GET", "/gameserver")
        assert status == 200
        swagger.check("GET", "/gameserver", body)
        meta = body["object_meta"]
        assert (meta["name"], meta["namespace"], meta["uid"]) == (
            "9f3c1a2b7d4e",
            "default",
            "9f3c1a2b7d4e",
        )
        assert isinstance(meta["creation_timestamp"], str)
        assert int(meta["creation_timestamp"]) > 0
        assert (meta["generation"], meta["deletion_timestamp"]) == ("1", "0")
        assert body["spec"]["health"]["period_seconds"] == 30  # int32: a number
        assert body["status"] == {
            "state": "Scheduled",
            "address": "203.0.113.7",
            "addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}],
            "ports": [{"name": "gameport", "port": 31504}],
            "players": {"count": "0", "capacity": "0", "ids": []},
            "counters": {},
            "lists": {"players": {"capacity": "1000", "values": []}},
        }

    async def test_unity_sends_a_body_with_its_get(self, agones: AgonesFactory) -> None:
        """The Unity SDK's GET /gameserver carries a `{}` body: it is answered like any GET."""
        client = await agones()
        status, body = await client.call("GET", "/gameserver", {})
        assert (status, body["status"]["state"]) == (200, "Scheduled")

    async def test_port_in_use_is_a_startup_error(self, sidecar: SidecarFactory) -> None:
        """A taken SIDECAR_AGONES_HTTP_PORT stops the start with a message naming it (exit 3)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(StartupError, match="SIDECAR_AGONES_HTTP_PORT"):
                await sidecar(SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT=str(port))

    async def test_without_platform_variables(self, agones: AgonesFactory) -> None:
        """Off the platform the GameServer is `local` at 127.0.0.1 with a random uid."""
        client = await agones()
        meta = (await client.gameserver())["object_meta"]
        assert meta["name"] == "local"
        assert len(meta["uid"]) == 36
        assert (await client.gameserver())["status"]["address"] == "127.0.0.1"

    @pytest.mark.parametrize("path", ["/ready", "/allocate", "/reserve", "/health", "/shutdown"])
    async def test_sdk_calls_answer_empty(self, agones: AgonesFactory, path: str) -> None:
        """Each lifecycle call answers 200 `{}` (the SDKs treat anything else as a failure)."""
        client = await agones()
        status, body = await client.call("POST", path, {})
        assert (status, body) == (200, {})
        swagger.check("POST", path, body)

    async def test_health_counts_one_ping_per_object(self, agones: AgonesFactory) -> None:
        """`{}{}` is two pings and arms the health timer; an empty body is 400 (no body)."""
        client = await agones()
        lifecycle = client.handle.agent.lifecycle
        assert await client.call("POST", "/health", data=b"{}{}") == (200, {})
        assert client.facade.gameserver.pings == 2
        assert lifecycle.last_heartbeat is not None
        assert "health" in lifecycle.timers_left()
        assert await client.call("POST", "/health", data=b"") == (400, None)
        assert client.facade.gameserver.pings == 2

    async def test_health_as_a_client_stream(self, agones: AgonesFactory) -> None:
        """Pings streamed in one chunked body count as they arrive, as on Agones' gateway."""
        client = await agones()
        sent = asyncio.Event()

        async def pings() -> Any:
            yield b"{}"
            sent.set()
            await asyncio.sleep(0)
            yield b"{"
            yield b"}\n{}"

        async with client.http.post(client.url + "/health", data=pings()) as response:
            assert response.status == 200
            assert await response.json() == {}
        assert sent.is_set()
        assert client.facade.gameserver.pings == 3

    async def test_malformed_json_is_invalid_argument(self, agones: AgonesFactory) -> None:
        """Bad JSON: 400, code 3, Agones' error shape."""
        client = await agones()
        for path, method in (("/ready", "POST"), ("/metadata/label", "PUT"), ("/health", "POST")):
            status, body = await client.call(method, path, data=b'{"key": ')
            assert status == 400, path
            assert (body["code"], body["details"]) == (3, [])
            swagger.check_error(body)
        status, body = await client.call("POST", "/reserve", {"seconds": "soon"})
        assert (status, body["code"]) == (400, 3)

    async def test_unknown_path_and_wrong_method(self, agones: AgonesFactory) -> None:
        """Unknown path 404 (code 5); a known path with another method 501 (code 12)."""
        client = await agones()
        assert await client.call("GET", "/nope") == (
            404,
            {"code": 5, "message": "Not Found", "details": []},
        )
        assert await client.call("GET", "/ready") == (
            501,
            {"code": 12, "message": "Method Not Allowed", "details": []},
        )
        status, body = await client.call("DELETE", "/v1beta1/counters/rooms")
        assert (status, body["code"]) == (501, 12)
        status, body = await client.call("GET", "/v1beta1/lists/players:addValue")
        assert (status, body["code"]) == (501, 12)

    async def test_unknown_fields_are_ignored(self, agones: AgonesFactory) -> None:
        """Agones' gateway discards unknown fields; so does the facade."""
        client = await agones()
        assert await client.call("POST", "/reserve", {"seconds": "1", "why": {"x": [1]}}) == (
            200,
            {},
        )

    async def test_labels_and_annotations(self, agones: AgonesFactory) -> None:
        """Stored as agones.dev/sdk-<key>; keys and label values Kubernetes refuses are 400."""
        client = await agones()
        ok = {"key": "mode", "value": "ranked"}
        assert await client.call("PUT", "/metadata/label", ok) == (200, {})
        note = {"key": "notes", "value": "any text: spaces, é, /"}
        assert await client.call("PUT", "/metadata/annotation", note) == (200, {})
        meta = (await client.gameserver())["object_meta"]
        assert meta["labels"] == {"agones.dev/sdk-mode": "ranked"}
        assert meta["annotations"] == {"agones.dev/sdk-notes": "any text: spaces, é, /"}
        for bad in (
            {"key": "bad key", "value": "v"},
            {"key": "", "value": "v"},
            {"key": "a/b", "value": "v"},
            {"key": "mode", "value": "no spaces allowed"},
            {"key": "mode", "value": "x" * 64},
        ):
            status, body = await client.call("PUT", "/metadata/label", bad)
            assert (status, body["code"]) == (400, 3), bad
        status, body = await client.call("PUT", "/metadata/annotation", {"key": "-", "value": ""})
        assert (status, body["code"]) == (400, 3)
        assert (await client.gameserver())["object_meta"]["labels"] == {
            "agones.dev/sdk-mode": "ranked"
        }

    async def test_the_facade_needs_no_token(self, agones: AgonesFactory) -> None:
        """SIDECAR_API_TOKEN protects /v1/*, never the Agones port (the SDKs send no token)."""
        client = await agones(SIDECAR_API_TOKEN="s3cret-token")
        assert (await client.call("POST", "/ready", {}))[0] == 200
        assert (await client.handle.call("GET", "/v1/status"))[0] == 401
        headers = {"Authorization": "Bearer s3cret-token"}
        status, body = await client.handle.call("GET", "/v1/status", headers=headers)
        assert (status, body["state"], body["ready_source"]) == (200, "active", "agones")

    async def test_bound_on_loopback_whatever_the_host(self, agones: AgonesFactory) -> None:
        """With SIDECAR_HOST=0.0.0.0 the facade still listens on 127.0.0.1 only."""
        client = await agones(SIDECAR_HOST="0.0.0.0", SIDECAR_API_TOKEN="s3cret-token")
        runner = client.facade._runner
        assert runner is not None
        assert [address[0] for address in runner.addresses] == ["127.0.0.1"]


class TestPlayers:
    async def test_alpha_routes(self, agones: AgonesFactory) -> None:
        """Connect/disconnect answer whether the roster changed; capacity, count, connected."""
        client = await agones()
        call = client.call
        assert await call("PUT", "/alpha/player/capacity", {"count": "2"}) == (200, {})
        assert await call("GET", "/alpha/player/capacity") == (200, {"count": "2"})
        assert await call("POST", "/alpha/player/connect", {"playerID": "p1"}) == (
            200,
            {"bool": True},
        )
        assert await call("POST", "/alpha/player/connect", {"playerID": "p1"}) == (
            200,
            {"bool": False},
        )
        assert await call("POST", "/alpha/player/connect", {"playerID": "p2"}) == (
            200,
            {"bool": True},
        )
        status, body = await call("POST", "/alpha/player/connect", {"playerID": "p3"})
        assert (status, body["code"], body["message"]) == (
            500,
            2,
            "players are already at capacity",
        )
        assert await call("GET", "/alpha/player/count") == (200, {"count": "2"})
        assert await call("GET", "/alpha/player/connected") == (200, {"list": ["p1", "p2"]})
        assert await call("GET", "/alpha/player/connected/p2") == (200, {"bool": True})
        assert await call("GET", "/alpha/player/connected/p3") == (200, {"bool": False})
        assert await call("POST", "/alpha/player/disconnect", {"playerID": "p1"}) == (
            200,
            {"bool": True},
        )
        assert await call("POST", "/alpha/player/disconnect", {"playerID": "p1"}) == (
            200,
            {"bool": False},
        )
        players = (await client.gameserver())["status"]["players"]
        assert players == {"count": "1", "capacity": "2", "ids": ["p2"]}
        for template, method in (
            ("/alpha/player/capacity", "GET"),
            ("/alpha/player/count", "GET"),
            ("/alpha/player/connected", "GET"),
        ):
            swagger.check(method, template, (await call(method, template))[1])

    async def test_one_roster_for_both_apis(self, agones: AgonesFactory) -> None:
        """An alpha connect shows in /v1/players, and a /v1/players change in the alpha API."""
        client = await agones()
        await client.call("POST", "/alpha/player/connect", {"playerID": "alice"})
        assert await client.handle.call("GET", "/v1/players") == (
            200,
            {"count": 1, "ids": ["alice"]},
        )
        await client.handle.call("POST", "/v1/players/connect", {"player_id": "bob"})
        assert await client.call("GET", "/alpha/player/connected") == (
            200,
            {"list": ["alice", "bob"]},
        )
        await client.handle.call("PUT", "/v1/players", {"count": 5})
        assert await client.call("GET", "/alpha/player/count") == (200, {"count": "5"})
        assert (await client.handle.call("GET", "/v1/status"))[1]["state"] == "active"

    async def test_the_players_list_is_the_roster(self, agones: AgonesFactory) -> None:
        """The `players` list's values are the roster, from either API."""
        client = await agones()
        status, body = await client.call(
            "POST", "/v1beta1/lists/players:addValue", {"value": "carol"}
        )
        assert (status, body) == (200, {"name": "players", "capacity": "1000", "values": ["carol"]})
        swagger.check("POST", "/v1beta1/lists/{name}:addValue", body)
        await client.handle.call("POST", "/v1/players/connect", {"player_id": "dave"})
        assert (await client.call("GET", "/v1beta1/lists/players"))[1]["values"] == [
            "carol",
            "dave",
        ]
        await client.call("POST", "/v1beta1/lists/players:removeValue", {"value": "carol"})
        assert (await client.handle.call("GET", "/v1/players"))[1] == {"count": 1, "ids": ["dave"]}
        status, body = await client.call(
            "PATCH", "/v1beta1/lists/players", {"values": ["erin", "dave"]}
        )
        assert (status, body["values"]) == (200, ["dave", "erin"])
        assert (await client.handle.call("GET", "/v1/players"))[1]["ids"] == ["dave", "erin"]

    async def test_the_players_list_capacity_bounds_the_roster(
        self, agones: AgonesFactory, tmp_path: Any
    ) -> None:
        """The roster is the players list, and a list holds at most its capacity: a connect
        through either API beyond it is refused and changes nothing (the local API let 1,709
        players into a list of capacity 1000, which a later UpdateList silently cut)."""
        manifest = tmp_path / "gs.json"
        manifest.write_text(json.dumps({"spec": {"lists": {"players": {"capacity": 3}}}}))
        client = await agones(SIDECAR_AGONES_GAMESERVER=str(manifest))
        local = client.handle
        for player in ("p1", "p2", "p3"):
            status, _ = await local.call("POST", "/v1/players/connect", {"player_id": player})
            assert status == 200
        status, answer = await local.call("POST", "/v1/players/connect", {"player_id": "p4"})
        assert (status, answer["error"]["code"]) == (422, "roster_full"), answer
        assert "'players'" in answer["error"]["message"]
        assert "capacity, 3 players" in answer["error"]["message"]
        status, answer = await local.call(
            "PUT", "/v1/players", {"player_ids": ["a", "b", "c", "d"]}
        )
        assert (status, answer["error"]["code"]) == (422, "roster_full"), answer
        status, answer = await client.call("POST", "/alpha/player/connect", {"playerID": "p4"})
        assert (status, answer["code"]) == (500, 2), answer
        status, answer = await client.call(
            "POST", "/v1beta1/lists/players:addValue", {"value": "p4"}
        )
        assert (status, answer["code"]) == (500, 2), answer
        assert "No available capacity" in answer["message"]
        players = ["p1", "p2", "p3"]
        assert (await client.call("GET", "/v1beta1/lists/players"))[1] == {
            "name": "players",
            "capacity": "3",
            "values": players,
        }
        assert (await local.call("GET", "/v1/players"))[1] == {"count": 3, "ids": players}
        # Raising the capacity (as Agones' UpdateList does) makes room for the next one.
        status, _ = await client.call(
            "PATCH", "/v1beta1/lists/players?update_mask=capacity", {"capacity": 4}
        )
        assert status == 200
        status, _ = await local.call("POST", "/v1/players/connect", {"player_id": "p4"})
        assert status == 200

    async def test_players_list_named_by_the_setting(self, agones: AgonesFactory) -> None:
        """SIDECAR_AGONES_PLAYERS_LIST names the list that is the roster."""
        client = await agones(SIDECAR_AGONES_PLAYERS_LIST="sessions")
        await client.call("POST", "/v1beta1/lists/sessions:addValue", {"value": "s1"})
        assert (await client.handle.call("GET", "/v1/players"))[1]["ids"] == ["s1"]
        status, body = await client.call("GET", "/v1beta1/lists/players")
        assert (status, body["code"]) == (500, 2)


MANIFEST = {
    "apiVersion": "agones.dev/v1",
    "kind": "GameServer",
    "status": {
        "counters": {"rooms": {"count": 1, "capacity": 10}},
        "lists": {"maps": {"capacity": 3, "values": ["dust"]}},
    },
}


class TestCountersAndLists:
    async def test_counter_routes(self, agones: AgonesFactory, tmp_path: Any) -> None:
        """Get and update a counter with Agones' rules and answers; unknown counter 500."""
        manifest = tmp_path / "gs.json"
        manifest.write_text(json.dumps(MANIFEST))
        client = await agones(SIDECAR_AGONES_GAMESERVER=str(manifest))
        status, body = await client.call("GET", "/v1beta1/counters/rooms")
        assert (status, body) == (200, {"name": "rooms", "count": "1", "capacity": "10"})
        swagger.check("GET", "/v1beta1/counters/{name}", body)
        status, body = await client.call(
            "PATCH", "/v1beta1/counters/rooms", {"countDiff": "2", "capacity": "5"}
        )
        assert (status, body) == (200, {"name": "rooms", "count": "3", "capacity": "5"})
        swagger.check("PATCH", "/v1beta1/counters/{counterUpdateRequest.name}", body)
        status, body = await client.call("PATCH", "/v1beta1/counters/rooms", {"countDiff": 3})
        assert (status, body["code"]) == (500, 2)
        assert "out of range" in body["message"]
        status, body = await client.call("GET", "/v1beta1/counters/nope")
        assert (status, body) == (
            500,
            {"code": 2, "message": "counter not found: nope", "details": []},
        )
        counters = (await client.gameserver())["status"]["counters"]
        assert counters == {"rooms": {"count": "3", "capacity": "5"}}

    async def test_list_routes(self, agones: AgonesFactory, tmp_path: Any) -> None:
        """A list other than the roster: add, remove, update with its mask, refusals."""
        manifest = tmp_path / "gs.json"
        manifest.write_text(json.dumps(MANIFEST))
        client = await agones(SIDECAR_AGONES_GAMESERVER=str(manifest))
        call = client.call
        assert (await call("POST", "/v1beta1/lists/maps:addValue", {"value": "nuke"}))[1] == {
            "name": "maps",
            "capacity": "3",
            "values": ["dust", "nuke"],
        }
        status, body = await call("POST", "/v1beta1/lists/maps:addValue", {"value": "dust"})
        assert (status, body["code"]) == (500, 2)
        assert "already exists" in body["message"]
        status, body = await call("PATCH", "/v1beta1/lists/maps?update_mask=capacity", {})
        assert (status, body["capacity"], body["values"]) == (200, "0", [])
        status, body = await call("POST", "/v1beta1/lists/maps:addValue", {"value": "x"})
        assert (status, body["code"]) == (500, 2)
        assert "capacity" in body["message"]
        status, body = await call("PATCH", "/v1beta1/lists/maps", {"capacity": "1001"})
        assert (status, body["code"]) == (500, 2)
        status, body = await call("POST", "/v1beta1/lists/maps:removeValue", {"value": "dust"})
        assert (status, body["code"]) == (500, 2)
        assert "not found" in body["message"]
        status, body = await call("GET", "/v1beta1/lists/nope")
        assert (status, body["message"]) == (500, "list not found: nope")


class TestStates:
    async def test_through_the_lifecycle(self, agones: AgonesFactory) -> None:
        """Scheduled → Ready → Allocated → Reserved → back → Shutdown, as the lifecycle moves."""
        client = await agones(SIDECAR_AGONES_AUTO_ALLOCATE="false", SIDECAR_MATCH_END_GRACE="0")
        lifecycle = client.handle.agent.lifecycle
        assert await client.state() == "Scheduled"
        await client.call("POST", "/ready", {})
        assert (lifecycle.state.value, await client.state()) == ("ready", "Ready")
        await client.call("POST", "/allocate", {})
        assert (lifecycle.state.value, await client.state()) == ("active", "Allocated")
        await client.call("POST", "/reserve", {"seconds": "0"})
        assert await client.state() == "Reserved"
        await client.call("POST", "/allocate", {})
        assert await client.state() == "Allocated"
        await client.call("POST", "/shutdown", {})
        status = await client.handle.wait_state("stopped")
        assert status["stop_reason"] == "shutdown_requested"
        assert await client.state() == "Shutdown"

    async def test_unhealthy(self, agones: AgonesFactory) -> None:
        """Health silence stops the server for `unhealthy`: the GameServer shows Unhealthy."""
        client = await agones(SIDECAR_HEALTH_TIMEOUT="50ms")
        await client.call("POST", "/ready", {})
        await client.call("POST", "/health", {})
        status = await client.handle.wait_state("stopped")
        assert status["stop_reason"] == "unhealthy"
        assert await client.state() == "Unhealthy"

    async def test_after_a_stop_lifecycle_calls_change_nothing(self, agones: AgonesFactory) -> None:
        """After Shutdown: Ready, Allocate, Reserve answer 200 `{}` and change nothing."""
        client = await agones()
        assert await client.call("POST", "/shutdown", {}) == (200, {})
        for path in ("/ready", "/allocate", "/reserve", "/shutdown"):
            assert await client.call("POST", path, {}) == (200, {}), path
        assert await client.state() == "Shutdown"
        status = (await client.handle.call("GET", "/v1/status"))[1]
        assert (status["state"], status["stop_reason"]) == ("draining", "shutdown_requested")
        assert "hold" not in status["timers"]
        assert await client.call("POST", "/health", {}) == (200, {})
        connect = {"playerID": "late"}
        assert await client.call("POST", "/alpha/player/connect", connect) == (200, {"bool": True})

    async def test_one_self_stop_for_shutdown_and_match_end(self, agones: AgonesFactory) -> None:
        """An Agones Shutdown() and the game's own /v1/match/end make one stop, the first's."""
        client = await agones(SIDECAR_MATCH_END_GRACE="50ms")
        await client.call("POST", "/ready", {})
        await client.call("POST", "/shutdown", {})
        status, body = await client.handle.call("POST", "/v1/match/end", {"result": {"w": 1}})
        assert (status, body["stop_reason"]) == (202, "shutdown_requested")
        final = await client.handle.wait_state("stopped")
        assert final["stop"]["outcome"] == "dry_run"
        assert client.handle.agent.lifecycle.later_triggers[0].reason.value == "match_ended"
        assert client.handle.agent._stop_task is not None


class TestWatch:
    async def test_current_first_then_one_line_per_change(self, agones: AgonesFactory) -> None:
        """The current GameServer at once, then one line for each call that changed it."""
        client = await agones(SIDECAR_AGONES_AUTO_ALLOCATE="false")
        async with open_watch(client) as watch:
            first = await watch.next()
            swagger.check("GET", "/watch/gameserver", {"result": first})
            assert first["status"]["state"] == "Scheduled"
            await client.call("POST", "/ready", {})
            assert (await watch.next())["status"]["state"] == "Ready"
            await client.call("PUT", "/metadata/label", {"key": "map", "value": "dust"})
            labelled = await watch.next()
            assert labelled["object_meta"]["labels"] == {"agones.dev/sdk-map": "dust"}
            await client.call("POST", "/alpha/player/connect", {"playerID": "p1"})
            joined = await watch.next()
            assert joined["status"]["players"]["ids"] == ["p1"]
            assert joined["status"]["state"] == "Allocated"  # a player makes it active
            versions = [
                int(gs["object_meta"]["resource_version"]) for gs in (first, labelled, joined)
            ]
            assert versions == sorted(set(versions))
            await client.call("GET", "/gameserver")  # a read is not a change
            await client.call("POST", "/health", {})  # nor is a ping
            await client.call("PUT", "/metadata/label", {"key": "map", "value": "nuke"})
            nxt = await watch.next()
            assert nxt["object_meta"]["labels"] == {"agones.dev/sdk-map": "nuke"}

    async def test_changes_through_the_local_api(self, agones: AgonesFactory) -> None:
        """A state change on the local API shows on the watch, a hold's end included."""
        client = await agones(SIDECAR_AGONES_AUTO_ALLOCATE="false")
        async with open_watch(client) as watch:
            await watch.next()
            await client.handle.call("POST", "/v1/ready")
            assert (await watch.next())["status"]["state"] == "Ready"
            await client.handle.call("POST", "/v1/match/start", {})
            assert (await watch.next())["status"]["state"] == "Allocated"
            await client.handle.call("POST", "/v1/hold", {"seconds": 0.05})
            assert (await watch.next())["status"]["state"] == "Reserved"
            assert (await watch.next())["status"]["state"] == "Allocated"
            await client.handle.call("PUT", "/v1/players", {"player_ids": ["a", "b"]})
            assert (await watch.next())["status"]["players"]["ids"] == ["a", "b"]

    async def test_agones_calls_show_on_the_local_event_stream(self, agones: AgonesFactory) -> None:
        """An Agones Ready() is a state change on /v1/events too (ready, then active)."""
        client = await agones()
        url = client.handle.url + "/v1/events"
        async with client.http.get(url) as events:
            assert events.status == 200

            async def next_state() -> dict[str, Any]:
                async with asyncio.timeout(5):
                    while True:
                        line = await events.content.readline()
                        if line.startswith(b"data: "):
                            data: dict[str, Any] = json.loads(line[6:])
                            return data

            assert (await next_state())["state"] == "starting"
            await client.call("POST", "/ready", {})
            ready = await next_state()
            assert (ready["state"], ready["ready_source"]) == ("ready", "agones")
            assert (await next_state())["state"] == "active"

    async def test_several_watchers_and_one_that_leaves(self, agones: AgonesFactory) -> None:
        """Every watcher gets each change; a watcher that disconnects is dropped at once."""
        client = await agones()
        facade = client.facade
        async with open_watch(client) as one, open_watch(client) as two:
            await one.next()
            await two.next()
            async with open_watch(client) as three:
                await three.next()
                assert len(facade.watch.watchers) == 3
            async with asyncio.timeout(5):
                while len(facade.watch.watchers) != 2:
                    await asyncio.sleep(0.01)
            await client.call("POST", "/ready", {})
            assert (await one.next())["status"]["state"] == "Allocated"
            assert (await two.next())["status"]["state"] == "Allocated"

    async def test_watchers_are_bounded(self, agones: AgonesFactory) -> None:
        """Beyond MAX_WATCHERS a watch is refused (429, code 8) instead of costing memory."""
        client = await agones()
        responses = [
            await client.http.get(client.url + "/watch/gameserver") for _ in range(MAX_WATCHERS)
        ]
        try:
            status, body = await client.call("GET", "/watch/gameserver")
            assert (status, body["code"]) == (429, 8)
        finally:
            for response in responses:
                response.close()

    async def test_the_stream_stays_open_after_shutdown(self, agones: AgonesFactory) -> None:
        """The watch is not closed at Shutdown (Agones' REST client breaks if it is)."""
        client = await agones(SIDECAR_MATCH_END_GRACE="0")
        async with open_watch(client) as watch:
            await watch.next()
            await client.call("POST", "/shutdown", {})
            await watch.until(lambda gs: gs["status"]["state"] == "Shutdown")
            await client.handle.wait_state("stopped")
            # The platform accepted the stop: Kubernetes would set deletionTimestamp now.
            gone = await watch.until(lambda gs: gs["object_meta"]["deletion_timestamp"] != "0")
            assert gone["status"]["state"] == "Shutdown"
            with pytest.raises(TimeoutError):
                await watch.next(timeout=0.2)
            assert not watch.response.content.at_eof()

    async def test_websocket_watch(self, agones: AgonesFactory) -> None:
        """A WebSocket upgrade on the same path: one text frame per GameServer (Unreal SDK)."""
        client = await agones(SIDECAR_AGONES_AUTO_ALLOCATE="false")
        async with client.http.ws_connect(client.url + "/watch/gameserver") as ws:
            first = json.loads(await ws.receive_str(timeout=5))
            assert first["result"]["status"]["state"] == "Scheduled"
            await client.call("POST", "/reserve", {})
            reserved = json.loads(await ws.receive_str(timeout=5))
            assert reserved["result"]["status"]["state"] == "Reserved"
            await ws.close()
        async with asyncio.timeout(5):
            while client.facade.watch.watchers:
                await asyncio.sleep(0.01)

    async def test_websocket_closed_by_the_server_at_exit(self, agones: AgonesFactory) -> None:
        """When the sidecar closes, WebSocket watchers get a close frame, not a hang."""
        client = await agones()
        async with client.http.ws_connect(client.url + "/watch/gameserver") as ws:
            await ws.receive_str(timeout=5)
            await client.facade.close()
            message = await ws.receive(timeout=5)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


# Every call that takes a string, each given one holding a lone surrogate (a JSON escape of half
# a pair): `"\ud800"` is written into the body as is, so json.dumps does not pair it.
LONE_SURROGATE_CALLS = [
    ("PUT", "/metadata/annotation", '{"key": "a", "value": "\\ud800"}'),
    ("PUT", "/metadata/annotation", '{"key": "\\udc00", "value": "v"}'),
    ("PUT", "/metadata/label", '{"key": "a", "value": "\\ud800"}'),
    ("PUT", "/metadata/label", '{"key": "x\\ud800", "value": "v"}'),
    ("POST", "/v1beta1/lists/maps:addValue", '{"value": "\\ud800"}'),
    ("POST", "/v1beta1/lists/maps:removeValue", '{"value": "\\ud800"}'),
    ("PATCH", "/v1beta1/lists/maps?update_mask=values", '{"values": ["\\udc00"]}'),
    ("PATCH", "/v1beta1/lists/players?update_mask=values", '{"values": ["\\udc00"]}'),
    ("POST", "/v1beta1/lists/players:addValue", '{"value": "\\ud800"}'),
    ("POST", "/alpha/player/connect", '{"playerID": "p\\ud800"}'),
    ("POST", "/alpha/player/disconnect", '{"playerID": "\\ud800"}'),
    ("PATCH", "/v1beta1/counters/rooms", '{"countDiff": 1, "x": "\\ud800"}'),
]


class TestTextThatIsNotText:
    @pytest.mark.parametrize(("method", "path", "body"), LONE_SURROGATE_CALLS)
    async def test_a_lone_surrogate_is_invalid_argument(
        self, agones: AgonesFactory, tmp_path: Any, method: str, path: str, body: str
    ) -> None:
        """400 with Agones' error shape (code 3) and nothing changed; it was a 500 in the local
        API's shape and a traceback (UnicodeEncodeError while sizing the GameServer)."""
        manifest = tmp_path / "gs.json"
        manifest.write_text(json.dumps(MANIFEST))
        client = await agones(SIDECAR_AGONES_GAMESERVER=str(manifest))
        before = await client.gameserver()
        status, answer = await client.call(method, path, data=body.encode())
        assert (status, answer["code"]) == (400, 3), answer
        assert "surrogate" in answer["message"]
        swagger.check_error(answer)
        assert await client.gameserver() == before

    async def test_a_surrogate_pair_is_one_character(self, agones: AgonesFactory) -> None:
        """Both halves escaped make one character, kept and shown as such."""
        client = await agones()
        body = b'{"key": "a", "value": "\\ud83d\\ude00"}'
        assert (await client.call("PUT", "/metadata/annotation", data=body))[0] == 200
        annotations = (await client.gameserver())["object_meta"]["annotations"]
        assert annotations == {"agones.dev/sdk-a": "\N{GRINNING FACE}"}

    async def test_names_in_the_path_that_are_not_utf8(self, agones: AgonesFactory) -> None:
        """A counter or list name percent-encoding bytes that are not UTF-8 is an unknown
        name (Agones' refusal), never a 500 of the server's own."""
        client = await agones()
        for path in ("/v1beta1/lists/%ED%A0%80", "/v1beta1/counters/%FF"):
            status, answer = await client.call("GET", path)
            assert (status, answer["code"]) == (500, 2), answer
