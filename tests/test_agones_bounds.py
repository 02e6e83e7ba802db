"""The Agones GameServer stays bounded like a Kubernetes object (SPEC §11 Round 2): no change,
through either API, takes its compact JSON past 1 MiB, a refused change leaves it byte for byte
as it was, and a watcher that does not read is sent the latest GameServer, not a backlog."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.agones.counters import Counter, ListState, Refused
from sidecar.agones.gameserver import MAX_GAMESERVER_BYTES, FacadeOptions, GameServer
from sidecar.agones.manifest import GameServerManifest
from sidecar.agones.sdk import AgonesSdk
from sidecar.config import load_settings
from sidecar.deployment import DeploymentInfo
from sidecar.errors import ConfigError
from sidecar.lifecycle import Lifecycle, RosterFull, TimerSettings
from tests.agones_client import Agones, open_watch
from tests.conftest import SidecarFactory, base_env

AgonesFactory = Callable[..., Awaitable[Agones]]

# The facade takes bodies up to 320 KiB: three of these fill a GameServer to ~900 KB.
BIG_VALUE = 300_000


@pytest.fixture
def agones(sidecar: SidecarFactory, tmp_path: Path) -> AgonesFactory:
    """Factory: a facade whose manifest declares a list `big` and a counter `rounds`."""
    manifest = tmp_path / "gameserver.json"
    manifest.write_text(
        json.dumps(
            {
                "spec": {
                    "lists": {"big": {"capacity": 1000}},
                    "counters": {"rounds": {"count": 0, "capacity": 10}},
                }
            }
        )
    )

    async def make(**variables: str) -> Agones:
        handle = await sidecar(
            SIDECAR_AGONES="true",
            SIDECAR_AGONES_HTTP_PORT="0",
            SIDECAR_AGONES_GAMESERVER=str(manifest),
            **variables,
        )
        return Agones(handle)

    return make


async def raw_gameserver(client: Agones) -> bytes:
    async with client.http.get(client.url + "/gameserver") as response:
        assert response.status == 200
        return await response.read()


async def fill(client: Agones, room: int) -> bytes:
    """Add list values until the GameServer is `room` bytes short of the bound (± a version
    digit); returns its JSON."""
    body = await raw_gameserver(client)
    index = 0
    while MAX_GAMESERVER_BYTES - len(body) > room:
        # A value and its comma (and quotes) per addition; never over what one body may carry.
        wanted = min(BIG_VALUE, MAX_GAMESERVER_BYTES - len(body) - room - 3)
        value = f"{index:06d}" + "x" * max(0, wanted - 6)
        status, answer = await client.call("POST", "/v1beta1/lists/big:addValue", {"value": value})
        assert status == 200, answer
        body = await raw_gameserver(client)
        index += 1
    assert len(body) <= MAX_GAMESERVER_BYTES
    return body


class TestBound:
    async def test_list_values_stop_before_one_mebibyte(self, agones: AgonesFactory) -> None:
        """300 KB list values: the one that would pass 1 MiB is refused (500, code 2)."""
        client = await agones()
        accepted = 0
        for index in range(6):
            value = f"{index}" + "v" * BIG_VALUE
            status, answer = await client.call(
                "POST", "/v1beta1/lists/big:addValue", {"value": value}
            )
            if status != 200:
                assert (status, answer["code"]) == (500, 2), answer
                assert "1 MiB" in answer["message"]
                break
            accepted += 1
        assert accepted == 3
        body = await raw_gameserver(client)
        assert len(body) <= MAX_GAMESERVER_BYTES
        assert len(json.loads(body)["status"]["lists"]["big"]["values"]) == 3

    async def test_every_kind_of_change_is_refused_at_the_bound(
        self, agones: AgonesFactory
    ) -> None:
        """Label, annotation, player (alpha, list, local API), counter, list, capacity: each one
        that would pass 1 MiB is refused and the GameServer stays byte for byte the same."""
        client = await agones()
        before = await fill(client, room=8)
        refused: list[tuple[str, str, Any]] = [
            ("PUT", "/metadata/label", {"key": "mode", "value": "ranked-2v2-europe"}),
            ("PUT", "/metadata/annotation", {"key": "note", "value": "a longer annotation"}),
            ("POST", "/alpha/player/connect", {"playerID": "player-0123456789"}),
            ("PUT", "/alpha/player/capacity", {"count": "9000000000000000000"}),
            ("POST", "/v1beta1/lists/players:addValue", {"value": "player-0123456789"}),
            ("PATCH", "/v1beta1/lists/players", {"values": ["player-0123456789"]}),
            ("PATCH", "/v1beta1/counters/rounds", {"capacity": "9000000000000000000"}),
            ("POST", "/v1beta1/lists/big:addValue", {"value": "one-more-value"}),
        ]
        for method, path, payload in refused:
            status, answer = await client.call(method, path, payload)
            assert (status, answer["code"]) == (500, 2), (path, answer)
            assert await raw_gameserver(client) == before, path
        # The roster is shared with the local API: refused there as the roster refuses (422).
        status, answer = await client.handle.call(
            "POST", "/v1/players/connect", {"player_id": "player-0123456789"}
        )
        assert (status, answer["error"]["code"]) == (422, "roster_full"), answer
        status, answer = await client.handle.call(
            "PUT", "/v1/players", {"player_ids": ["player-0123456789"]}
        )
        assert (status, answer["error"]["code"]) == (422, "roster_full"), answer
        assert await raw_gameserver(client) == before
        # Shrinking always works, and then what fits fits again.
        values = json.loads(before)["status"]["lists"]["big"]["values"]
        status, _ = await client.call(
            "POST", "/v1beta1/lists/big:removeValue", {"value": values[0]}
        )
        assert status == 200
        status, _ = await client.call("POST", "/alpha/player/connect", {"playerID": "p1"})
        assert status == 200
        status, _ = await client.call("PUT", "/metadata/label", {"key": "mode", "value": "x"})
        assert status == 200

    async def test_the_bound_is_exact(self, agones: AgonesFactory) -> None:
        """A label that brings it to exactly 1 MiB is kept; one byte more is refused."""
        client = await agones()
        body = await fill(client, room=200)
        assert json.loads(body)["object_meta"]["annotations"] == {}
        # `"agones.dev/sdk-k":"<value>"` in an empty annotations object, the version as long.
        overhead = len('"agones.dev/sdk-k":""')
        room = MAX_GAMESERVER_BYTES - len(body) - overhead
        assert 0 < room < 200
        too_long = "a" * (room + 1)
        status, answer = await client.call(
            "PUT", "/metadata/annotation", {"key": "k", "value": too_long}
        )
        assert (status, answer["code"]) == (500, 2), answer
        assert await raw_gameserver(client) == body
        status, _ = await client.call(
            "PUT", "/metadata/annotation", {"key": "k", "value": too_long[:-1]}
        )
        assert status == 200
        assert len(await raw_gameserver(client)) == MAX_GAMESERVER_BYTES

    def test_a_manifest_above_the_bound_is_a_configuration_error(self, tmp_path: Path) -> None:
        """A manifest whose GameServer would start above 1 MiB is refused at start-up (exit 2)."""
        # 1,000 values of 200 characters, anchored once (a 200 KB file) and named by six lists.
        values = ", ".join(f"{n:04d}" + "v" * 196 for n in range(1000))
        lists = "".join(f"    l{n}: {{capacity: 1000, values: *values}}\n" for n in range(6))
        path = tmp_path / "gameserver.yaml"
        path.write_text(f"values: &values [{values}]\nstatus:\n  lists:\n{lists}")
        assert path.stat().st_size < 300_000
        with pytest.raises(ConfigError) as caught:
            load_settings(base_env(SIDECAR_AGONES="true", SIDECAR_AGONES_GAMESERVER=str(path)))
        assert caught.value.variable == "SIDECAR_AGONES_GAMESERVER"
        assert "1 MiB" in str(caught.value)


class TestWatchCoalesces:
    async def test_a_watcher_that_does_not_read_gets_the_latest_not_a_backlog(
        self, agones: AgonesFactory
    ) -> None:
        """A stalled watcher, once it reads, gets the newest GameServer and few of the others."""
        client = await agones()
        await fill(client, room=200_000)  # ~850 KB per line
        facade = client.facade
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", client.facade.port))
            request = b"GET /watch/gameserver HTTP/1.1\r\nHost: x\r\n\r\n"
            await loop.sock_sendall(sock, request)
            async with asyncio.timeout(5):
                while not facade.watch.watchers:
                    await asyncio.sleep(0.01)
            changes = 40
            for index in range(changes):
                status, _ = await client.call(
                    "PUT", "/metadata/label", {"key": "round", "value": f"r{index}"}
                )
                assert status == 200
            latest = json.loads(await raw_gameserver(client))
            received = bytearray()
            newest = f'"agones.dev/sdk-round":"r{changes - 1}"'.encode()
            async with asyncio.timeout(10):
                # Until the line with the newest change has arrived whole (its chunk's end).
                while not (
                    received.endswith(b"}\n\r\n") and newest in received[-(1 << 20) - len(newest) :]
                ):
                    chunk = await loop.sock_recv(sock, 1 << 20)
                    assert chunk, "the stream ended"
                    received += chunk
        lines = [line for line in bytes(received).split(b"\n") if b'{"result":' in line]
        # The first (current) GameServer, what the socket buffers held, then only the latest.
        assert len(lines) < changes // 2, len(lines)
        last = json.loads(lines[-1][lines[-1].index(b"{") :])["result"]
        assert last["object_meta"]["resource_version"] == latest["object_meta"]["resource_version"]

    async def test_the_core_wakes_a_stalled_watcher_once(self) -> None:
        """Without any transport: ten changes while a watcher does not read leave one update
        waiting, and what it then reads is the latest GameServer (nothing newer follows)."""
        now = [1000.0]
        sdk = AgonesSdk(
            Lifecycle(TimerSettings(), lambda: now[0]), FacadeOptions(), DeploymentInfo()
        )
        watcher = sdk.watch_game_server()
        async with contextlib.aclosing(watcher.updates()) as updates:
            await anext(updates)  # the current GameServer, at once
            for index in range(10):
                sdk.set_label("round", f"r{index}")
                await asyncio.sleep(0)  # one loop pass per change, as separate requests are
            await anext(updates)
            latest = json.loads(sdk.get_game_server())
            assert latest["object_meta"]["labels"] == {"agones.dev/sdk-round": "r9"}
            # A spaced check may still wake it, with nothing a transport would send again.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(anext(updates), 0.05)
                assert json.loads(sdk.get_game_server()) == latest
        sdk.unwatch(watcher)
        sdk.close()

    async def test_a_reader_of_a_large_gameserver_gets_updates_spaced(self) -> None:
        """A watcher that keeps up with a flood of changes to a ~900 KB GameServer is sent a
        few updates, the last one the latest, not one 900 KB copy per change."""
        sdk = AgonesSdk(
            Lifecycle(TimerSettings(), time.monotonic),
            FacadeOptions(players_list="players"),
            DeploymentInfo(),
        )
        sdk.gameserver.lists["big"] = ListState(1000, ())
        for index in range(3):
            sdk.add_list_value("big", f"{index}" + "v" * BIG_VALUE)
        watcher = sdk.watch_game_server()
        seen: list[int] = []
        latest = asyncio.Event()

        async def read() -> None:
            async for _ in watcher.updates():
                gameserver = json.loads(sdk.get_game_server())
                seen.append(int(gameserver["object_meta"]["resource_version"]))
                if gameserver["object_meta"]["labels"] == {"agones.dev/sdk-round": "r19"}:
                    latest.set()

        reader = asyncio.create_task(read())
        await asyncio.sleep(0)
        for index in range(20):
            sdk.set_label("round", f"r{index}")
            await asyncio.sleep(0)  # one loop pass per change: the reader keeps up
        async with asyncio.timeout(5):
            await latest.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        sdk.close()
        assert len(seen) < 10, seen  # the initial one, the first change, then the latest

    async def test_get_and_every_watcher_share_one_rendering(self, agones: AgonesFactory) -> None:
        """GET and the watchers are sent the same bytes, rendered once per change."""
        client = await agones()
        async with open_watch(client) as one, open_watch(client) as two:
            await one.next()
            await two.next()
            await client.call("PUT", "/metadata/label", {"key": "map", "value": "dust"})
            line_one = await one.response.content.readline()
            line_two = await two.response.content.readline()
            body = await raw_gameserver(client)
        assert line_one == line_two == b'{"result":' + body + b"}\n"
        gameserver = client.facade.gameserver
        assert gameserver.body() is gameserver.body()


class TestSizeWithoutRendering:
    def test_the_size_kept_change_by_change_is_the_rendered_size(self) -> None:
        """The bound is checked without rendering: the size it uses is always the real one."""
        now = [1000.0]
        lifecycle = Lifecycle(TimerSettings(), lambda: now[0])
        manifest = GameServerManifest(
            path="gameserver.yaml",
            labels={"mode": "ranked"},
            counters={"rounds": Counter(2, 5)},
            lists={"maps": ListState(50, ("dust",)), "empty": ListState(3, ())},
        )
        gameserver = GameServer(
            lifecycle, FacadeOptions(manifest=manifest), DeploymentInfo(request_id='r"1')
        )
        rng = random.Random(15)
        # JSON escapes, non-ASCII and a character outside the BMP: each counted as written.
        alphabet = 'ab"\\\n\x01é€😀/ '

        def text(most: int) -> str:
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))

        def name() -> str:
            return rng.choice(["a", "b", "c", "d-1", "e.f"])

        def player() -> str:
            return rng.choice(["p1", "p2", "p3", 'p"4', "pé5", "p6"])

        operations = [
            lambda: gameserver.set_label(name(), rng.choice(["", "x", "long-value-1"])),
            lambda: gameserver.set_annotation(name(), text(12)),
            lambda: gameserver.set_player_capacity(rng.choice([0, 7, 12345, 10**15])),
            lambda: gameserver.update_counter(
                "rounds",
                count=None,
                capacity=rng.choice([None, 9, 10**12]),
                diff=rng.choice([0, 1, -1]),
            ),
            lambda: gameserver.add_list_value(rng.choice(["maps", "empty"]), text(6)),
            lambda: gameserver.remove_list_value(
                "maps", rng.choice(list(gameserver.get_list("maps").values) or ["none"])
            ),
            lambda: gameserver.update_list(
                "maps", ["values", "capacity"], capacity=rng.choice([3, 50, 1000]), values=[text(5)]
            ),
            lambda: gameserver.player_connect(player()),
            lambda: gameserver.player_disconnect(player()),
            lambda: gameserver.add_list_value("players", player()),
            lambda: gameserver.update_list(
                "players",
                ["values", "capacity"],
                capacity=rng.choice([10, 1000]),
                values=[player()],
            ),
            lambda: lifecycle.set_players(ids=[player() for _ in range(rng.randint(0, 3))]),
            lambda: lifecycle.set_players(count=rng.randint(0, 12)),
            lambda: lifecycle.player_connected(player()),
            lambda: lifecycle.hold(rng.choice([0.0, 5.0])),
            lambda: now.__setitem__(0, now[0] + 3),
            lambda: lifecycle.heartbeat(),
        ]
        for step in range(3000):
            with contextlib.suppress(Refused, RosterFull):  # refusals change nothing either
                rng.choice(operations)()
            if step % rng.randint(1, 7) == 0:
                size = gameserver.size()
                assert size == len(gameserver.body()), step
        lifecycle.ready()
        lifecycle.match_started()
        assert gameserver.size() == len(gameserver.body())
