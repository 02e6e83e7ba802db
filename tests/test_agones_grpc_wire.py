"""The hand-written proto3 codec (sidecar/agones/grpc_wire.py) against the official protobuf
runtime and classes generated from Agones' protos: what one writes, the other reads."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import json_format

from sidecar.agones import grpc_wire as pb
from tests.agones_protos import generate


@pytest.fixture(scope="module")
def protos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    """The official classes of sdk.proto, alpha.proto and beta.proto."""
    folder: Path = tmp_path_factory.mktemp("agones_protos")
    return generate(folder)


GAMESERVER: dict[str, Any] = {
    "object_meta": {
        "name": "9f3c1a2b7d4e",
        "namespace": "default",
        "uid": "9f3c1a2b7d4e",
        "resource_version": "7",
        "generation": "1",
        "creation_timestamp": "1796667567",
        "deletion_timestamp": "0",
        "annotations": {"agones.dev/sdk-UID": "ü-✓"},
        "labels": {"agones.dev/sdk-a": "b", "agones.dev/sdk-empty": ""},
    },
    "spec": {
        "health": {
            "disabled": True,
            "period_seconds": 5,
            "failure_threshold": 3,
            "initial_delay_seconds": 0,
        }
    },
    "status": {
        "state": "Allocated",
        "address": "203.0.113.7",
        "addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}],
        "ports": [{"name": "gameport", "port": 31504}, {"name": "", "port": 0}],
        "players": {"count": "2", "capacity": "10", "ids": ["p1", "p2"]},
        "counters": {
            "rooms": {"count": "0", "capacity": "10"},
            "big": {"count": "-5", "capacity": str(2**62)},
        },
        "lists": {
            "players": {"capacity": "1000", "values": ["p1", "p2"]},
            "empty": {"capacity": "0", "values": []},
        },
    },
}


def _json_names(data: Any) -> Any:
    """The dict as grpc_wire decodes it: int64 as numbers."""
    if isinstance(data, dict):
        return {key: _json_names(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_json_names(item) for item in data]
    if isinstance(data, str) and data.lstrip("-").isdigit():
        return int(data)
    return data


class TestAgainstProtobuf:
    def test_gameserver_encoded_by_hand_reads_in_protobuf(
        self, protos: dict[str, ModuleType]
    ) -> None:
        """The GameServer the sidecar sends decodes in the official runtime to the same object."""
        official = protos["sdk_pb2"].GameServer.FromString(pb.encode(pb.GAMESERVER, GAMESERVER))
        as_json = json_format.MessageToDict(
            official, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        assert _json_names(as_json) == _json_names(GAMESERVER)

    def test_gameserver_written_by_protobuf_decodes_by_hand(
        self, protos: dict[str, ModuleType]
    ) -> None:
        """What protobuf writes (maps, nested messages, negatives) decodes to the same dict."""
        official = protos["sdk_pb2"].GameServer
        message = json_format.ParseDict(GAMESERVER, official())
        decoded = pb.decode(pb.GAMESERVER, message.SerializeToString())
        assert official.FromString(pb.encode(pb.GAMESERVER, decoded)) == message
        assert decoded["object_meta"]["resource_version"] == "7"
        assert decoded["object_meta"]["creation_timestamp"] == 1796667567
        assert decoded["status"]["counters"]["big"] == {"count": -5, "capacity": 2**62}
        assert decoded["status"]["lists"]["empty"] == {"capacity": 0, "values": []}
        assert decoded["status"]["ports"][1] == {"name": "", "port": 0}
        assert decoded["spec"]["health"]["disabled"] is True

    def test_wrappers_tell_not_given_from_zero(self, protos: dict[str, ModuleType]) -> None:
        """Int64Value: absent is None, a given 0 is 0; countDiff 0 is 0."""
        beta = protos["beta_pb2"]
        given = beta.UpdateCounterRequest(
            counterUpdateRequest=beta.CounterUpdateRequest(name="rooms", countDiff=-3)
        )
        given.counterUpdateRequest.count.value = 0
        decoded = pb.decode(pb.UPDATE_COUNTER, given.SerializeToString())
        assert decoded["counterUpdateRequest"] == {
            "name": "rooms",
            "count": {"value": 0},
            "capacity": None,
            "countDiff": -3,
        }
        assert pb.decode(pb.UPDATE_COUNTER, b"") == {"counterUpdateRequest": None}

    def test_field_mask_and_list(self, protos: dict[str, ModuleType]) -> None:
        """UpdateListRequest: the list and the mask's paths, both ways."""
        beta = protos["beta_pb2"]
        request = beta.UpdateListRequest(
            list=beta.List(name="players", capacity=5, values=["a", "b"]),
        )
        request.update_mask.paths.extend(["capacity", "values"])
        raw = request.SerializeToString()
        decoded = pb.decode(pb.UPDATE_LIST, raw)
        assert decoded == {
            "list": {"name": "players", "capacity": 5, "values": ["a", "b"]},
            "update_mask": {"paths": ["capacity", "values"]},
        }
        assert beta.UpdateListRequest.FromString(pb.encode(pb.UPDATE_LIST, decoded)) == request

    @pytest.mark.parametrize(
        ("module", "name", "description", "values"),
        [
            ("sdk_pb2", "KeyValue", pb.KEY_VALUE, {"key": "k", "value": "v"}),
            ("sdk_pb2", "Duration", pb.DURATION, {"seconds": -1}),
            ("sdk_pb2", "Empty", pb.EMPTY, {}),
            ("alpha_pb2", "Count", pb.COUNT, {"count": 2**63 - 1}),
            ("alpha_pb2", "Bool", pb.BOOL_MESSAGE, {"bool": True}),
            ("alpha_pb2", "PlayerID", pb.PLAYER_ID, {"playerID": "p-1"}),
            ("alpha_pb2", "PlayerIDList", pb.PLAYER_ID_LIST, {"list": ["a", "", "c"]}),
            ("beta_pb2", "Counter", pb.COUNTER, {"name": "c", "count": 3, "capacity": 0}),
            ("beta_pb2", "GetCounterRequest", pb.GET_COUNTER, {"name": "c"}),
            ("beta_pb2", "GetListRequest", pb.GET_LIST, {"name": "l"}),
            ("beta_pb2", "AddListValueRequest", pb.LIST_VALUE_ADD, {"name": "l", "value": "v"}),
            (
                "beta_pb2",
                "RemoveListValueRequest",
                pb.LIST_VALUE_REMOVE,
                {"name": "l", "value": "v"},
            ),
        ],
    )
    def test_every_small_message_both_ways(
        self,
        protos: dict[str, ModuleType],
        module: str,
        name: str,
        description: pb.Message,
        values: dict[str, Any],
    ) -> None:
        """Each request and answer message: the same bytes as protobuf, the same values back."""
        official = getattr(protos[module], name)(**values)
        assert pb.encode(description, values) == official.SerializeToString()
        assert pb.decode(description, official.SerializeToString()) == values

    def test_every_described_field_matches_the_proto(self, protos: dict[str, ModuleType]) -> None:
        """Names and numbers of the descriptions are those of the .proto files."""
        pairs = [
            (pb.GAMESERVER, protos["sdk_pb2"].GameServer),
            (pb.UPDATE_COUNTER, protos["beta_pb2"].UpdateCounterRequest),
            (pb.UPDATE_LIST, protos["beta_pb2"].UpdateListRequest),
        ]
        seen: set[str] = set()

        def compare(mine: pb.Message, descriptor: Any) -> None:
            if mine.name in seen:
                return
            seen.add(mine.name)
            assert mine.name == descriptor.full_name
            assert {f.number: f.name for f in mine.fields} == {
                f.number: f.name for f in descriptor.fields
            }
            for f in mine.fields:
                sub = descriptor.fields_by_number[f.number].message_type
                if isinstance(f.kind, pb.Message):
                    if f.map:
                        sub = sub.fields_by_name["value"].message_type
                    compare(f.kind, sub)

        for mine, official in pairs:
            compare(mine, official.DESCRIPTOR)
        assert len(seen) >= 12


class TestMalformed:
    @pytest.mark.parametrize(
        "data",
        [
            b"\x0a",
            b"\x0a\x05ab",
            b"\x08",
            b"\x08" + b"\xff" * 11,
            b"\x00",
            b"\x0b",
            b"\x0a\x02\xff\xfe",
        ],
    )
    def test_bad_bytes_are_a_decode_error(self, data: bytes) -> None:
        """Truncated, overlong, field 0, groups, bad UTF-8: DecodeError, never anything else."""
        with pytest.raises(pb.DecodeError):
            pb.decode(pb.KEY_VALUE, data)

    def test_unknown_fields_are_skipped(self) -> None:
        """Fields a newer SDK adds are ignored, whatever their wire type."""
        data = (
            b"\x0a\x01k"
            + b"\x18\x07"
            + b"\x21"
            + b"\x00" * 8
            + b"\x2d"
            + b"\x00" * 4
            + b"\x12\x01v"
        )
        assert pb.decode(pb.KEY_VALUE, data) == {"key": "k", "value": "v"}

    def test_decoding_work_is_bounded_by_fields_not_bytes(self) -> None:
        """A message of nothing but tiny unknown fields (`08 00`, two bytes each) is refused after
        MAX_FIELDS fields, however long it is: the largest one a call may send costs about what
        the largest legitimate request (an UpdateList of a full list) does, not 500 times more."""
        from sidecar.agones.grpc_server import MAX_MESSAGE_BYTES

        assert pb.decode(pb.EMPTY, b"\x08\x00" * pb.MAX_FIELDS) == {}
        with pytest.raises(pb.DecodeError, match="too many fields"):
            pb.decode(pb.EMPTY, b"\x08\x00" * (pb.MAX_FIELDS + 1))
        nested = pb.encode(pb.LIST, {"name": "x", "values": ["v"] * pb.MAX_FIELDS})
        with pytest.raises(pb.DecodeError, match="too many fields"):
            pb.decode(pb.UPDATE_LIST, b"\x0a" + _varint(len(nested)) + nested)

        garbage = b"\x08\x00" * (MAX_MESSAGE_BYTES // 2)
        full_list = pb.encode(
            pb.UPDATE_LIST,
            {"list": {"name": "players", "values": [f"player-{i:06d}" for i in range(1000)]}},
        )
        assert len(pb.decode(pb.UPDATE_LIST, full_list)["list"]["values"]) == 1000

        def cost(data: bytes, message: pb.Message) -> float:
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                with contextlib.suppress(pb.DecodeError):
                    pb.decode(message, data)
                best = min(best, time.perf_counter() - started)
            return best

        # Generous: the bound is ~2x; before it, 4 MiB of these took ~1000x (1.3 s).
        assert cost(garbage, pb.EMPTY) < 20 * cost(full_list, pb.UPDATE_LIST)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
