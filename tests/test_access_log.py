"""The local API's access log (SPEC §13): every call at DEBUG, a 4xx at INFO with its error code
and message, never a body, a header value or a token, and rate-limited."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from sidecar.access_log import LIMIT, WINDOW, AccessLog, error_of
from tests.conftest import SidecarFactory, wait_for
from tests.test_client import Sidecar, start_sidecar

__all__ = ["start_sidecar"]  # the fixture, shared with test_client.py

TOKEN = "access-token-0123"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def access_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "sidecar.access" and record.levelno == level
    ]


class TestAccessLog:
    def test_a_4xx_is_one_info_line_with_code_and_message(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A refused call is logged at INFO: method, path, status, code, message."""
        caplog.set_level(logging.INFO, logger="sidecar.access")
        AccessLog().record("POST", "/v1/hold", 422, None, "validation_error", "seconds: required")
        assert access_lines(caplog, logging.INFO) == [
            "POST /v1/hold 422 validation_error: seconds: required"
        ]

    def test_success_at_info_logs_nothing(self, caplog: pytest.LogCaptureFixture) -> None:
        """At the default level a 2xx writes no line at all."""
        caplog.set_level(logging.INFO, logger="sidecar.access")
        access = AccessLog()
        assert not access.enabled_for_all()
        access.record("POST", "/v1/health", 200, None)
        assert caplog.records == []

    def test_every_call_at_debug_with_its_duration(self, caplog: pytest.LogCaptureFixture) -> None:
        """At DEBUG each call is one line with its duration, and a 4xx also names its code."""
        caplog.set_level(logging.DEBUG, logger="sidecar.access")
        access = AccessLog()
        assert access.enabled_for_all()
        access.record("POST", "/v1/health", 200, 0.00042)
        access.record("GET", "/nope", 404, 0.001, "not_found", "no route /nope")
        assert access_lines(caplog, logging.DEBUG) == ["POST /v1/health 200 0.4ms"]
        assert access_lines(caplog, logging.INFO) == [
            "GET /nope 404 not_found: no route /nope 1.0ms"
        ]

    def test_a_flood_of_4xx_is_rate_limited(self, caplog: pytest.LogCaptureFixture) -> None:
        """At most LIMIT INFO lines per WINDOW; the next one says how many were left out."""
        caplog.set_level(logging.INFO, logger="sidecar.access")
        clock = FakeClock()
        access = AccessLog(clock=clock)
        for _ in range(1000):
            access.record("GET", "/v1/status", 401, None, "unauthorized", "missing token")
        assert len(access_lines(caplog, logging.INFO)) == LIMIT
        clock.now += WINDOW
        access.record("GET", "/v1/status", 401, None, "unauthorized", "missing token")
        lines = access_lines(caplog, logging.INFO)
        assert len(lines) == LIMIT + 1
        assert lines[-1].endswith(f"({1000 - LIMIT} more 4xx answers not logged)")

    def test_long_paths_and_messages_are_cut(self, caplog: pytest.LogCaptureFixture) -> None:
        """An 8 KiB path cannot make an 8 KiB log line."""
        caplog.set_level(logging.INFO, logger="sidecar.access")
        AccessLog().record("GET", "/" + "a" * 8000, 404, None, "not_found", "b" * 8000)
        (line,) = access_lines(caplog, logging.INFO)
        assert len(line) < 500


class TestThroughTheApi:
    async def test_refused_calls_are_logged_without_body_or_token(
        self, sidecar: SidecarFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Real 401, 422 and 404 answers give one INFO line each, without body, header or query."""
        handle = await sidecar(SIDECAR_API_TOKEN=TOKEN)
        caplog.set_level(logging.INFO, logger="sidecar.access")
        wrong = {"Authorization": "Bearer header-value-secret"}
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert (await handle.call("GET", "/v1/status", headers=wrong))[0] == 401
        body = {"player_id": 12345678, "body_marker": "body-secret"}
        assert (await handle.call("POST", "/v1/players/connect", body, headers=good))[0] == 422
        assert (await handle.call("GET", "/nothing?q=query-secret"))[0] == 404
        assert (await handle.call("POST", "/v1/health", headers=good))[0] == 200
        lines = access_lines(caplog, logging.INFO)
        assert lines[0] == "GET /v1/status 401 unauthorized: missing or invalid bearer token"
        assert lines[1].startswith("POST /v1/players/connect 422 invalid_body: ")
        assert lines[2] == "GET /nothing 404 not_found: no route /nothing"
        assert len(lines) == 3  # the 200 heartbeat is not an INFO line
        text = "\n".join(lines)
        for secret in (TOKEN, "header-value-secret", "body-secret", "12345678", "query-secret"):
            assert secret not in text

    async def test_debug_logs_every_call(
        self, sidecar: SidecarFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With DEBUG on, a heartbeat and a status read are logged with status and duration."""
        handle = await sidecar()
        caplog.set_level(logging.DEBUG, logger="sidecar.access")
        await handle.call("POST", "/v1/health")
        await handle.call("GET", "/v1/status")
        lines = access_lines(caplog, logging.DEBUG)
        assert [line.rsplit(" ", 1)[0] for line in lines] == [
            "POST /v1/health 200",
            "GET /v1/status 200",
        ]
        assert all(line.endswith("ms") for line in lines)


def test_a_real_sidecar_logs_a_refusal_without_the_token(
    start_sidecar: Callable[..., Sidecar],
) -> None:
    """`serve` in its own process writes the 401 line to stderr, with no token in it."""
    sidecar = start_sidecar(SIDECAR_API_TOKEN=TOKEN)
    from sidecar.client import SidecarAPIError, SidecarClient

    with pytest.raises(SidecarAPIError):
        SidecarClient(sidecar.url, token="wrong-token-4711", startup_wait=0).status()
    line = "sidecar.access: GET /v1/status 401 unauthorized: missing or invalid bearer token"
    wait_for(lambda: line in sidecar.log(), what="the access log line")
    assert "wrong-token-4711" not in sidecar.log()
    assert TOKEN not in sidecar.log()


class TestErrorBodies:
    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (
                b'{"error":{"code":"not_found","message":"no route /x"}}',
                ("not_found", "no route /x"),
            ),
            (b'{"code":5,"message":"not found","details":[]}', ("5", "not found")),
            (b"<html>", (None, None)),
            (b"[1]", (None, None)),
            (None, (None, None)),
        ],
    )
    def test_error_of_reads_both_envelopes(
        self, body: bytes | None, expected: tuple[str | None, str | None]
    ) -> None:
        """Both the local API's and the Agones facade's error bodies give code and message."""
        assert error_of(body) == expected


class TestAgonesAccessLog:
    async def test_agones_calls_are_logged_and_a_refusal_is_info(
        self, sidecar: SidecarFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The Agones facade logs every SDK call at DEBUG, and a refused call (500, code 2) or a
        4xx at INFO with Agones' code and message, never the body it was sent."""
        from tests.agones_client import Agones

        caplog.set_level(logging.DEBUG, logger="sidecar.agones.access")
        client = Agones(await sidecar(None, SIDECAR_AGONES="true", SIDECAR_AGONES_HTTP_PORT="0"))
        assert (await client.call("POST", "/ready"))[0] == 200
        status, _ = await client.call("GET", "/v1beta1/counters/no-such-counter")
        assert status == 500
        status, _ = await client.call("PUT", "/metadata/label", data=b'{"key": "secret-value')
        assert status == 400
        lines = [
            (record.levelno, record.getMessage())
            for record in caplog.records
            if record.name == "sidecar.agones.access"
        ]
        assert (logging.DEBUG, "POST /ready 200") in [
            (level, text.rsplit(" ", 1)[0]) for level, text in lines
        ]
        info = [text for level, text in lines if level == logging.INFO]
        assert len(info) == 2, lines
        assert info[0].startswith("GET /v1beta1/counters/no-such-counter 500 2: "), info
        assert info[1].startswith("PUT /metadata/label 400 3: "), info
        assert not any("secret-value" in text for _, text in lines)
