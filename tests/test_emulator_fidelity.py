"""The emulator answers as the reference does: its status codes for bad input, its validation,
its log-storage rule, its filters and its values where the reference shows values (issue 11,
findings 4 and 5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer

USERS = [{"user_type": "ip_address", "user_data": {"ip_address": "127.0.0.1"}}]


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0.0)) as server:
        yield server


@pytest.fixture
async def slow_emu() -> AsyncIterator[EmulatorServer]:
    """Status steps slow enough to act while TERMINATING."""
    async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0.2)) as server:
        yield server


async def ready(emu: EmulatorServer, **extra: Any) -> str:
    request_id = await emu.deploy("simulated", **extra)
    await emu.wait_for_status(request_id, "Status.READY", timeout=5)
    return request_id


class TestSchemaErrorsAre400:
    """The reference lists 400 for bad bodies of these routes (422 only for legacy deploy and
    metrics)."""

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("POST", "/deployments", {"version": "v1", "users": USERS}),
            ("POST", "/deployments", {"application": "a", "version": "v1", "nope": 1}),
            ("POST", "/v1/deployments/bulk-stop", {"filters": []}),
            ("POST", "/v1/deployments/bulk-stop", {"filters": [{"field": "request_id"}]}),
            ("POST", "/v1/fleet", {"enabled": True}),
            ("PATCH", "/v1/fleet/eu", {"enabled": "yes"}),
            ("POST", "/v1/fleet/eu/policies", {"name": "p", "type": "Location"}),
            ("PATCH", "/v1/fleet/eu/policies/p1", {"threshold": 7}),
            ("POST", "/v1/deployments/{id}/tags", {"label": "x"}),
            ("PATCH", "/v1/deployments/{id}/tags/blue", {"name": ""}),
        ],
    )
    async def test_bad_body_is_400(
        self, emu: EmulatorServer, method: str, path: str, body: dict[str, Any]
    ) -> None:
        """A body that does not fit answers 400 with a message, not 422."""
        request_id = await ready(emu, tags=["blue"])
        await emu.call("POST", "/v1/fleet", json={"name": "eu"})
        policy = {"name": "p1", "type": "Location", "minimum": 0, "maximum": 1, "threshold": 0.5}
        await emu.call("POST", "/v1/fleet/eu/policies", json=policy)
        status, answer = await emu.call(method, path.format(id=request_id), json=body)
        assert status == 400, answer
        assert answer["message"]

    async def test_legacy_deploy_keeps_422(self, emu: EmulatorServer) -> None:
        """Legacy deploy documents 422 for a body that does not fit."""
        status, _ = await emu.call("POST", "/v1/deploy", json={"app_name": 5})
        assert status == 422


class TestValidation:
    async def test_ip_list_and_geo_ip_list_are_mutually_exclusive(
        self, emu: EmulatorServer
    ) -> None:
        """Legacy deploy refuses ip_list together with geo_ip_list, and deploys nothing."""
        body = {
            "app_name": "kart",
            "ip_list": ["1.2.3.4"],
            "geo_ip_list": [{"ip": "1.2.3.4", "latitude": 1.0, "longitude": 1.0}],
        }
        status, answer = await emu.call("POST", "/v1/deploy", json=body)
        assert status == 422
        assert "mutually exclusive" in answer["message"]
        _, listing = await emu.call("GET", "/v1/deployments")
        assert listing["total_count"] == 0

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/v1/fleet", {"name": "eu", "enabled": "yes"}),
            (
                "/v1/deploy",
                {"app_name": "a", "ip_list": ["1.2.3.4"], "container_log_storage": {"enabled": 1}},
            ),
            ("/deployments", {"application": "a", "version": "v", "require_cached_locations": 0}),
        ],
    )
    async def test_booleans_are_not_coerced(
        self, emu: EmulatorServer, path: str, body: dict[str, Any]
    ) -> None:
        """`"enabled": "yes"` (or 1) is not a boolean: refused, not read as true."""
        status, _ = await emu.call("POST", path, json=body)
        assert status in (400, 422)
        _, fleets = await emu.call("GET", "/v1/fleets")
        assert fleets["fleets"] == []


class TestLogStorage:
    async def logs_after_stop(self, emu: EmulatorServer, request_id: str) -> int:
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
        status, _ = await emu.call("GET", f"/v1/deployment/{request_id}/container-logs")
        return status

    async def test_garbage_storage_name_is_refused(self, emu: EmulatorServer) -> None:
        """`container_log_storage=bogus!!` is no storage name: 400, the deployment runs on."""
        request_id = await ready(emu)
        assert await emu.stop(request_id, container_log_storage="bogus!!") == 400
        assert (await emu.status(request_id))["current_status"] == "Status.READY"

    async def test_unknown_storage_keeps_nothing_once_storages_are_declared(self) -> None:
        """With `--endpoint-storage` given, a storage that does not exist stores nothing ("if it
        is valid we will store"); a declared one keeps the logs."""
        options = EmulatorOptions(
            port=0, status_step_seconds=0.0, endpoint_storages=("studio-logs",)
        )
        async with EmulatorServer(options) as emu:
            request_id = await ready(emu)
            assert await emu.stop(request_id, container_log_storage="no-such-storage") == 200
            assert await self.logs_after_stop(emu, request_id) == 404
            kept = await ready(emu)
            assert await emu.stop(kept, container_log_storage="studio-logs") == 200
            assert await self.logs_after_stop(emu, kept) == 200

    async def test_any_storage_name_keeps_the_logs_when_none_are_declared(
        self, emu: EmulatorServer
    ) -> None:
        """SPEC §9: `true` or a storage name keeps them; without declared storages every
        well-formed name counts, so a studio's own storage name works out of the box."""
        request_id = await ready(emu)
        assert await emu.stop(request_id, container_log_storage="my-storage") == 200
        assert await self.logs_after_stop(emu, request_id) == 200

    async def test_first_stop_choice_stands(self, slow_emu: EmulatorServer) -> None:
        """A stop that chose not to keep the logs is not overridden by a later stop's choice."""
        emu = slow_emu
        request_id = await ready(emu)
        env = await emu.env(request_id)
        assert await emu.stop(request_id, container_log_storage="false") == 200
        path = env["ARBITRIUM_DELETE_URL"][len(emu.url) :]
        status, _ = await emu.call(
            "DELETE",
            path,
            auth=False,
            headers={"authorization": env["ARBITRIUM_DELETE_TOKEN"]},
            params={"container_log_storage": "true"},
        )
        assert status == 202
        assert await self.logs_after_stop(emu, request_id) == 404


class TestFilters:
    async def test_list_query_filters(self, emu: EmulatorServer) -> None:
        """GET /v1/deployments?query= selects by the filters it names."""
        blue = await ready(emu, tags=["blue"])
        red = await ready(emu, tags=["red"])

        async def listed(filters: list[dict[str, Any]]) -> list[str]:
            query = json.dumps({"filters": filters})
            status, body = await emu.call("GET", "/v1/deployments", params={"query": query})
            assert status == 200, body
            assert body["total_count"] == len(body["data"])
            return [item["request_id"] for item in body["data"]]

        assert await listed([{"field": "tags", "operator": "contains", "value": "red"}]) == [red]
        assert await listed([{"field": "request_id", "operator": "eq", "value": blue}]) == [blue]
        assert await listed([{"field": "status", "operator": "eq", "value": "ready"}]) == [
            blue,
            red,
        ]
        assert await listed([{"field": "request_id", "operator": "neq", "value": blue}]) == [red]
        bad = await emu.call("GET", "/v1/deployments", params={"query": "{not json"})
        assert bad[0] == 400
        unknown = json.dumps({"filters": [{"field": "colour", "operator": "eq", "value": "x"}]})
        assert (await emu.call("GET", "/v1/deployments", params={"query": unknown}))[0] == 400

    async def test_policies_fields_mask(self, emu: EmulatorServer) -> None:
        """GET /v1/fleet/{fleet}/policies?fields= answers only the fields asked for."""
        await emu.call("POST", "/v1/fleet", json={"name": "eu"})
        policy = {"name": "p1", "type": "Location", "minimum": 0, "maximum": 1, "threshold": 0.5}
        await emu.call("POST", "/v1/fleet/eu/policies", json=policy)
        status, body = await emu.call(
            "GET", "/v1/fleet/eu/policies", params={"fields": "name,enabled"}
        )
        assert status == 200
        assert body["policies"] == [{"name": "p1", "enabled": True}]
        bad = await emu.call("GET", "/v1/fleet/eu/policies", params={"fields": "name,colour"})
        assert bad[0] == 400

    async def test_locations_filtered_by_app_version_capacity(self) -> None:
        """GET /v1/locations?app=&version= leaves out the locations without room for one more
        deployment of that version; a version without an app is refused."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, location_capacity=1)
        async with EmulatorServer(options) as emu:
            params = {"app": "game", "version": "v1"}
            _, before = await emu.call("GET", "/v1/locations", params=params)
            await ready(emu)
            _, after = await emu.call("GET", "/v1/locations", params=params)
            cities = [item["city"] for item in before["locations"]]
            assert [item["city"] for item in after["locations"]] == cities[1:]
            _, unfiltered = await emu.call("GET", "/v1/locations")
            assert len(unfiltered["locations"]) == len(cities)
            assert (await emu.call("GET", "/v1/locations", params={"version": "v1"}))[0] == 400


def nulls(body: Any, path: str = "") -> list[str]:
    """Every JSON path in `body` that holds null."""
    if body is None:
        return [path]
    if isinstance(body, dict):
        return [found for key, value in body.items() for found in nulls(value, f"{path}.{key}")]
    if isinstance(body, list):
        return [
            found for index, value in enumerate(body) for found in nulls(value, f"{path}[{index}]")
        ]
    return []


class TestValuesWhereTheReferenceShowsThem:
    async def test_status_has_proxy_and_sockets(self, emu: EmulatorServer) -> None:
        """A READY deployment's status has no null the reference shows a value for (its
        removal_time is null until it is removed)."""
        request_id = await ready(emu)
        body = await emu.status(request_id)
        assert nulls(body) == [".removal_time"]
        assert isinstance(body["ports"]["gameport"]["proxy"], int)
        assert isinstance(body["sockets"], str)

    async def test_list_pagination_and_message(self, emu: EmulatorServer) -> None:
        """The list's pagination page numbers are numbers and its message is [""]."""
        await ready(emu)
        _, body = await emu.call("GET", "/v1/deployments")
        assert body["message"] == [""]
        assert nulls(body) == []
        assert body["pagination"]["next_page_number"] == 1
        assert body["pagination"]["previous_page_number"] == 1
