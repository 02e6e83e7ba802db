"""The platform's ARBITRIUM_*/MM_* variables: hostile values are ignored one by one, never fatal."""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
import pytest

from sidecar.deployment import parse_deployment
from tests.conftest import GAMES, Launch

TICKET = {"id": "abc", "team_id": "t1", "group_id": "g1", "attributes": {"mode": "duo"}}
GOOD = {
    "ARBITRIUM_PORTS_MAPPING": json.dumps(
        {"ports": {"gameport": {"name": "gameport", "internal": 7777, "external": 32013}}}
    ),
    "ARBITRIUM_DEPLOYMENT_LOCATION": json.dumps({"city": "Montreal"}),
    "MM_TICKET_IDS": json.dumps(["abc", "def"]),
    "MM_TICKET_abc": json.dumps(TICKET),
    "MM_TICKET_def": json.dumps({**TICKET, "id": "def"}),
    "MM_GROUPS": json.dumps({"g1": ["abc", "def"]}),
    "MM_TEAMS": json.dumps({"t1": ["g1"]}),
    "MM_EQUALITY": json.dumps({"mode": "duo"}),
    "MM_INTERSECTION": json.dumps({"maps": ["Mill"]}),
}
JSON_VARIABLES = sorted(GOOD)
# What each variable becomes in the parsed deployment when it is ignored.
IGNORED = {
    "ARBITRIUM_PORTS_MAPPING": lambda info: info.ports == (),
    "ARBITRIUM_DEPLOYMENT_LOCATION": lambda info: info.location is None,
    "MM_TICKET_IDS": lambda info: info.matchmaker["ticket_ids"] is None,
    "MM_TICKET_abc": lambda info: set(info.matchmaker["tickets"]) == {"def"},
    "MM_TICKET_def": lambda info: set(info.matchmaker["tickets"]) == {"abc"},
    "MM_GROUPS": lambda info: info.matchmaker["groups"] is None,
    "MM_TEAMS": lambda info: info.matchmaker["teams"] is None,
    "MM_EQUALITY": lambda info: info.matchmaker["equality"] is None,
    "MM_INTERSECTION": lambda info: info.matchmaker["intersection"] is None,
}
SECRET = "player-typed-value-42"


def deep(depth: int) -> str:
    """An object (as tickets are) whose attributes nest `depth` arrays around a player value."""
    inner = "[" * depth + json.dumps(SECRET) + "]" * depth
    return '{"id": "abc", "attributes": {"name": ' + inner + "}}"


class TestEveryJsonVariable:
    def test_the_good_values_are_read(self) -> None:
        """Every JSON variable of a matchmaker deployment parses, with no warning."""
        info = parse_deployment(GOOD)
        assert info.warnings == ()
        assert info.ports[0].external == 32013
        assert info.location == {"city": "Montreal"}
        assert info.matchmaker["ticket_ids"] == ["abc", "def"]
        assert info.matchmaker["tickets"]["abc"] == TICKET
        for key in ("groups", "teams", "equality", "intersection"):
            assert info.matchmaker[key] == json.loads(GOOD[f"MM_{key.upper()}"])

    @pytest.mark.parametrize(
        ("depth", "problem"),
        [
            (1000, "nests deeper than 64 levels"),
            (30_000, "nests deeper than 64 levels"),  # as deep as 64 KiB can nest
            (100_000, "is larger than 64 KiB"),
        ],
    )
    @pytest.mark.parametrize("name", JSON_VARIABLES)
    def test_deep_json_is_ignored_alone(self, name: str, depth: int, problem: str) -> None:
        """A variable nested 1000 to 100k deep is ignored with one warning naming it (never
        its value); every other variable is still read."""
        info = parse_deployment({**GOOD, name: deep(depth)})
        assert info.warnings == (f"{name} {problem}: ignored",)
        assert IGNORED[name](info)
        others = {"abc", "def"} - {name.removeprefix("MM_TICKET_")}
        assert others <= set(info.matchmaker["tickets"])
        if name != "ARBITRIUM_PORTS_MAPPING":
            assert info.ports[0].internal == 7777
        assert SECRET not in json.dumps(info.to_json())

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ('{"id": "abc", "x": "' + "x" * 70_000 + '"}', "is larger than 64 KiB"),
            ('{"id": "abc", "x": NaN}', "holds NaN, which is not JSON"),
            ('{"id": "abc", "x": 1e999}', "holds a number too large for a float"),
            ('{"id": "abc", "x": "\\udc00"}', "holds a lone UTF-16 surrogate escape"),
            ('{"id": "abc", "x": ' + "7" * 5000 + "}", "is not valid JSON: Exceeds the limit"),
            ('{"id": "abc", "x": "\udcff"}', "is not UTF-8 text"),
        ],
    )
    @pytest.mark.parametrize("name", JSON_VARIABLES)
    def test_other_bad_json_is_ignored_alone(self, name: str, value: str, problem: str) -> None:
        """Too large, NaN, overflowing, surrogates, huge integers: one warning, ignored."""
        info = parse_deployment({**GOOD, name: value})
        assert len(info.warnings) == 1
        assert info.warnings[0].startswith(f"{name} {problem}")
        assert IGNORED[name](info)

    @pytest.mark.parametrize(
        ("name", "value", "shape"),
        [
            ("MM_TICKET_abc", '["abc"]', "object"),
            ("MM_TICKET_IDS", '{"abc": 1}', "array"),
            ("MM_TEAMS", '["t1"]', "object"),
            ("ARBITRIUM_DEPLOYMENT_LOCATION", "[1, 2]", "object"),
        ],
    )
    def test_the_wrong_shape_is_ignored(self, name: str, value: str, shape: str) -> None:
        """Valid JSON of the wrong kind (a ticket that is a list) is ignored with one warning."""
        info = parse_deployment({**GOOD, name: value})
        assert info.warnings == (f"{name} is not a JSON {shape}: ignored",)
        assert IGNORED[name](info)


class TestPlainVariables:
    @pytest.mark.parametrize(
        "name",
        [
            "ARBITRIUM_REQUEST_ID",
            "ARBITRIUM_PUBLIC_IP",
            "ARBITRIUM_DEPLOYMENT_TAGS",
            "ARBITRIUM_HOST_ID",
            "MM_MATCH_ID",
            "MM_MATCH_PROFILE",
        ],
    )
    def test_too_large_or_not_utf8_is_ignored(self, name: str) -> None:
        """A plain variable over 64 KiB, or holding bytes that are not UTF-8, is ignored with
        one warning naming it, and the rest is read."""
        for value, problem in (("x" * 70_000, "is larger than 64 KiB"), ("a\udcff", "UTF-8")):
            info = parse_deployment({**GOOD, name: value})
            assert len(info.warnings) == 1
            assert info.warnings[0].startswith(f"{name} ")
            assert problem in info.warnings[0]
            assert value not in json.dumps(info.to_json())
            assert info.matchmaker["tickets"]["abc"] == TICKET

    @pytest.mark.parametrize("value", ["²", "9" * 5000, "1e3", "-"])
    def test_numbers_that_int_would_refuse(self, value: str) -> None:
        """CPU units, memory and ports that are not ASCII integers of sane length are unknown
        (int("²") and a 5000-digit int() raised before)."""
        mapping = {"ports": {"p": {"internal": value, "external": value}}}
        info = parse_deployment(
            {
                "ARBITRIUM_DEPLOYMENT_VCPU_UNITS": value,
                "ARBITRIUM_DEPLOYMENT_MEMORY_MB": value,
                "ARBITRIUM_PORTS_MAPPING": json.dumps(mapping),
            }
        )
        assert (info.vcpu_units, info.memory_mb) == (None, None)
        assert (info.ports[0].internal, info.ports[0].external) == (None, None)

    @pytest.mark.parametrize("value", ["²", "1e3", "-5", "four", "9" * 5000])
    def test_a_bad_cpu_or_memory_value_is_one_warning_each(self, value: str) -> None:
        """Before: dropped silently. Now each variable gets one warning naming it (never the
        value) saying it is ignored, like every other platform variable."""
        info = parse_deployment(
            {"ARBITRIUM_DEPLOYMENT_VCPU_UNITS": value, "ARBITRIUM_DEPLOYMENT_MEMORY_MB": value}
        )
        assert (info.vcpu_units, info.memory_mb) == (None, None)
        assert info.warnings == (
            "ARBITRIUM_DEPLOYMENT_VCPU_UNITS is not a whole number >= 0: ignored",
            "ARBITRIUM_DEPLOYMENT_MEMORY_MB is not a whole number >= 0: ignored",
        )
        good = parse_deployment(
            {"ARBITRIUM_DEPLOYMENT_VCPU_UNITS": "256", "ARBITRIUM_DEPLOYMENT_MEMORY_MB": " 512 "}
        )
        assert (good.vcpu_units, good.memory_mb, good.warnings) == (256, 512, ())

    def test_every_warning_says_what_became_of_the_value(self) -> None:
        """A whole variable is `ignored`, bad entries are `skipped`: the start-up line no
        longer calls everything "ignored"."""
        ports = {"ports": {"a": 1, "game": {"internal": 7777}}}
        info = parse_deployment(
            {
                "ARBITRIUM_PORTS_MAPPING": json.dumps(ports),
                "ARBITRIUM_PUBLIC_IP": "1.2.3.4\udcff",
                "ARBITRIUM_DEPLOYMENT_LOCATION": "[1]",
            }
        )
        assert sorted(info.warnings) == [
            "ARBITRIUM_DEPLOYMENT_LOCATION is not a JSON object: ignored",
            "ARBITRIUM_PORTS_MAPPING has 1 entries that are not objects: skipped",
            "ARBITRIUM_PUBLIC_IP is not UTF-8 text: ignored",
        ]

    def test_ports_outside_the_port_range_are_unknown(self) -> None:
        """A port above 65535 or below 0 is no port: unknown, the entry kept by its name."""
        mapping = {"ports": {"p": {"internal": 70000, "external": -1}, "q": {"internal": "80"}}}
        info = parse_deployment({"ARBITRIUM_PORTS_MAPPING": json.dumps(mapping)})
        assert [(p.name, p.internal, p.external) for p in info.ports] == [
            ("p", None, None),
            ("q", 80, None),
        ]

    def test_bad_port_entries_are_one_warning(self) -> None:
        """Many entries that are not objects make one warning that quotes no key."""
        ports = {f"key-{SECRET}-{i}": i for i in range(50)}
        ports["game"] = {"internal": 7777}  # type: ignore[assignment]
        info = parse_deployment({"ARBITRIUM_PORTS_MAPPING": json.dumps({"ports": ports})})
        assert info.warnings == (
            "ARBITRIUM_PORTS_MAPPING has 50 entries that are not objects: skipped",
        )
        assert [p.internal for p in info.ports] == [7777]


class TestRunMode:
    async def test_the_game_starts_with_a_deep_ticket(self, launch: Launch) -> None:
        """`run` with MM_TICKET_abc nested 1000 deep (the issue's repro) starts the game and
        serves the API; the log names the variable once and never prints its value."""
        game = [sys.executable, "-u", str(GAMES / "term_handler.py")]
        sc = await launch("run", "--", *game, env={**GOOD, "MM_TICKET_abc": deep(1000)})
        await sc.wait_output(b"ready\n")
        async with aiohttp.ClientSession() as http, http.get(sc.url + "/v1/deployment") as answer:
            assert answer.status == 200
            body = await answer.json()
        assert body["warnings"] == ["MM_TICKET_abc nests deeper than 64 levels: ignored"]
        assert set(body["matchmaker"]["tickets"]) == {"def"}
        assert body["matchmaker"]["teams"] == {"t1": ["g1"]}
        await sc.stop()
        code, _, stderr = await asyncio.wait_for(sc.finish(), 20)
        assert code == 0
        assert stderr.count("MM_TICKET_abc") == 1
        # Worded for what happened: the variable is ignored (other warnings say `skipped`).
        assert "platform variable: MM_TICKET_abc nests deeper than 64 levels: ignored" in stderr
        assert "platform variable ignored" not in stderr
        assert SECRET not in stderr
        assert "Traceback" not in stderr
