"""Agones' own REST conformance clients, replayed call for call.

Agones' `run-sdk-conformance-test-rest` runs `test/sdk/restapi/http-api-test.go` and then
`test/sdk/websocket-watch/ws-watch-test.go` against one SDK server, with FEATURE_GATES empty,
with `PlayerTracking=true`, and with `CountsAndLists=true` (the server seeded like Agones' local
mode: counter `rooms` {1, 10}, list `players` {100, [test0, test1, test2]}). The Go clients
themselves were run against the facade by hand (docs/agones.md); CI has no Go, so this replays
the same requests with the same bodies (as Go's encoding/json writes the generated models) and
asserts what the clients check, plus every answer against Agones' swagger.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests import agones_swagger as swagger
from tests.agones_client import Agones, open_watch
from tests.conftest import SidecarFactory

LOCAL_MODE_MANIFEST = Path(__file__).resolve().parent / "data" / "agones" / "local-gameserver.yaml"


async def sdk_call(
    client: Agones, method: str, path: str, template: str, body: bytes | None
) -> Any:
    """One call as the generated Go client makes it: 200 and a body of the swagger's type."""
    status, answer = await client.call(method, path, data=body)
    assert status == 200, (method, path, status, answer)
    swagger.check(method, template, answer)
    return answer


async def http_api_test(client: Agones, feature_gates: str) -> None:
    """test/sdk/restapi/http-api-test.go, step by step."""
    assert await sdk_call(client, "POST", "/ready", "/ready", b"{}") == {}
    async with open_watch(client) as watch:  # the client's WatchGameServer goroutine
        first = await watch.next()
        swagger.check("GET", "/watch/gameserver", {"result": first})
        assert first["object_meta"] is not None
        watched_uid = first["object_meta"]["uid"]
        assert await sdk_call(client, "POST", "/health", "/health", b"{}") == {}
        reserve = b'{"seconds":"5"}'
        assert await sdk_call(client, "POST", "/reserve", "/reserve", reserve) == {}
        assert await sdk_call(client, "POST", "/allocate", "/allocate", b"{}") == {}
        gameserver = await sdk_call(client, "GET", "/gameserver", "/gameserver", None)
        creation = gameserver["object_meta"]["creation_timestamp"]
        label = json.dumps({"key": "creationTimestamp", "value": creation}).encode()
        assert await sdk_call(client, "PUT", "/metadata/label", "/metadata/label", label) == {}
        assert watched_uid == gameserver["object_meta"]["uid"]
        annotation = json.dumps({"key": "UID", "value": watched_uid}).encode()
        path = "/metadata/annotation"
        assert await sdk_call(client, "PUT", path, path, annotation) == {}
        if "PlayerTracking=true" in feature_gates:
            await replay_players(client)
        if "CountsAndLists=true" in feature_gates:
            await replay_counters(client)
            await replay_lists(client)
        assert await sdk_call(client, "POST", "/shutdown", "/shutdown", b"{}") == {}
        # What the run leaves behind, as Agones' test-mode server would record it.
        meta = (await client.gameserver())["object_meta"]
        assert meta["labels"]["agones.dev/sdk-creationTimestamp"] == creation
        assert meta["annotations"]["agones.dev/sdk-UID"] == watched_uid
        shutdown = await watch.until(lambda gs: gs["status"]["state"] == "Shutdown")
        swagger.check("GET", "/watch/gameserver", {"result": shutdown})


async def replay_players(client: Agones) -> None:
    """testPlayers: capacity, connect, connected, list, disconnect, count."""
    capacity = "/alpha/player/capacity"
    assert await sdk_call(client, "PUT", capacity, capacity, b'{"count":"10"}') == {}
    assert await sdk_call(client, "GET", capacity, capacity, None) == {"count": "10"}
    player = b'{"playerID":"1234"}'
    connect = "/alpha/player/connect"
    assert await sdk_call(client, "POST", connect, connect, player) == {"bool": True}
    connected = "/alpha/player/connected/{playerID}"
    path = "/alpha/player/connected/1234"
    assert await sdk_call(client, "GET", path, connected, None) == {"bool": True}
    players = await sdk_call(
        client, "GET", "/alpha/player/connected", "/alpha/player/connected", None
    )
    assert len(players["list"]) > 0
    disconnect = "/alpha/player/disconnect"
    assert await sdk_call(client, "POST", disconnect, disconnect, player) == {"bool": True}
    count = "/alpha/player/count"
    assert await sdk_call(client, "GET", count, count, None) == {"count": "0"}


async def replay_counters(client: Agones) -> None:
    """testCounters: the local-mode counter `rooms`, updated twice."""
    get, patch = "/v1beta1/counters/{name}", "/v1beta1/counters/{counterUpdateRequest.name}"
    path = "/v1beta1/counters/rooms"
    assert await sdk_call(client, "GET", path, get, None) == {
        "name": "rooms",
        "count": "1",
        "capacity": "10",
    }
    body = b'{"capacity":"42","countDiff":"-1"}'
    assert await sdk_call(client, "PATCH", path, patch, body) == {
        "name": "rooms",
        "count": "0",
        "capacity": "42",
    }
    body = b'{"count":"40","capacity":"42"}'
    assert await sdk_call(client, "PATCH", path, patch, body) == {
        "name": "rooms",
        "count": "40",
        "capacity": "42",
    }


async def replay_lists(client: Agones) -> None:
    """testLists: the local-mode list `players`, replaced, added to, removed from."""
    path = "/v1beta1/lists/players"
    assert await sdk_call(client, "GET", path, "/v1beta1/lists/{name}", None) == {
        "name": "players",
        "capacity": "100",
        "values": ["test0", "test1", "test2"],
    }
    body = b'{"capacity":"10","values":["test123","test456"]}'
    assert await sdk_call(client, "PATCH", path, "/v1beta1/lists/{list.name}", body) == {
        "name": "players",
        "capacity": "10",
        "values": ["test123", "test456"],
    }
    add, remove = path + ":addValue", path + ":removeValue"
    template = "/v1beta1/lists/{name}:addValue"
    assert await sdk_call(client, "POST", add, template, b'{"value":"test789"}') == {
        "name": "players",
        "capacity": "10",
        "values": ["test123", "test456", "test789"],
    }
    template = "/v1beta1/lists/{name}:removeValue"
    assert await sdk_call(client, "POST", remove, template, b'{"value":"test456"}') == {
        "name": "players",
        "capacity": "10",
        "values": ["test123", "test789"],
    }


async def ws_watch_test(client: Agones) -> None:
    """test/sdk/websocket-watch/ws-watch-test.go, on the server the REST client just used."""
    async with client.http.ws_connect(client.url + "/watch/gameserver") as ws:
        async with client.http.post(client.url + "/reserve") as response:  # no body at all
            assert response.status == 200
        # The Go client polls /gameserver for up to 10 s for "Reserved"; after Shutdown it never
        # comes (Reserve changes nothing once a stop is decided), and the client goes on.
        status, gameserver = await client.call("GET", "/gameserver")
        assert status == 200
        assert "Reserved" not in json.dumps(gameserver)
        message = await ws.receive_str(timeout=5)
        assert "Reserved" in message or "Shutdown" in message
        assert json.loads(message)["result"]["status"]["state"] == "Shutdown"
        await ws.close()


Runner = Callable[..., Awaitable[Agones]]


@pytest.fixture
def agones(sidecar: SidecarFactory) -> Runner:
    async def make(**variables: str) -> Agones:
        handle = await sidecar(SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT="0", **variables)
        return Agones(handle)

    return make


class TestRestConformance:
    @pytest.mark.parametrize(
        ("feature_gates", "variables"),
        [
            pytest.param("", {}, id="no-feature-gates"),
            pytest.param("PlayerTracking=true", {}, id="PlayerTracking"),
            pytest.param(
                "CountsAndLists=true",
                {"SIDECAR_AGONES_GAMESERVER": str(LOCAL_MODE_MANIFEST)},
                id="CountsAndLists",
            ),
        ],
    )
    async def test_rest_client_then_watch_client(
        self, agones: Runner, feature_gates: str, variables: dict[str, str]
    ) -> None:
        """Agones' REST conformance sequence, then its WebSocket watch one, on one server."""
        client = await agones(**variables)
        await http_api_test(client, feature_gates)
        await ws_watch_test(client)
        status = (await client.handle.call("GET", "/v1/status"))[1]
        assert (status["state"], status["stop_reason"]) == ("draining", "shutdown_requested")
