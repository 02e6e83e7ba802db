"""The OpenAPI document of the local API: it covers exactly the registered routes, it is valid
OpenAPI 3.1, and it is served without the token. (Live answers are held to it by
tests/test_openapi_fuzz.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs  # schemathesis's own validator: no extra dependency
import pytest
import schemathesis

from sidecar import models, openapi
from sidecar.config import Settings
from sidecar.outcomes import DeliveryOutcome, StopOutcome
from sidecar.routes import ROUTES, Tag
from tests.conftest import SidecarFactory
from tests.test_user_docs import INTERNAL

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _without_patterns(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_patterns(v) for k, v in node.items() if k != "pattern"}
    if isinstance(node, list):
        return [_without_patterns(item) for item in node]
    return node


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


@pytest.fixture(params=[False, True], ids=["open", "token"])
def document(request: pytest.FixtureRequest) -> dict[str, Any]:
    return openapi.document(token_required=request.param)


# A request each operation accepts, by operationId (the path parameter: a ticket this match,
# without match data, does not have: a documented 404 with its own code, not the router's).
EXAMPLE_BODIES: dict[str, Any] = {
    "setPlayers": {"player_ids": ["a", "b"]},
    "playerConnected": {"player_id": "c"},
    "playerDisconnected": {"player_id": "c"},
    "hold": {"seconds": 1},
    "matchStart": {"match_id": "m-1"},
    "matchEnd": {"result": {"winner": "a"}},
    "shutdown": {"reason": "test"},
}


class TestCoverage:
    async def test_every_documented_operation_is_served(self, sidecar: SidecarFactory) -> None:
        """Each operation of the served document, called over loopback HTTP, answers one of its
        documented statuses and never the router's 404 or 405: the app and the document come
        from one route table, and this holds them to it on the wire."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="10s")
        status, served = await sc.call("GET", "/openapi.json")
        assert status == 200
        operations = [
            (method, path, operation)
            for path, item in served["paths"].items()
            for method, operation in item.items()
            if method in METHODS
        ]
        assert len(operations) == len(ROUTES) == 19
        for method, path, operation in operations:
            url = sc.url + path.replace("{ticket_id}", "no-such-ticket")
            body = EXAMPLE_BODIES.get(operation["operationId"])
            async with sc.http.request(method, url, json=body) as response:
                label = f"{method.upper()} {path}: {response.status}"
                assert str(response.status) in operation["responses"], label
                if response.status >= 400:
                    code = (await response.json())["error"]["code"]
                    assert code not in ("not_found", "method_not_allowed"), label
                # The event stream never ends: its headers are the answer.

    def test_request_bodies_are_the_pydantic_models(self) -> None:
        """Each body's schema is the model's own `model_json_schema()`, with only prose and the
        rules pydantic cannot express added on top."""
        schemas = openapi.document(token_required=False)["components"]["schemas"]
        for model in (
            models.PlayerBody,
            models.ConnectBody,
            models.HoldBody,
            models.MatchStartBody,
            models.MatchEndBody,
            models.ShutdownBody,
        ):
            own = model.model_json_schema()
            documented = schemas[model.__name__]
            assert set(documented["properties"]) == set(own["properties"])
            assert documented.get("required") == own.get("required")
            assert documented["additionalProperties"] is False  # unknown fields are a 422
            for name, field in own["properties"].items():
                mine = {
                    k: v for k, v in documented["properties"][name].items() if k != "description"
                }
                assert _without_patterns(mine) == field, name

    def test_the_roster_body_is_one_of_two_named_objects(self) -> None:
        """PUT /v1/players takes ids or a count: two named objects, each one of the model's
        fields (its non-null schema) and nothing else, so generators make a class of each."""
        schemas = openapi.document(token_required=False)["components"]["schemas"]
        own = models.PlayersBody.model_json_schema()["properties"]
        assert schemas["PlayersBody"]["oneOf"] == [
            {"$ref": "#/components/schemas/PlayersByIds"},
            {"$ref": "#/components/schemas/PlayersByCount"},
        ]
        for name, field in (("PlayersByIds", "player_ids"), ("PlayersByCount", "count")):
            alternative = schemas[name]
            assert alternative["required"] == [field]
            assert alternative["additionalProperties"] is False
            (documented,) = alternative["properties"].values()
            (non_null,) = [s for s in own[field]["anyOf"] if s.get("type") != "null"]
            mine = {k: v for k, v in documented.items() if k != "description"}
            assert _without_patterns(mine) == non_null

    def test_the_stop_outcome_schema_is_the_enum(self) -> None:
        """The document spells the stop and delivery outcomes as their one enums do."""
        schemas = openapi.document(token_required=False)["components"]["schemas"]
        assert schemas["StopOutcome"]["enum"] == [o.value for o in StopOutcome]
        assert schemas["DeliveryOutcome"]["enum"] == [o.value for o in DeliveryOutcome]
        stop = schemas["StatusStop"]["properties"]["outcome"]
        assert {"$ref": "#/components/schemas/StopOutcome"} in stop["anyOf"]

    def test_generators_get_servers_and_a_tag_per_route_group(self) -> None:
        """`servers` names the loopback address with SIDECAR_PORT's default as the port
        variable; every operation has one declared tag, so generated clients get one API class
        per group instead of a single default one."""
        document = openapi.document(token_required=False)
        (server,) = document["servers"]
        assert server["url"] == "http://127.0.0.1:{port}"
        assert server["variables"]["port"]["default"] == str(Settings().port) == "8787"
        declared = [tag["name"] for tag in document["tags"]]
        assert declared == [tag.value for tag in Tag]
        used = {
            tag
            for item in document["paths"].values()
            for operation in item.values()
            for tag in operation["tags"]
        }
        assert used == set(declared)
        assert all(
            len(op["tags"]) == 1 for item in document["paths"].values() for op in item.values()
        )

    def test_lifecycle_answers_allow_what_the_spec_says(self) -> None:
        """202 for the idempotent stop calls, 409 for changes that no longer apply, 408/413/422
        for every body, and the error envelope on every 4xx."""
        paths = openapi.document(token_required=False)["paths"]
        assert set(paths["/v1/match/end"]["post"]["responses"]) == {
            "202",
            "400",
            "408",
            "413",
            "422",
        }
        assert set(paths["/v1/shutdown"]["post"]["responses"]) == {
            "202",
            "400",
            "408",
            "413",
            "422",
        }
        assert set(paths["/v1/ready"]["post"]["responses"]) == {"200", "409"}
        assert "409" in paths["/v1/match/start"]["post"]["responses"]
        assert "text/event-stream" in paths["/v1/events"]["get"]["responses"]["200"]["content"]
        assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
        for item in paths.values():
            for operation in item.values():
                for status, response in operation["responses"].items():
                    if status.startswith("4"):
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == {"$ref": "#/components/schemas/ErrorBody"}

    def test_the_token_variant_secures_every_v1_call(self) -> None:
        """With a token, every /v1/* operation needs the bearer scheme and may answer 401;
        /healthz, /metrics and /openapi.json never do. Without one, neither appears."""
        secured = openapi.document(token_required=True)
        assert secured["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        for path, item in secured["paths"].items():
            for operation in item.values():
                assert ("security" in operation) is path.startswith("/v1/")
                assert ("401" in operation["responses"]) is path.startswith("/v1/")
        open_doc = openapi.document(token_required=False)
        assert "securitySchemes" not in open_doc["components"]
        assert all(
            "security" not in op and "401" not in op["responses"]
            for item in open_doc["paths"].values()
            for op in item.values()
        )


class TestValidity:
    def test_no_internal_references(self, document: dict[str, Any]) -> None:
        """Studios read the document's prose: it cites no specification section or issue."""
        text = json.dumps(document, ensure_ascii=False)
        assert not INTERNAL.findall(text)
        assert INTERNAL.findall(json.dumps({"summary": "at most 64 (SPEC §7)"}, ensure_ascii=False))

    def test_it_is_valid_openapi_3_1(self, document: dict[str, Any]) -> None:
        """The document validates against the OpenAPI 3.1 meta-schema (and the check is live:
        a broken copy fails)."""
        assert document["openapi"] == "3.1.0"
        schemathesis.openapi.from_dict(document).validate()
        broken = json.loads(json.dumps(document))
        del broken["info"]["version"]
        with pytest.raises(jsonschema_rs.ValidationError):
            schemathesis.openapi.from_dict(broken).validate()

    def test_every_schema_is_valid_json_schema_2020_12(self, document: dict[str, Any]) -> None:
        """Component schemas are valid under the 3.1 dialect (JSON Schema 2020-12), which the
        OpenAPI meta-schema leaves unchecked."""
        for name, schema in document["components"]["schemas"].items():
            assert jsonschema_rs.meta.is_valid(
                {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
            ), name

    def test_every_reference_resolves_to_a_component(self, document: dict[str, Any]) -> None:
        """pydantic's `$defs` became component references; none dangles."""
        text = json.dumps(document)
        assert "$defs" not in text
        components = document["components"]["schemas"]
        refs = set(_refs(document))
        assert refs
        for ref in refs:
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.removeprefix("#/components/schemas/") in components, ref


class TestServed:
    async def test_served_without_the_token(self, sidecar: SidecarFactory) -> None:
        """GET /openapi.json answers without the token, like /healthz, and describes the
        token it would need for /v1/*."""
        sc = await sidecar(SIDECAR_API_TOKEN="s3cret-token-value")
        async with sc.http.get(sc.url + "/openapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            body = await response.read()
        assert json.loads(body) == openapi.document(token_required=True)
        assert b"s3cret" not in body
        assert (await sc.call("GET", "/v1/status"))[0] == 401

    async def test_built_once(self, sidecar: SidecarFactory) -> None:
        """The document is built once per variant and served from the cache."""
        sc = await sidecar()
        await sc.call("GET", "/openapi.json")
        assert openapi.document_bytes(token_required=False) is openapi.document_bytes(
            token_required=False
        )
        status, body = await sc.call("GET", "/openapi.json")
        assert status == 200
        assert "securitySchemes" not in body["components"]

    async def test_other_methods_answer_405(self, sidecar: SidecarFactory) -> None:
        """POST /openapi.json is a JSON 405 like every other route."""
        sc = await sidecar()
        status, body = await sc.call("POST", "/openapi.json")
        assert status == 405
        assert body["error"]["code"] == "method_not_allowed"
