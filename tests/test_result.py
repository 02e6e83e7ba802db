"""Match-result delivery (SPEC §12): settings, the client against a real receiver on loopback
(scripted answers, a fake clock and sleep for the waits), and the wiring into the stop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from sidecar.config import ConfigError, load_settings, redacted_settings, settings_json
from sidecar.outbound import OutboundSession
from sidecar.outcomes import DeliveryOutcome
from sidecar.result import ResultDelivery, idempotency_key, result_body, rfc3339
from sidecar.retry import MIN_RETRY_DELAY
from tests.conftest import Launch, Receiver, SidecarFactory

TOKEN = "result-token-5c2a9e17"


class FakeTime:
    """A clock that only moves when the delivery sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def http() -> AsyncIterator[OutboundSession]:
    """The outbound session a delivery sends on (the agent's, in a sidecar)."""
    session = OutboundSession()
    yield session
    await session.close()


def delivery(
    http: OutboundSession, url: str, fake: FakeTime, *, budget: float = 60.0, timeout: float = 5.0
) -> ResultDelivery:
    return ResultDelivery(
        url,
        TOKEN,
        attempt_timeout=timeout,
        budget=budget,
        clock=fake.clock,
        sleep=fake.sleep,
        rng=lambda: 0.0,
        http=http,
    )


BODY = result_body(
    request_id="req-1",
    match_id="m-1",
    reason="match_ended",
    detail="the game ended the match",
    result={"winner": "blue"},
    players_peak=4,
    arrived=0,
    started_at=1_800_000_000.0,
    ended_at=1_800_000_600.5,
)


async def deliver(d: ResultDelivery, body: dict[str, Any] = BODY) -> DeliveryOutcome:
    d.start(body, idempotency_key("req-1", "m-1"))
    outcome = await d.wait(30)
    await d.close()
    return outcome


class TestSettings:
    def test_defaults_are_off_10s_and_5m(self) -> None:
        """Without SIDECAR_RESULT_URL there is no delivery; the wait is 10 s, the budget 5 min."""
        settings = load_settings({})
        assert settings.result_url is None
        assert settings.result_token is None
        assert (settings.result_wait, settings.result_budget) == (10.0, 300.0)

    @pytest.mark.parametrize(
        "url",
        ["https://results.example.com/v1/r", "http://127.0.0.1:9000/r", "http://[::1]/r"],
    )
    def test_https_or_loopback_http_is_accepted(self, url: str) -> None:
        """An https URL anywhere, or plain http to this machine."""
        assert load_settings({"SIDECAR_RESULT_URL": url}).result_url == url

    @pytest.mark.parametrize(
        "url",
        [
            "http://results.example.com/r",
            "ftp://127.0.0.1/r",
            "https:///nohost",
            "https://user:pw-1234@[::1/r",
            "https://h.example.com:99999/r",
            "https://h.example.com/a b",
        ],
    )
    def test_a_bad_url_is_a_configuration_error_naming_it(self, url: str) -> None:
        """Exit 2 material: the error names SIDECAR_RESULT_URL and never quotes the URL."""
        with pytest.raises(ConfigError) as caught:
            load_settings({"SIDECAR_RESULT_URL": url})
        assert "SIDECAR_RESULT_URL" in str(caught.value)
        assert url not in str(caught.value)

    def test_token_and_url_credentials_are_never_shown(self) -> None:
        """check-config shows the token as secret and the URL without userinfo or query."""
        url = "https://user:url-secret-77@results.example.com/r?key=query-secret-88"
        # Credentials and SIDECAR_RESULT_TOKEN together are refused (two Authorization
        # headers): the URL's secrets and the token are shown in two configurations.
        configurations = [
            {"SIDECAR_RESULT_URL": url},
            {
                "SIDECAR_RESULT_URL": url.replace("user:url-secret-77@", ""),
                "SIDECAR_RESULT_TOKEN": TOKEN,
            },
        ]
        for env in configurations:
            settings = load_settings(env)
            shown = json.dumps([redacted_settings(settings), settings_json(settings)])
            for secret in (TOKEN, "url-secret-77", "query-secret-88"):
                assert secret not in shown
        assert TOKEN in settings.secrets()
        assert settings_json(settings)["SIDECAR_RESULT_TOKEN"] == "***"

    def test_a_token_that_cannot_be_a_header_is_refused(self) -> None:
        """A non-ASCII token could never be sent: refused at start, naming the variable."""
        with pytest.raises(ConfigError, match="SIDECAR_RESULT_TOKEN"):
            load_settings({"SIDECAR_RESULT_TOKEN": "tökén-123456"})


class TestWire:
    async def test_shape_headers_and_one_key_on_every_attempt(
        self, http: OutboundSession, receiver: Receiver
    ) -> None:
        """The body has every field of SPEC §12; each attempt carries the same key and token."""
        receiver.script = [(503, {}), (500, {})]
        fake = FakeTime()
        assert await deliver(delivery(http, receiver.url, fake)) is DeliveryOutcome.DELIVERED
        assert len(receiver.requests) == 3
        keys = {headers["Idempotency-Key"] for headers, _ in receiver.requests}
        assert keys == {"req-1:m-1"}
        headers, body = receiver.requests[0]
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert body == BODY
        assert set(body) == {
            "request_id",
            "match_id",
            "reason",
            "detail",
            "result",
            "players_peak",
            "arrived",
            "started_at",
            "ended_at",
        }
        assert body["ended_at"] == "2027-01-15T08:10:00.500Z"
        assert list(receiver.accepted) == ["req-1:m-1"]

    def test_key_without_a_match_id_says_none(self) -> None:
        """`<request_id>:none` when there is no match id."""
        assert idempotency_key("req-1", None) == "req-1:none"

    @pytest.mark.parametrize(
        ("request_id", "match_id", "key"),
        [
            ("req\r\n1", "m\nX", "req%0D%0A1:m%0AX"),
            ("req-1", "caf\u00e9 %", "req-1:caf%C3%A9 %25"),
            ("req-1", "m\udcff", "req-1:m%ED%B3%BF"),
            ("f68e011bfb01", "duo-ranked_initial-2026:1", "f68e011bfb01:duo-ranked_initial-2026:1"),
        ],
    )
    def test_the_key_is_a_valid_header_whatever_the_ids(
        self, request_id: str, match_id: str, key: str
    ) -> None:
        """Control characters, line breaks, non-ASCII and lone surrogates are percent-encoded
        (`%` too), the same way every time; ordinary ids go as they are."""
        assert idempotency_key(request_id, match_id) == key

    async def test_ids_with_line_breaks_are_delivered_with_one_key(
        self, http: OutboundSession, receiver: Receiver, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An ARBITRIUM_REQUEST_ID with a CR/LF no longer makes every attempt raise: the
        result is delivered, and no unexpected error is logged."""
        d = delivery(http, receiver.url, FakeTime())
        d.start(BODY, idempotency_key("req\r\n1", "m-1"))
        assert await d.wait(30) is DeliveryOutcome.DELIVERED
        await d.close()
        assert list(receiver.accepted) == ["req%0D%0A1:m-1"]
        assert "unexpected" not in caplog.text

    def test_times_are_rfc3339_utc(self) -> None:
        """Readable by any RFC 3339 parser, in UTC."""
        parsed = datetime.fromisoformat(rfc3339(0.25).replace("Z", "+00:00"))
        assert parsed.timestamp() == 0.25

    async def test_no_token_no_authorization_header(
        self, http: OutboundSession, receiver: Receiver
    ) -> None:
        """Without SIDECAR_RESULT_TOKEN the request carries no Authorization header."""
        d = ResultDelivery(receiver.url, None, attempt_timeout=5, budget=5, http=http)
        assert await deliver(d) is DeliveryOutcome.DELIVERED
        assert "Authorization" not in receiver.requests[0][0]


class TestRetries:
    async def test_retry_after_is_honoured_and_the_floor_holds(
        self, http: OutboundSession, receiver: Receiver
    ) -> None:
        """429 with Retry-After 3 waits 3 s; Retry-After 0 still waits 0.5 s."""
        receiver.script = [(429, {"Retry-After": "3"}), (429, {"Retry-After": "0"})]
        fake = FakeTime()
        assert await deliver(delivery(http, receiver.url, fake)) is DeliveryOutcome.DELIVERED
        assert fake.sleeps == [3.0, MIN_RETRY_DELAY]

    async def test_408_and_5xx_back_off_from_half_a_second(
        self, http: OutboundSession, receiver: Receiver
    ) -> None:
        """The self-stop's backoff, jitter at its low end: 0.25 s floored to 0.5 s, then 0.5 s."""
        receiver.script = [(408, {}), (502, {})]
        fake = FakeTime()
        assert await deliver(delivery(http, receiver.url, fake)) is DeliveryOutcome.DELIVERED
        assert fake.sleeps == [MIN_RETRY_DELAY, 0.5]

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 301])
    async def test_other_answers_fail_for_good_at_once(
        self, http: OutboundSession, receiver: Receiver, status: int
    ) -> None:
        """A 4xx (but 408/429) or 3xx is permanent: one attempt, outcome failed."""
        receiver.script = [(status, {"Location": "/elsewhere"})]
        d = delivery(http, receiver.url, FakeTime())
        assert await deliver(d) is DeliveryOutcome.FAILED
        assert len(receiver.requests) == 1
        assert d.progress.attempts == 1
        assert d.progress.last_status == status

    async def test_the_budget_ends_the_retries(
        self, http: OutboundSession, receiver: Receiver
    ) -> None:
        """503 forever: attempts stop once SIDECAR_RESULT_BUDGET is spent; outcome failed."""
        receiver.then = 503
        fake = FakeTime()
        d = delivery(http, receiver.url, fake, budget=10)
        assert await deliver(d) is DeliveryOutcome.FAILED
        assert fake.now >= 10
        assert d.progress.last_error is not None
        assert "budget" in d.progress.last_error
        assert not receiver.accepted

    async def test_a_hung_attempt_times_out_and_is_retried(
        self, http: OutboundSession, receiver: Receiver
    ) -> None:
        """One attempt lasts at most SIDECAR_STOP_ATTEMPT_TIMEOUT, then the next one goes."""
        receiver.hang = True
        d = delivery(http, receiver.url, FakeTime(), budget=1, timeout=0.1)
        assert await deliver(d) is DeliveryOutcome.FAILED
        assert len(receiver.requests) >= 2
        assert {h["Idempotency-Key"] for h, _ in receiver.requests} == {"req-1:m-1"}

    async def test_connection_refused_is_retried_and_never_shows_secrets(
        self, http: OutboundSession
    ) -> None:
        """Nothing listening: retried until the budget; the error text has no token or URL
        credentials."""
        url = "http://user:url-secret-77@127.0.0.1:1/r?k=query-secret-88"
        d = delivery(http, url, FakeTime(), budget=2)
        assert await deliver(d) is DeliveryOutcome.FAILED
        assert d.progress.attempts >= 2
        text = str(d.progress.last_error)
        for secret in (TOKEN, "url-secret-77", "query-secret-88"):
            assert secret not in text

    async def test_an_unexpected_failure_is_logged_once(
        self, http: OutboundSession, receiver: Receiver, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An attempt that raises something unexpected (here aiohttp refusing a header) is a
        failed attempt, retried; the error line is logged once, not on every attempt."""
        d = delivery(http, receiver.url, FakeTime(), budget=5)
        d.start(BODY, "not\na header")
        assert await d.wait(30) is DeliveryOutcome.FAILED
        await d.close()
        assert d.progress.attempts >= 3
        unexpected = [r for r in caplog.records if "unexpected error while" in r.getMessage()]
        assert len(unexpected) == 1

    async def test_single_flight(self, http: OutboundSession, receiver: Receiver) -> None:
        """A second start() is a no-op: one result, one delivery."""
        d = delivery(http, receiver.url, FakeTime())
        d.start(BODY, "req-1:m-1")
        d.start({**BODY, "result": "other"}, "req-1:other")
        assert await d.wait(10) is DeliveryOutcome.DELIVERED
        await d.close()
        assert len(receiver.requests) == 1

    async def test_no_second_delivery_after_close(
        self, http: OutboundSession, receiver: Receiver
    ) -> None:
        """The process ending abandons a delivery; nothing starts it again."""
        receiver.hang = True
        d = delivery(http, receiver.url, FakeTime())
        d.start(BODY, "req-1:m-1")
        async with asyncio.timeout(5):
            while not receiver.requests:
                await asyncio.sleep(0.01)
        await d.close()
        d.start(BODY, "req-1:m-1")
        assert await d.wait(0.2) is DeliveryOutcome.PENDING
        assert len(receiver.requests) == 1

    async def test_off_without_a_url(self, http: OutboundSession) -> None:
        """No SIDECAR_RESULT_URL: outcome off, nothing started, nothing waited for."""
        d = ResultDelivery(None, None, attempt_timeout=1, budget=1, http=http)
        d.start(BODY, "k")
        assert await d.wait(10) is DeliveryOutcome.OFF


class TestWiring:
    async def test_stop_record_and_status_carry_the_delivery(
        self, receiver: Receiver, sidecar: SidecarFactory
    ) -> None:
        """A match end with a result: the receiver gets it once, with the match id given to
        match start; status says delivered."""
        sc = await sidecar(SIDECAR_RESULT_URL=receiver.url, SIDECAR_MATCH_END_GRACE="0.05s")
        await sc.call("POST", "/v1/ready")
        await sc.call("POST", "/v1/match/start", {"match_id": "m-42"})
        await sc.call("POST", "/v1/match/end", {"result": {"winner": "red"}})
        await sc.wait_state("stopped", "failed")
        status = sc.agent.status_view.to_json()
        assert status["result_delivery"]["outcome"] == "delivered"
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        assert body["result"] == {"winner": "red"}
        assert body["match_id"] == "m-42"
        assert headers["Idempotency-Key"] == "none:m-42"
        code, match = await sc.call("GET", "/v1/match")
        assert code == 200
        assert match["result_delivery"] == "delivered"

    async def test_a_request_id_with_a_line_break_is_still_delivered(
        self, receiver: Receiver, sidecar: SidecarFactory
    ) -> None:
        """ARBITRIUM_REQUEST_ID with a CR/LF (the platform's, not the game's): the delivery
        goes out at the first attempt with the id percent-encoded in the key, and the body
        keeps it as it is."""
        sc = await sidecar(
            environ={"ARBITRIUM_REQUEST_ID": "req\r\n9"},
            SIDECAR_RESULT_URL=receiver.url,
            SIDECAR_MATCH_END_GRACE="0s",
        )
        await sc.call("POST", "/v1/match/start", {"match_id": "m-42"})
        await sc.call("POST", "/v1/match/end", {"result": 1})
        await sc.wait_state("stopped", "failed")
        delivery = sc.agent.status_view.to_json()["result_delivery"]
        assert (delivery["outcome"], delivery["attempts"]) == ("delivered", 1)
        headers, body = receiver.requests[0]
        assert headers["Idempotency-Key"] == "req%0D%0A9:m-42"
        assert body["request_id"] == "req\r\n9"

    async def test_the_stop_waits_at_most_result_wait(
        self, receiver: Receiver, sidecar: SidecarFactory
    ) -> None:
        """A receiver that hangs holds the self-stop no longer than SIDECAR_RESULT_WAIT past the
        grace; the record then says pending."""
        receiver.hang = True
        sc = await sidecar(
            SIDECAR_RESULT_URL=receiver.url,
            SIDECAR_MATCH_END_GRACE="0.05s",
            SIDECAR_RESULT_WAIT="0.3s",
        )
        await sc.call("POST", "/v1/ready")
        loop = asyncio.get_running_loop()
        began = loop.time()
        await sc.call("POST", "/v1/match/end", {"result": 1})
        await sc.wait_state("stopped", "failed")
        took = loop.time() - began
        assert 0.3 <= took < 0.3 + 0.05 + 1.5
        assert sc.agent.status_view.to_json()["result_delivery"]["outcome"] == "pending"

    async def test_off_changes_nothing(self, sidecar: SidecarFactory) -> None:
        """Without SIDECAR_RESULT_URL the delivery is off and the stop does not wait."""
        sc = await sidecar(SIDECAR_MATCH_END_GRACE="0s")
        await sc.call("POST", "/v1/ready")
        await sc.call("POST", "/v1/match/end", {})
        status = await sc.wait_state("stopped", "failed", timeout=2)
        assert status["result_delivery"]["outcome"] == "off"


class TestServeProcess:
    async def test_match_end_result_reaches_the_receiver_once(
        self, receiver: Receiver, launch: Launch
    ) -> None:
        """A real `serve`: the match end's result is delivered once, with the matchmaker's
        match id in body and key; the stop record carries the result and `delivered`; the token
        is in neither stdout nor stderr."""
        sc = await launch(
            "serve",
            SIDECAR_RESULT_URL=receiver.url,
            SIDECAR_RESULT_TOKEN=TOKEN,
            SIDECAR_MATCH_END_GRACE="0.1s",
            SIDECAR_LOG_LEVEL="debug",
            MM_MATCH_ID="mm-7",
            ARBITRIUM_REQUEST_ID="req-9",
        )
        await sc.wait_status(state="starting")
        async with aiohttp.ClientSession() as http:
            async with http.post(sc.url + "/v1/ready") as r:
                assert r.status == 200
            async with http.post(sc.url + "/v1/match/end", json={"result": {"mvp": "p1"}}) as r:
                assert r.status == 202
        await sc.wait_output(b'"sidecar.stop"')
        status = await sc.wait_status(state="stopped")
        assert status["result_delivery"]["outcome"] == "delivered"
        sc.proc.terminate()
        code, stdout, stderr = await sc.finish()
        assert code == 0
        records = [json.loads(line) for line in stdout.splitlines() if line.startswith(b"{")]
        (stop,) = [r for r in records if r.get("event") == "sidecar.stop"]
        assert stop["result_delivery"] == "delivered"
        assert stop["match_result"] == {"mvp": "p1"}
        assert len(receiver.requests) == 1
        headers, body = receiver.requests[0]
        assert headers["Idempotency-Key"] == "req-9:mm-7"
        assert body["match_id"] == "mm-7"
        assert body["result"] == {"mvp": "p1"}
        assert TOKEN not in stdout.decode() + stderr
