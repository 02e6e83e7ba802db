"""Clients generated from the local API's document work: `openapi-python-client` (what a studio's
Python tooling would run) makes a client from the served document, and every operation of it,
called against a real sidecar on loopback, gets the answer the document promises.

The generator is a dev extra (it needs a newer pydantic than the floor the lowest-versions run
installs, and that run installs the test extras only). Without it the test is skipped on a
laptop and in the lowest-versions run, and fails in CI's main run, which installs the dev extras.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SidecarFactory

pytestmark = pytest.mark.slow

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
# `scripts/test --lowest` installs into .venv-lowest: the one CI run without the dev extras.
LOWEST_VERSIONS_RUN = Path(sys.prefix).name == ".venv-lowest"
TOKEN = "generated-client-token-0123"
TICKET = "ticket-red-1"
MATCH = {
    "MM_MATCH_ID": "m-generated",
    "MM_TICKET_IDS": json.dumps([TICKET]),
    f"MM_TICKET_{TICKET}": json.dumps({"id": TICKET, "team_id": "red"}),
}
# What each operation with a body or a path parameter is called with: (request model, its
# fields) and path parameters, by operationId. A new operation needs a line here, or the test
# fails naming it.
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "setPlayers": ("PlayersByIds", {"player_ids": ["alice", "bob"]}),
    "playerConnected": ("ConnectBody", {"player_id": "carol", "ticket_id": TICKET}),
    "playerDisconnected": ("PlayerBody", {"player_id": "carol"}),
    "hold": ("HoldBody", {"seconds": 1.5}),
    "matchStart": ("MatchStartBody", {}),
    "matchEnd": ("MatchEndBody", {"result": {"winner": "red"}, "grace_seconds": 30.0}),
    "shutdown": ("ShutdownBody", {"reason": "generated client"}),
}
PATH_PARAMETERS: dict[str, dict[str, str]] = {"ticket": {"ticket_id": TICKET}}
METHODS = {"get", "put", "post", "delete", "patch"}


def _require_generator() -> None:
    if GENERATOR.exists():
        return
    if os.environ.get("CI") and not LOWEST_VERSIONS_RUN:
        pytest.fail(f"{GENERATOR.name} is missing: CI installs the dev extras (scripts/test)")
    pytest.skip(f"{GENERATOR.name} is not installed (pip install -e '.[dev]')")


def _snake(operation_id: str) -> str:
    """The module name openapi-python-client gives an operation."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A place for a generated package, importable, and forgotten afterwards."""
    name = "sidecar_generated_client"
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path / name, name
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]


async def _generate(document: dict[str, Any], output: Path) -> None:
    source = output.parent / "openapi.json"
    source.write_text(json.dumps(document))
    config = output.parent / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: ruff need not be on PATH
    # A child process, awaited: the sidecar under test shares this event loop.
    generator = await asyncio.create_subprocess_exec(
        *(str(GENERATOR), "generate", "--path", str(source), "--output-path", str(output)),
        *("--meta", "none", "--config", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(120):
        out, _ = await generator.communicate()
    text = out.decode(errors="replace")
    assert generator.returncode == 0, text
    # The generator reports what it could not generate (an operation, a schema) as warnings
    # and still exits 0: a dropped operation must fail here, not go unnoticed.
    assert "Unable to" not in text, text


class TestPythonClient:
    async def test_every_operation_of_a_generated_client_works(
        self, sidecar: SidecarFactory, generated: tuple[Path, str]
    ) -> None:
        """A client generated from the served document by openapi-python-client has every
        operation, each in its route group's module; called in order against a live sidecar
        (with the API token) each answers the documented success status with a body the
        client parses into the documented model."""
        _require_generator()
        output, package_name = generated
        sc = await sidecar(environ=MATCH, SIDECAR_API_TOKEN=TOKEN, SIDECAR_MATCH_END_GRACE="30s")
        status, document = await sc.call("GET", "/openapi.json")
        assert status == 200
        await _generate(document, output)
        package = importlib.import_module(package_name)
        models = importlib.import_module(package_name + ".models")
        client = package.AuthenticatedClient(base_url=sc.url, token=TOKEN)

        called = []
        async with client:
            for path, item in document["paths"].items():
                for method, operation in item.items():
                    if method not in METHODS:
                        continue
                    operation_id = operation["operationId"]
                    (tag,) = operation["tags"]
                    module = importlib.import_module(
                        f"{package_name}.api.{tag}.{_snake(operation_id)}"
                    )
                    kwargs: dict[str, Any] = dict(PATH_PARAMETERS.get(operation_id, {}))
                    if "requestBody" in operation:
                        model, fields = BODIES[operation_id]
                        kwargs["body"] = getattr(models, model)(**fields)
                    if operation_id == "events":
                        # A stream ends only at shutdown: as at shutdown, the hub is closed
                        # first, so the stream is the current status and its end.
                        sc.agent.events.close()
                    response = await module.asyncio_detailed(client=client, **kwargs)
                    (success,) = [code for code in operation["responses"] if code < "300"]
                    label = f"{method.upper()} {path} ({operation_id})"
                    assert response.status_code == int(success), (label, response.content)
                    schema = operation["responses"][success]["content"]
                    ref = schema.get("application/json", {}).get("schema", {}).get("$ref")
                    if ref is not None:
                        shape = ref.rsplit("/", 1)[1]
                        assert type(response.parsed).__name__ == shape, label
                    called.append(operation_id)
            # The roster's other alternative: a count of anonymous players.
            by_count = models.PlayersByCount(count=3)
            set_players = importlib.import_module(f"{package_name}.api.players.set_players")
            response = await set_players.asyncio_detailed(client=client, body=by_count)
            assert (response.status_code, response.parsed.count) == (200, 3)

        assert len(called) == 19
        assert called[-2:] == ["events", "deployment"]
