"""The request bodies the running sidecar checks (`sidecar/bodies.py`, `sidecar/body_check.py`)
against their single source, the pydantic models of `sidecar/models.py`: the compiled module is
up to date, it accepts and refuses exactly what pydantic does with the same errors, the
generator refuses what it cannot compile, and a serving sidecar never loads pydantic."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import pydantic_core
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sidecar import bodies, models
from sidecar.body_check import Body, BodyInvalid

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gen_bodies", ROOT / "packaging" / "gen_bodies.py")
assert _spec is not None
assert _spec.loader is not None
gen_bodies = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_bodies)

# pydantic-core releases before the newest checked (2.50) read integer text more narrowly (no
# leading "+" or zeros, no "0.0"). bodies.py reads it as the newest does, whatever is installed,
# so on an older pydantic-core a string in an integer field is not compared.
_CORE = tuple(int(part) for part in pydantic_core.__version__.split(".")[:2])
INT_TEXT_COMPARED = _CORE >= (2, 50)

PAIRS = [(model, getattr(bodies, model.__name__)) for model in gen_bodies.MODELS]


def test_the_compiled_module_is_up_to_date() -> None:
    assert (ROOT / "sidecar" / "bodies.py").read_text() == gen_bodies.render(), (
        "sidecar/bodies.py is stale: run python packaging/gen_bodies.py"
    )


def test_every_request_model_is_compiled() -> None:
    declared = {
        name
        for name, value in vars(models).items()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == models.__name__
        and not name.startswith("_")
    }
    assert declared == {model.__name__ for model in gen_bodies.MODELS}
    assert set(bodies.__all__) == declared


# --- same answers as pydantic ------------------------------------------------------------------
def outcome(model: type[Any], data: dict[str, Any]) -> tuple[str, Any]:
    """("ok", field values) or ("invalid", [(type, loc, msg), ...]), from either checker."""
    try:
        if issubclass(model, BaseModel):
            instance: Any = model.model_validate(data)
        else:
            instance = model.validate(data)
    except (ValidationError, BodyInvalid) as exc:
        return "invalid", [(e["type"], tuple(e["loc"]), e["msg"]) for e in exc.errors()]
    names = (
        list(model.model_fields) if issubclass(model, BaseModel) else [f.name for f in model.FIELDS]
    )
    values = {name: getattr(instance, name) for name in names}
    # Equal values of different types (1 and 1.0, True and 1) must not pass for the same answer.
    return "ok", json.dumps(values, sort_keys=True, default=repr) + repr(
        {k: type(v).__name__ for k, v in values.items()}
    )


# pydantic-core reads "0-1" as -1 (leading zeros dropped, then a sign) but refuses "0+4";
# bodies.py refuses both (a 422 either way, only the message differs), so they are not compared.
_SIGN_AFTER_ZEROS = re.compile(r"^\s*[+-]?0[0_]*[+-]")


def same(model: type[BaseModel], body: type[Body], data: dict[str, Any]) -> None:
    count = data.get("count")
    if isinstance(count, str) and (not INT_TEXT_COMPARED or _SIGN_AFTER_ZEROS.match(count)):
        return
    expected = outcome(model, data)
    assert outcome(body, data) == expected, f"{model.__name__} {data!r}"


numeric_text = st.one_of(
    st.from_regex(r"\A\s?[+-]?[0-9_]{0,6}(\.[0-9_]{0,3})?([eE][+-]?[0-9]{1,3})?\s?\Z"),
    st.sampled_from(
        [
            "inf",
            "-inf",
            "nan",
            "Infinity",
            " 1 ",
            "1_000",
            "1__0",
            "_1",
            "1_",
            "0x10",
            "1.0",
            "1.50",
            "-0",
            "+5",
            "٣",
            "1e3",
            "",
            " ",
            "\t7\n",
            "\uff11",  # a fullwidth digit one: Python reads it, pydantic does not
        ]
    ),
)
ids = st.one_of(
    st.text(max_size=130),
    st.text(alphabet=st.characters(codec="ascii"), min_size=126, max_size=130),
    st.sampled_from(["", "a", "a\n", "\x00", "é", "a" * 128, "a" * 129, "\u2028", " "]),
)
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, -1, 10_000, 10_001, 10**400, True, False, -0.0, 0.5, 1.0, 2.0**53]),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, ids, numeric_text)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)
field_values = st.one_of(scalars, st.lists(st.one_of(ids, scalars), max_size=6), json_values)


@st.composite
def payloads(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    names = [*model.model_fields, "extra", "x"]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    return {name: draw(field_values) for name in chosen}


@pytest.mark.parametrize(("model", "body"), PAIRS, ids=[m.__name__ for m, _ in PAIRS])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_same_answers_as_pydantic(model: type[BaseModel], body: type[Body], data: Any) -> None:
    same(model, body, data.draw(payloads(model)))


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (models.PlayersBody, {"player_ids": ["a"] * 10_001}),
        (models.PlayersBody, {"player_ids": ["a"] * 10_000}),
        (models.PlayersBody, {"player_ids": [1] * 10_001}),
        (models.PlayersBody, {"player_ids": ["a"], "count": 1}),
        (models.PlayersBody, {}),
        (models.PlayersBody, {"count": 10**400}),
        (models.HoldBody, {"seconds": 10**400}),
        (models.HoldBody, {"seconds": math.inf}),
        (models.HoldBody, {"seconds": -math.inf}),
        (models.HoldBody, {"seconds": math.nan}),
        (models.MatchEndBody, {"result": "x" * 16_382}),
        (models.MatchEndBody, {"result": "x" * 16_383}),
        (models.MatchEndBody, {"result": {"a": [1, 2]}, "grace_seconds": "-1"}),
        # NaN fails both bounds of a bounded grace: pydantic names the upper one.
        (models.MatchEndBody, {"grace_seconds": "NAN"}),
        (models.ShutdownBody, {"grace_seconds": math.nan}),
        (models.MatchEndBody, {"grace_seconds": 3600.5}),
        (models.ShutdownBody, {"reason": "r" * 513, "grace_seconds": [], "log_storage": ""}),
    ],
)
def test_same_answers_at_the_edges(model: type[BaseModel], data: dict[str, Any]) -> None:
    same(model, getattr(bodies, model.__name__), data)


@given(text=numeric_text)
@example(text="1_0")
@example(text="+_2.E+0")
@example(text=" 1_0")
@example(text="\x1c1")
@example(text="0" * 5000 + "1")
@settings(max_examples=600, deadline=None)
def test_numbers_in_strings_read_as_pydantic_reads_them(text: str) -> None:
    same(models.HoldBody, bodies.HoldBody, {"seconds": text})
    same(models.PlayersBody, bodies.PlayersBody, {"count": text})


@pytest.mark.parametrize("text", ["0-1", "0+4", "00_-1"])
def test_a_sign_after_leading_zeros_is_refused(text: str) -> None:
    with pytest.raises(BodyInvalid) as caught:
        bodies.PlayersBody.validate({"count": text})
    assert caught.value.errors()[0]["type"] == "int_parsing"


def test_a_body_is_read_only() -> None:
    body = bodies.PlayerBody.validate({"player_id": "p1"})
    assert body.player_id == "p1"
    with pytest.raises(AttributeError):
        body.player_id = "p2"  # type: ignore[misc]


# --- the generator refuses what body_check.py does not implement ------------------------------
class _Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(pattern="^a")]


class _ExtraAllowed(BaseModel):
    name: str


class _OwnValidator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        (_Pattern, "str with ['pattern'] is not implemented"),
        (_ExtraAllowed, 'refuses unknown fields (extra="forbid")'),
        (_OwnValidator, "is not a rule of sidecar/body_check.py"),
    ],
)
def test_the_generator_names_what_it_cannot_compile(model: type[BaseModel], needle: str) -> None:
    with pytest.raises(gen_bodies.Unsupported, match=model.__name__) as caught:
        gen_bodies._model(model)
    assert needle in str(caught.value)


# --- a serving sidecar never loads pydantic ----------------------------------------------------
async def test_a_serving_sidecar_checks_bodies_without_loading_pydantic(launch: Any) -> None:
    sidecar = await launch("serve", SIDECAR_HOST="127.0.0.1")
    await sidecar.wait_status(state="starting")
    async with aiohttp.ClientSession(sidecar.url) as http:
        for path, body in [
            ("/v1/players/connect", {"player_id": "p1"}),
            ("/v1/players", {"player_ids": ["p1", "p2"]}),
            ("/v1/hold", {"seconds": "1.5"}),
            ("/v1/players/connect", {"player_id": ""}),
        ]:
            method = "PUT" if path == "/v1/players" else "POST"
            async with http.request(method, path, json=body) as answer:
                assert answer.status in (200, 422), await answer.text()
        async with http.post("/v1/hold", json={"seconds": -1}) as answer:
            assert answer.status == 422
            assert (await answer.json())["error"]["message"] == (
                "seconds: Input should be greater than or equal to 0"
            )
    maps = Path(f"/proc/{sidecar.proc.pid}/maps").read_text()
    assert "_pydantic_core" not in maps
