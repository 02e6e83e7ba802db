"""The emulator's platform routes over real HTTP: status codes, bodies, auth, pagination."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sidecar.emulator import EmulatorOptions, EmulatorServer

STATUS_FIELDS = {
    "request_id",
    "fqdn",
    "app_name",
    "app_version",
    "current_status",
    "running",
    "whitelisting_active",
    "start_time",
    "removal_time",
    "elapsed_time",
    "last_status",
    "error",
    "error_detail",
    "ports",
    "public_ip",
    "sessions",
    "location",
    "tags",
    "sockets",
    "sockets_usage",
    "command",
    "arguments",
    "max_duration",
}
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(EmulatorOptions(port=0, status_step_seconds=0.0)) as server:
        yield server


@pytest.fixture
async def slow_emu() -> AsyncIterator[EmulatorServer]:
    """Status steps slow enough to act before READY."""
    options = EmulatorOptions(port=0, status_step_seconds=0.1)
    async with EmulatorServer(options) as server:
        yield server


async def ready(emu: EmulatorServer, **extra: Any) -> str:
    request_id = await emu.deploy("simulated", **extra)
    await emu.wait_for_status(request_id, "Status.READY", timeout=5)
    return request_id


class TestAuth:
    async def test_missing_token_is_401(self, emu: EmulatorServer) -> None:
        """A management call without an authorization header answers 401 {"message"}."""
        status, body = await emu.call("GET", "/v1/deployments", auth=False)
        assert status == 401
        assert "message" in body

    async def test_token_without_prefix_is_401(self, emu: EmulatorServer) -> None:
        """`authorization: <TOKEN>` without the `token ` prefix is refused."""
        status, _ = await emu.call(
            "GET", "/v1/deployments", auth=False, headers={"authorization": emu.api_token}
        )
        assert status == 401

    async def test_any_token_accepted_without_configured_token(self, emu: EmulatorServer) -> None:
        """With no --api-token any non-empty `token X` is accepted."""
        status, _ = await emu.call(
            "GET", "/v1/deployments", auth=False, headers={"authorization": "token whatever"}
        )
        assert status == 200

    async def test_configured_token_must_match(self) -> None:
        """With --api-token the token must match exactly."""
        options = EmulatorOptions(port=0, status_step_seconds=0.0, api_token="s3cret")
        async with EmulatorServer(options) as emu:
            wrong = {"authorization": "token other"}
            assert (await emu.call("GET", "/v1/locations", auth=False, headers=wrong))[0] == 401
            assert (await emu.call("GET", "/v1/locations"))[0] == 200


class TestDeploy:
    async def test_v2_deploy_returns_request_id(self, emu: EmulatorServer) -> None:
        """POST /deployments answers 202 with a 12-hex request_id."""
        status, body = await emu.call(
            "POST", "/deployments", json={"application": "a", "version": "v1", "users": []}
        )
        assert status == 202
        assert re.fullmatch(r"[0-9a-f]{12}", body["request_id"])

    async def test_v2_deploy_malformed_json_is_400(self, emu: EmulatorServer) -> None:
        """A body that is not JSON answers 400 with a message."""
        status, body = await emu.call("POST", "/deployments", data=b"{nope")
        assert status == 400
        assert body["message"]

    async def test_v2_deploy_wrong_shape_is_400(self, emu: EmulatorServer) -> None:
        """A missing application or an unknown field answers 400 (the reference's code) with
        details."""
        status, body = await emu.call("POST", "/deployments", json={"version": "v1", "x": 1})
        assert status == 400
        fields = {item["field"] for item in body["details"]}
        assert {"application", "x"} <= fields

    async def test_v2_deploy_without_token_is_401(self, emu: EmulatorServer) -> None:
        """Deploying needs the management token."""
        status, _ = await emu.call(
            "POST", "/deployments", auth=False, json={"application": "a", "version": "v1"}
        )
        assert status == 401

    async def test_legacy_deploy_response_fields(self, emu: EmulatorServer) -> None:
        """POST /v1/deploy answers the legacy response fields."""
        status, body = await emu.call(
            "POST",
            "/v1/deploy",
            json={
                "app_name": "kart",
                "version_name": "v1.0",
                "ip_list": ["1.2.3.4", "5.6.7.8"],
                "tags": ["production"],
                "container_log_storage": {"enabled": True, "endpoint_storage": "s3"},
            },
        )
        assert status == 200
        assert body["request_app"] == "kart"
        assert body["request_version"] == "v1.0"
        assert body["request_user_count"] == 2
        assert body["request_dns"] == "127.0.0.1"  # the fqdn: the public IP, which resolves
        assert body["tags"] == ["production"]
        assert body["container_log_storage"] == {"enabled": True, "endpoint_storage": "s3"}
        assert {"filters", "location", "ap_sort_strategy"} <= set(body)

    async def test_legacy_deploy_needs_users(self, emu: EmulatorServer) -> None:
        """Legacy deploy without ip_list or geo_ip_list answers 422."""
        status, _ = await emu.call("POST", "/v1/deploy", json={"app_name": "kart"})
        assert status == 422


class TestStatus:
    async def test_status_walks_to_ready(self, emu: EmulatorServer) -> None:
        """A deployment reaches Status.READY with every reference field present."""
        request_id = await ready(emu, tags=["blue"])
        body = await emu.status(request_id)
        assert set(body) >= STATUS_FIELDS
        assert body["current_status"] == "Status.READY"
        assert body["last_status"] == "Status.DEPLOYING"
        assert body["running"] is True
        assert TIME.match(body["start_time"])
        assert body["removal_time"] is None
        assert body["tags"] == ["blue"]
        assert body["ports"]["gameport"]["internal"] == 7777
        assert 30000 <= body["ports"]["gameport"]["external"] <= 39999

    async def test_status_walk_visits_platform_states(self, slow_emu: EmulatorServer) -> None:
        """The walk goes SEEKING → SEEKED → SCANNING → DEPLOYING → READY in order."""
        request_id = await slow_emu.deploy("simulated")
        for status in ("SEEKING", "SEEKED", "SCANNING", "DEPLOYING", "READY"):
            await slow_emu.wait_for_status(request_id, f"Status.{status}", timeout=5)

    async def test_unknown_deployment_is_404(self, emu: EmulatorServer) -> None:
        """Status of an unknown request id answers 404 {"message"}."""
        status, body = await emu.call("GET", "/v1/status/000000000000")
        assert status == 404
        assert "message" in body


class TestStop:
    async def test_stop_ready_is_200_then_410(self, emu: EmulatorServer) -> None:
        """Stopping a READY deployment answers 200 with a summary, then 410 once terminated."""
        request_id = await ready(emu)
        status, body = await emu.call("DELETE", f"/v1/stop/{request_id}")
        assert status == 200
        assert body["message"] == f"Instance {request_id} will be deleted"
        assert body["deployment_summary"]["request_id"] == request_id
        terminated = await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
        assert terminated["running"] is False
        assert TIME.match(terminated["removal_time"])
        assert await emu.stop(request_id) == 410

    async def test_stop_before_ready_is_202_and_carried_out(self, slow_emu: EmulatorServer) -> None:
        """A stop before READY answers 202 and the deployment stops once READY is reached."""
        request_id = await slow_emu.deploy("simulated")
        assert await slow_emu.stop(request_id) == 202
        assert await slow_emu.stop(request_id) == 202
        await slow_emu.wait_for_status(request_id, "Status.READY", timeout=5)
        await slow_emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)

    async def test_stop_while_terminating_is_202(self, slow_emu: EmulatorServer) -> None:
        """A second stop while TERMINATING answers 202."""
        request_id = await slow_emu.deploy("simulated")
        await slow_emu.wait_for_status(request_id, "Status.READY", timeout=5)
        assert await slow_emu.stop(request_id) == 200
        assert (await slow_emu.status(request_id))["current_status"] == "Status.TERMINATING"
        assert await slow_emu.stop(request_id) == 202

    async def test_stop_unknown_is_404(self, emu: EmulatorServer) -> None:
        """Stopping an unknown deployment answers 404."""
        assert await emu.stop("abcdefabcdef") == 404

    async def test_bulk_stop_by_request_id(self, emu: EmulatorServer) -> None:
        """Bulk-stop stops what the filters match and lists it under processable."""
        first, second = await ready(emu), await ready(emu)
        status, body = await emu.call(
            "POST",
            "/v1/deployments/bulk-stop",
            json={"filters": [{"field": "request_id", "values": [first], "filter_type": "any"}]},
        )
        assert status == 202
        assert body == {"processable": [{"request_id": first}]}
        await emu.wait_for_status(first, "Status.TERMINATED", timeout=5)
        assert (await emu.status(second))["current_status"] == "Status.READY"

    async def test_bulk_stop_needs_filters(self, emu: EmulatorServer) -> None:
        """Bulk-stop without filters answers 400 and stops nothing."""
        status, _ = await emu.call("POST", "/v1/deployments/bulk-stop", json={"filters": []})
        assert status == 400


class TestListing:
    async def test_pagination(self, emu: EmulatorServer) -> None:
        """GET /v1/deployments pages with page/limit and the reference's pagination fields."""
        ids = [await ready(emu) for _ in range(5)]
        status, body = await emu.call("GET", "/v1/deployments", params={"page": 2, "limit": 2})
        assert status == 200
        assert body["total_count"] == 5
        assert [item["request_id"] for item in body["data"]] == ids[2:4]
        assert body["pagination"] == {
            "number": 2,
            "next_page_number": 3,
            "previous_page_number": 1,
            "paginator": {"num_pages": 3},
            "has_next": True,
            "has_previous": True,
        }
        item = body["data"][0]
        assert {"fqdn", "start_time", "ready", "public_ip", "ports", "tags"} <= set(item)
        _, last = await emu.call("GET", "/v1/deployments", params={"page": 3, "limit": 2})
        assert len(last["data"]) == 1
        assert last["pagination"]["has_next"] is False

    async def test_bad_page_is_400(self, emu: EmulatorServer) -> None:
        """A non-numeric or zero page answers 400."""
        for page in ("x", "0"):
            status, _ = await emu.call("GET", "/v1/deployments", params={"page": page})
            assert status == 400

    async def test_terminated_deployments_are_not_listed(self, emu: EmulatorServer) -> None:
        """The list shows active deployments only."""
        request_id = await ready(emu)
        await emu.stop(request_id)
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
        _, body = await emu.call("GET", "/v1/deployments")
        assert body["total_count"] == 0

    async def test_locations(self, emu: EmulatorServer) -> None:
        """GET /v1/locations lists locations with string coordinates."""
        status, body = await emu.call("GET", "/v1/locations", params={"tags": "true"})
        assert status == 200
        first = body["locations"][0]
        assert first["city"] == "Montreal"
        assert isinstance(first["latitude"], str)
        assert "tags" in first


class TestTags:
    async def test_tag_crud(self, emu: EmulatorServer) -> None:
        """Tags can be created (409 on duplicate), read, renamed and deleted (204)."""
        request_id = await ready(emu)
        base = f"/v1/deployments/{request_id}/tags"
        status, tag = await emu.call("POST", base, json={"name": "v1.0.0"})
        assert status == 200
        assert TIME.match(tag["create_time"])
        assert (await emu.call("POST", base, json={"name": "v1.0.0"}))[0] == 409
        status, listing = await emu.call("GET", base)
        assert listing["count"] == 1
        assert listing["tags"][0]["name"] == "v1.0.0"
        status, renamed = await emu.call("PATCH", f"{base}/v1.0.0", json={"name": "v2"})
        assert (status, renamed["name"]) == (200, "v2")
        assert (await emu.call("GET", f"{base}/v1.0.0"))[0] == 404
        assert (await emu.call("DELETE", f"{base}/v2"))[0] == 204
        assert (await emu.call("DELETE", f"{base}/v2"))[0] == 404
        assert (await emu.status(request_id))["tags"] == []

    async def test_tags_of_unknown_deployment_is_404(self, emu: EmulatorServer) -> None:
        """Tag routes of an unknown deployment answer 404."""
        assert (await emu.call("GET", "/v1/deployments/000000000000/tags"))[0] == 404


class TestFleets:
    async def test_fleet_lifecycle(self, emu: EmulatorServer) -> None:
        """Fleets are created, read, patched, listed and deleted with the reference's bodies."""
        status, fleet = await emu.call("POST", "/v1/fleet", json={"name": "eu"})
        assert status == 200
        assert fleet["enabled"] is False
        assert set(fleet) == {"name", "enabled", "create_time", "last_updated"}
        assert (await emu.call("POST", "/v1/fleet", json={"name": "eu"}))[0] == 400
        _, patched = await emu.call("PATCH", "/v1/fleet/eu", json={"enabled": True})
        assert patched["enabled"] is True
        _, listing = await emu.call("GET", "/v1/fleets")
        assert [item["name"] for item in listing["fleets"]] == ["eu"]
        assert listing["pagination"]["number"] == 1
        status, body = await emu.call("DELETE", "/v1/fleet/eu")
        assert (status, "message" in body) == (200, True)
        assert (await emu.call("GET", "/v1/fleet/eu"))[0] == 404

    async def test_policies_and_links(self, emu: EmulatorServer) -> None:
        """Policies and app-version links are stored under their fleet."""
        await emu.call("POST", "/v1/fleet", json={"name": "eu", "enabled": True})
        policy = {
            "name": "p1",
            "type": "Location",
            "minimum": 1,
            "maximum": 2,
            "threshold": 0.9,
            "data": {"filters": [{"field": "city", "values": ["Montreal"]}]},
        }
        status, created = await emu.call("POST", "/v1/fleet/eu/policies", json=policy)
        assert status == 200
        assert created["enabled"] is True
        assert created["data"] == policy["data"]
        _, listing = await emu.call("GET", "/v1/fleet/eu/policies")
        assert [item["name"] for item in listing["policies"]] == ["p1"]
        _, patched = await emu.call("PATCH", "/v1/fleet/eu/policies/p1", json={"maximum": 5})
        assert patched["maximum"] == 5
        bad = {**policy, "name": "p2", "threshold": 2}
        assert (await emu.call("POST", "/v1/fleet/eu/policies", json=bad))[0] == 400
        status, link = await emu.call("PUT", "/v1/fleet/eu/app/game/version/v1")
        assert (status, link["fleet"], link["app"], link["app_version"]) == (
            200,
            "eu",
            "game",
            "v1",
        )
        assert (await emu.call("DELETE", "/v1/fleet/eu/app/game/version/v1"))[0] == 204
        assert (await emu.call("DELETE", "/v1/fleet/eu/app/game/version/v1"))[0] == 404
        assert (await emu.call("DELETE", "/v1/fleet/eu/policies/p1"))[0] == 200
        assert (await emu.call("GET", "/v1/fleet/eu/policies/p1"))[0] == 404
        assert (await emu.call("GET", "/v1/fleet/nope/policies"))[0] == 404


class TestMetricsAndLogs:
    async def test_metrics_shape_for_simulated(self, emu: EmulatorServer) -> None:
        """Metrics have the reference's total/cpu/mem/network series."""
        request_id = await ready(emu)
        status, body = await emu.call("GET", f"/v1/metrics/deployment/{request_id}")
        assert status == 200
        assert set(body) == {"total", "cpu", "mem", "network"}
        assert set(body["total"]) == {
            "receive_total",
            "transmit_total",
            "disk_read_total",
            "disk_write_total",
        }
        assert set(body["cpu"]) == {"labels", "datasets", "timestamps"}

    async def test_metrics_bad_times(self, emu: EmulatorServer) -> None:
        """A malformed start_time answers 400; end before start answers 422."""
        request_id = await ready(emu)
        path = f"/v1/metrics/deployment/{request_id}"
        assert (await emu.call("GET", path, params={"start_time": "yesterday"}))[0] == 400
        params = {"start_time": "2021-07-19 00:00:00.00", "end_time": "2021-07-10 00:00:00.00"}
        assert (await emu.call("GET", path, params=params))[0] == 422
        assert (await emu.call("GET", "/v1/metrics/deployment/000000000000"))[0] == 404

    async def test_simulated_logs_discarded_by_default(self, emu: EmulatorServer) -> None:
        """Without log storage, container-logs answers 404 after termination."""
        request_id = await ready(emu)
        assert (await emu.logs(request_id))["encoding"] == "utf-8"
        await emu.stop(request_id)
        await emu.wait_for_status(request_id, "Status.TERMINATED", timeout=5)
        status, _ = await emu.call("GET", f"/v1/deployment/{request_id}/container-logs")
        assert status == 404


class TestBadInput:
    async def test_unknown_path_is_404_json(self, emu: EmulatorServer) -> None:
        """Unknown paths answer 404 with a JSON message."""
        status, body = await emu.call("GET", "/v1/nothing-here")
        assert status == 404
        assert "message" in body

    async def test_wrong_method_is_405_json(self, emu: EmulatorServer) -> None:
        """A wrong method answers 405 with a JSON message."""
        status, body = await emu.call("PUT", "/v1/locations")
        assert status == 405
        assert "message" in body

    async def test_concurrent_deploys_get_distinct_ids(self, emu: EmulatorServer) -> None:
        """Deploys in parallel each get their own request id."""
        ids = await asyncio.gather(*(emu.deploy("simulated") for _ in range(10)))
        assert len(set(ids)) == 10


class TestDocs:
    def test_every_control_route_is_documented(self) -> None:
        """docs/emulator.md names every /_emulator/ route with its method, and every flag of
        `emulate`, so the reference page cannot fall behind the code."""
        import argparse
        from pathlib import Path

        from sidecar.emulator import add_arguments, create_app

        doc = (Path(__file__).resolve().parents[1] / "docs" / "emulator.md").read_text()
        app = create_app(EmulatorOptions(port=0))
        routes = [
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None
            and route.resource.canonical.startswith("/_emulator/")
            and route.method != "HEAD"
        ]
        assert len(routes) >= 10
        for method, path in routes:
            documented = path.replace("{request_id}", "{id}")
            assert f"{method} {documented}" in doc, (method, path)
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in doc, flag
