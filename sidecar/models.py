"""Request bodies of the local API (SPEC §7), as pydantic models: the single source of their
shapes for the OpenAPI document and the tests. Unknown fields are refused (422).

The running sidecar does not load pydantic (~10 MB of RSS): `packaging/gen_bodies.py` compiles
these models into `sidecar/bodies.py`, checked by `sidecar/body_check.py`, and the tests fail
when the compiled form is stale or answers differently. So the rules live in body_check.py, and
only schema features body_check.py knows may be used here (the generator says which).

Responses are plain dicts built by the API module: they are on the hot path, and a JSON dump
of a dict is cheaper than building a model per request.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from sidecar.body_check import (
    exactly_one_of_ids_or_count,
    finite,
    printable_id,
    result_within_limit,
)
from sidecar.lifecycle import ROSTER_CAP
from sidecar.match import MAX_ID_CHARS

# Ids the sidecar shows and sends on (status, metrics labels, the result delivery's
# Idempotency-Key): 1-128 printable characters, so no control character, line break or lone
# surrogate gets into a header or a label. The matchmaker's ids are held to the same rule
# (sidecar.match.usable_id).
PlayerId = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(printable_id)
]
Seconds = Annotated[float, Field(ge=0), AfterValidator(finite)]
# The longest drain a request may ask for. A grace is minutes at most; a longer one is a mistake
# that would keep a finished server billing (SIDECAR_MAX_DURATION, when set, ends it sooner).
MAX_GRACE_SECONDS = 3600
Grace = Annotated[float, Field(ge=0, le=MAX_GRACE_SECONDS), AfterValidator(finite)]


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

    _exactly_one = model_validator(mode="after")(exactly_one_of_ids_or_count)


class HoldBody(_Body):
    seconds: Seconds


class MatchStartBody(_Body):
    match_id: PlayerId | None = None


class MatchEndBody(_Body):
    result: Any = None
    grace_seconds: Grace | None = None

    _result_size = model_validator(mode="after")(result_within_limit)


class ShutdownBody(_Body):
    reason: Annotated[str, Field(max_length=512)] | None = None
    grace_seconds: Grace | None = None
    log_storage: Annotated[str, Field(min_length=1, max_length=256)] | None = None
