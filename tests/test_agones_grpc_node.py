"""The published Agones Node SDK (@google-cloud/agones-sdk, pinned in tests/agones_node/) drives
the whole Agones call sequence over gRPC against a live sidecar (SPEC §10.1): Ready, Reserve,
Allocate, the Health stream, GetGameServer, SetLabel, SetAnnotation, Watch, the alpha players,
the beta counters and lists, Shutdown — one self-stop, and the same GameServer on REST.

CI installs the SDK (.ci/run: `npm ci` in tests/agones_node); without node or the installed
package these tests are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.agones_client import Agones
from tests.conftest import Launch, SidecarFactory, free_port

NODE_DIR = Path(__file__).resolve().parent / "agones_node"
SEQUENCE = NODE_DIR / "sequence.js"
NODE = shutil.which("node")
EXAMPLE = NODE_DIR.parent.parent / "examples" / "agones_node_game" / "server.js"

# Skipped on a laptop without the SDK; never in CI, where .ci/run installs it: a missing SDK
# there must fail these tests, not hide them.
pytestmark = pytest.mark.skipif(
    (NODE is None or not (NODE_DIR / "node_modules" / "@google-cloud" / "agones-sdk").is_dir())
    and not os.environ.get("CI"),
    reason="needs node and the Agones Node SDK: `npm ci --prefix tests/agones_node` (.ci/run does)",
)

# Agones' local-mode GameServer (reference/agones/README.md), plus a list of the game's own.
MANIFEST = (
    "status:\n"
    "  counters:\n    rooms: {count: 1, capacity: 10}\n"
    "  lists:\n"
    "    players: {capacity: 100, values: [test0, test1, test2]}\n"
    "    maps: {capacity: 10, values: []}\n"
)


def steps(stdout: bytes) -> dict[str, dict[str, Any]]:
    """The sequence's JSON lines by step (other lines, the sidecar's own records, skipped)."""
    found: dict[str, dict[str, Any]] = {}
    for line in stdout.decode().splitlines():
        if line.startswith('{"step"'):
            record = json.loads(line)
            found[record.pop("step")] = record
    return found


def check_sequence(found: dict[str, dict[str, Any]]) -> None:
    """What the Node SDK saw, call by call, as Agones' SDK server would answer it."""
    assert "failed" not in found, found.get("failed")
    assert found["watch-first"]["name"] == "local"
    assert found["reserve"]["state"] == "Reserved"
    assert found["allocate"]["state"] == "Allocated"
    creation, uid = found["allocate"]["creation"], found["allocate"]["uid"]
    assert found["metadata"]["labels"] == [["agones.dev/sdk-creationTimestamp", str(creation)]]
    assert found["metadata"]["annotations"] == [["agones.dev/sdk-UID", uid]]
    assert found["players"] == {
        "capacity": 10,
        "connected": True,
        "again": False,
        "isConnected": True,
        "players": ["test0", "test1", "test2", "1234"],
        "countWith": 4,
    }
    assert found["players-after"] == {"disconnected": True, "count": 4}
    assert found["counters"] == {"before": [1, 10], "count": 40, "capacity": 42}
    assert found["counter-refused"] == {
        "code": 2,
        "details": "out of range. Count must be within range [0,Capacity]. "
        "Found Count: 43, Capacity: 42",
    }
    assert found["counter-missing"] == {"code": 2, "details": "counter not found: nope"}
    lists = found["lists"]
    assert (lists["contains"], lists["values"], lists["length"]) == (True, ["nuke"], 1)
    # setListCapacity: SDK 1.53 builds its FieldMask as `new FieldMask({Name: 'capacity'})`,
    # which google-protobuf reads as no paths; an empty mask changes nothing (docs/agones.md).
    assert lists["capacity"] == 10
    assert lists["players"] == ["test0", "test1", "test2", "5678"]
    assert found["list-refused"] == {
        "code": 2,
        "details": "already exists. Value: nuke already in List: maps",
    }
    assert found["shutdown"]["state"] == "Shutdown"
    watched = found["shutdown"]["watched"]
    assert watched[0] == "Allocated"
    assert watched[-1] == "Shutdown"
    assert "Reserved" in watched
    assert "health-error" not in found
    assert "watch-error" not in found


async def test_serve_mode_whole_sequence(sidecar: SidecarFactory, tmp_path: Path) -> None:
    """The Node SDK's sequence against `serve`: one self-stop, the GameServer shared with REST."""
    manifest = tmp_path / "gameserver.yaml"
    manifest.write_text(MANIFEST)
    handle = await sidecar(
        SIDECAR_AGONES="true",
        SIDECAR_AGONES_HTTP_PORT="0",
        SIDECAR_AGONES_GAMESERVER=str(manifest),
        SIDECAR_MATCH_END_GRACE="100ms",
    )
    grpc_server = handle.agent.agones_grpc
    assert grpc_server is not None
    assert NODE is not None
    node = await asyncio.create_subprocess_exec(
        NODE,
        str(SEQUENCE),
        env={**os.environ, "AGONES_SDK_GRPC_PORT": str(grpc_server.port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(node.communicate(), 45)
    assert node.returncode == 0, (stdout.decode(), stderr.decode())
    check_sequence(steps(stdout))
    final = await handle.wait_state("stopped", timeout=10)
    assert final["stop_reason"] == "shutdown_requested"
    assert final["stop"]["outcome"] == "dry_run"
    rest = await Agones(handle).gameserver()
    assert rest["object_meta"]["labels"] == {
        "agones.dev/sdk-creationTimestamp": rest["object_meta"]["creation_timestamp"]
    }
    assert rest["object_meta"]["annotations"] == {"agones.dev/sdk-UID": rest["object_meta"]["uid"]}
    assert rest["status"]["counters"] == {"rooms": {"count": "40", "capacity": "42"}}
    assert rest["status"]["lists"]["maps"] == {"capacity": "10", "values": ["nuke"]}
    assert rest["status"]["players"]["ids"] == ["test0", "test1", "test2", "5678"]
    assert rest["status"]["state"] == "Shutdown"
    assert handle.agent.lifecycle.decision is not None


@pytest.mark.slow
async def test_run_mode_game_finds_the_port(launch: Launch, tmp_path: Path) -> None:
    """`edgegap-sidecar run -- node …`: the game finds gRPC through AGONES_SDK_GRPC_PORT, and
    its Shutdown() is the one stop record."""
    manifest = tmp_path / "gameserver.yaml"
    manifest.write_text(MANIFEST)
    assert NODE is not None
    sc = await launch(
        "run",
        "--",
        NODE,
        str(SEQUENCE),
        SIDECAR_AGONES="true",
        SIDECAR_AGONES_HTTP_PORT="0",
        SIDECAR_AGONES_GAMESERVER=str(manifest),
        SIDECAR_MATCH_END_GRACE="5s",
        SIDECAR_LOG_FORMAT="json",
    )
    code, stdout, stderr = await sc.finish(timeout=60)
    check_sequence(steps(stdout))
    records = [
        json.loads(line)
        for line in stdout.decode().splitlines()
        if line.startswith("{") and '"sidecar.stop"' in line
    ]
    assert len(records) == 1, stdout.decode()[-2000:]
    assert records[0]["reason"] == "shutdown_requested"
    assert code == 0, stderr


async def udp(port: int, *commands: str) -> list[str]:
    """One datagram per command to the game, one reply each."""

    def exchange() -> list[str]:
        replies = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            for command in commands:
                sock.sendto(command.encode(), ("127.0.0.1", port))
                replies.append(sock.recv(1024).decode())
        return replies

    return await asyncio.to_thread(exchange)


@pytest.mark.slow
async def test_example_node_game_under_run(launch: Launch) -> None:
    """examples/agones_node_game, unchanged under `run`: players are the roster, its
    Shutdown() at the match's end is the one stop, its label shows."""
    assert NODE is not None
    game_port = free_port()
    sc = await launch(
        "run",
        "--",
        NODE,
        str(EXAMPLE),
        "--host",
        "127.0.0.1",
        "--port",
        str(game_port),
        "--health-interval",
        "0.2",
        SIDECAR_AGONES="true",
        SIDECAR_AGONES_HTTP_PORT="0",
        SIDECAR_MATCH_END_GRACE="100ms",
        SIDECAR_LOG_FORMAT="json",
        NODE_PATH=str(NODE_DIR / "node_modules"),
    )
    await sc.wait_output(b"listening on udp", timeout=30)
    replies = await udp(
        game_port, "JOIN alice", "JOIN bob", "SCORE alice 3", "LEAVE bob", "PING", "LEAVE alice"
    )
    assert replies == [
        "OK JOIN alice players=1",
        "OK JOIN bob players=2",
        "OK SCORE alice 3",
        "OK LEAVE bob players=1",
        "OK PING - players=1",
        "OK LEAVE alice players=0",
    ]
    # Dry-run: the stop is recorded, not sent; the platform's SIGTERM then ends the deployment.
    await sc.wait_output(b'"sidecar.stop"', timeout=15)
    sc.proc.send_signal(signal.SIGTERM)
    code, stdout, stderr = await sc.finish(timeout=30)
    text = stdout.decode()
    records = [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and "sidecar.stop" in line
    ]
    assert [record["reason"] for record in records] == ["shutdown_requested"], text[-3000:]
    assert records[0]["players_peak"] == 2
    assert "[agones-node-game] told Agones to shut down" in text
    assert "[agones-node-game] GameServer is Shutdown" in text
    assert "[agones-node-game] SIGTERM: exiting (shutdown was sent)" in text
    assert code in (0, 143), stderr
