"""Request bodies of the local API (SPEC §7). Unknown fields are refused (422).

Responses are plain dicts built by the API module: they are on the hot path, and a JSON dump
of a dict is cheaper than building a model per request.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from sidecar.lifecycle import ROSTER_CAP

MAX_RESULT_BYTES = 16 * 1024


def _printable_id(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must contain printable characters only")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


PlayerId = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable_id)]
Seconds = Annotated[float, Field(ge=0), AfterValidator(_finite)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class PlayerBody(_Body):
    player_id: PlayerId


class ConnectBody(_Body):
    player_id: PlayerId
    # SPEC §12: the matchmaker ticket this player brings (its id is checked against the match).
    ticket_id: PlayerId | None = None


class PlayersBody(_Body):
    # The roster cap, here too so that the request schema states it.
    player_ids: list[PlayerId] | None = Field(default=None, max_length=ROSTER_CAP)
    count: int | None = Field(default=None, ge=0, le=ROSTER_CAP)

    @model_validator(mode="after")
    def _exactly_one(self) -> PlayersBody:
        if (self.player_ids is None) == (self.count is None):
            raise ValueError('give exactly one of "player_ids" or "count"')
        return self


class HoldBody(_Body):
    seconds: Seconds


class MatchStartBody(_Body):
    match_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class MatchEndBody(_Body):
    result: Any = None
    grace_seconds: Seconds | None = None

    @model_validator(mode="after")
    def _result_size(self) -> MatchEndBody:
        if self.result is not None:
            size = len(json.dumps(self.result, separators=(",", ":")).encode())
            if size > MAX_RESULT_BYTES:
                raise ValueError(
                    f"result is {size} bytes of JSON; the limit is {MAX_RESULT_BYTES} (16 KiB)"
                )
        return self


class ShutdownBody(_Body):
    reason: Annotated[str, Field(max_length=512)] | None = None
    grace_seconds: Seconds | None = None
    log_storage: Annotated[str, Field(min_length=1, max_length=256)] | None = None
