"""Strings that are not text, over gRPC: the same GameServer as REST, so the same refusal and
nothing changed (the REST side is tests/test_agones_api.py::TestTextThatIsNotText)."""

from __future__ import annotations

import grpc
import pytest

from tests.test_agones_grpc import SdkFactory, grpc_sdk, protos

__all__ = ["grpc_sdk", "protos"]  # the fixtures, used by name

# KeyValue {key: "a", value: <a lone surrogate as UTF-8 would spell it, which it does not>}.
LONE_SURROGATE_KEY_VALUE = b"\x0a\x01a\x12\x03" + "\ud800".encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("method", ["SetAnnotation", "SetLabel"])
async def test_a_lone_surrogate_is_invalid_argument(grpc_sdk: SdkFactory, method: str) -> None:
    """Protobuf strings are UTF-8, and these bytes are not: INVALID_ARGUMENT, no change."""
    client = await grpc_sdk()
    before = await client.agones.gameserver()
    call = client.channel.unary_unary(f"/agones.dev.sdk.SDK/{method}")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(LONE_SURROGATE_KEY_VALUE)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await client.agones.gameserver() == before
