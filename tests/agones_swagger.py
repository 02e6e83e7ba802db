"""Agones' own swagger documents (tests/data/agones/, from the Agones repository, Apache-2.0):
validate the facade's answers against the response schema of each route, and check that every
field the schema declares is present (the gateway emits unpopulated fields too)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs  # schemathesis's own validator: no extra dependency

DATA = Path(__file__).resolve().parent / "data" / "agones"
DOCUMENTS = ("sdk", "alpha", "beta")


@cache
def _documents() -> dict[str, dict[str, Any]]:
    return {name: json.loads((DATA / f"{name}.swagger.json").read_text()) for name in DOCUMENTS}


def _operation(method: str, template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for document in _documents().values():
        operation = document["paths"].get(template, {}).get(method.lower())
        if operation is not None:
            return document, operation
    raise KeyError(f"no {method} {template} in Agones' swagger")


def response_schema(method: str, template: str) -> dict[str, Any]:
    """The 200 answer's schema of `method template` (a swagger path such as
    /v1beta1/counters/{name}), as a standalone JSON schema."""
    document, operation = _operation(method, template)
    schema = operation["responses"]["200"]["schema"]
    return {**schema, "definitions": document["definitions"]}


def error_schema() -> dict[str, Any]:
    document = _documents()["sdk"]
    return {"$ref": "#/definitions/googlerpcStatus", "definitions": document["definitions"]}


def check(method: str, template: str, body: Any) -> None:
    """`body` is a valid and complete 200 answer of `method template`."""
    schema = response_schema(method, template)
    jsonschema_rs.Draft4Validator(schema).validate(body)
    assert_complete(schema, body, schema["definitions"])


def check_error(body: Any) -> None:
    schema = error_schema()
    jsonschema_rs.Draft4Validator(schema).validate(body)
    assert_complete(schema, body, schema["definitions"])


def assert_complete(
    schema: dict[str, Any], value: Any, definitions: dict[str, Any], where: str = "body"
) -> None:
    """Every property the schema declares is present, all the way down."""
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            assert name in value, f"{where}.{name} is missing"
            if value[name] is not None:
                assert_complete(sub, value[name], definitions, f"{where}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                assert_complete(extra, item, definitions, f"{where}[{key!r}]")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            assert_complete(schema["items"], item, definitions, f"{where}[{index}]")
