"""The result sink of `--result-sink`: the match results a sidecar delivers (SPEC §12), kept
for `GET /_emulator/results`, as a studio's backend would receive them.

* A delivery is a JSON object with the fields of SPEC §12: `request_id` and `reason` (text),
  `match_id` and `detail` (text or null), `result` (any JSON), `players_peak` and `arrived`
  (counts), `ended_at` (RFC 3339) and `started_at` (RFC 3339 or null). Other fields are kept
  as sent. One that does not fit answers 400 `{"message", "details"}` and is not kept.
* `Idempotency-Key`: a delivery repeating the key of one already accepted answers that first
  answer again (same status and body, plus `Idempotent-Replayed: true`) and stores nothing new,
  beyond counting the repeat on the first (`replays`). Without a key every delivery is kept.
  A key that is not `<request_id>:<match_id or "none">` of its body is kept as sent, with a note
  in `problems` (a contract check for CI, which does not refuse the delivery).
* `Authorization` is recorded with its token redacted (`Bearer <redacted>`), or as sent with
  `--show-tokens`; it is never printed.

Bounded: beyond `max_entries` the oldest deliveries (and their keys) are dropped, and counted.
Pure: no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sidecar.emulator.store import utcnow

_MAX_ENTRIES = 1000
REDACTED = "<redacted>"
_TEXT = ("request_id", "reason")
_TEXT_OR_NULL = ("match_id", "detail", "started_at")
_COUNTS = ("players_peak", "arrived")
_REQUIRED = (*_TEXT, *_TEXT_OR_NULL, *_COUNTS, "result", "ended_at")


@dataclass
class Delivery:
    id: int
    received_at: str
    idempotency_key: str | None
    authorization: str | None
    body: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    replays: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "idempotency_key": self.idempotency_key,
            "authorization": self.authorization,
            "replays": self.replays,
            "problems": self.problems,
            "body": self.body,
        }


def body_problems(body: Any) -> list[dict[str, str]]:
    """What makes `body` not a delivery of SPEC §12 ([] when it is one)."""
    if not isinstance(body, dict):
        return [{"field": "", "error": "must be a JSON object"}]
    details = [{"field": name, "error": "is required"} for name in _REQUIRED if name not in body]
    for name in _TEXT:
        if name in body and not (isinstance(body[name], str) and body[name]):
            details.append({"field": name, "error": "must be non-empty text"})
    for name in _TEXT_OR_NULL:
        if name in body and body[name] is not None and not isinstance(body[name], str):
            details.append({"field": name, "error": "must be text or null"})
    for name in _COUNTS:
        value = body.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            details.append({"field": name, "error": "must be a count (an integer >= 0)"})
    for name in ("started_at", "ended_at"):
        value = body.get(name)
        missing_end = name == "ended_at" and name in body and not isinstance(value, str)
        if missing_end or (isinstance(value, str) and not _rfc3339(value)):
            details.append({"field": name, "error": "must be an RFC 3339 time"})
    return details


def _rfc3339(text: str) -> bool:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text and moment.tzinfo is not None


def redact(authorization: str | None, show_tokens: bool) -> str | None:
    if not authorization or show_tokens:
        return authorization or None
    scheme, sep, _ = authorization.partition(" ")
    return f"{scheme} {REDACTED}" if sep and scheme.lower() in ("bearer", "token") else REDACTED


class ResultSink:
    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self._max = max_entries
        self._deliveries: OrderedDict[int, Delivery] = OrderedDict()
        # key -> (the delivery it made, the answer given)
        self._answers: dict[str, tuple[int, int, dict[str, Any]]] = {}
        self._next = 1
        self.dropped = 0

    def replay(self, key: str | None) -> tuple[int, dict[str, Any]] | None:
        """The first answer given to `key`, counted as a repeat; None when it is new."""
        if key is None or key not in self._answers:
            return None
        delivery_id, status, answer = self._answers[key]
        delivery = self._deliveries.get(delivery_id)
        if delivery is not None:
            delivery.replays += 1
        return status, answer

    def accept(
        self, body: dict[str, Any], key: str | None, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Keep a valid delivery; (status, answer body)."""
        delivery = Delivery(
            id=self._next,
            received_at=utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            idempotency_key=key,
            authorization=authorization,
            body=body,
            problems=_key_problems(body, key),
        )
        self._next += 1
        self._deliveries[delivery.id] = delivery
        answer = {"delivered": True, "id": delivery.id, "idempotency_key": key}
        if key is not None:
            self._answers[key] = (delivery.id, 201, answer)
        while len(self._deliveries) > self._max:
            _, old = self._deliveries.popitem(last=False)
            if old.idempotency_key is not None:
                self._answers.pop(old.idempotency_key, None)
            self.dropped += 1
        return 201, answer

    def entries(self, match_id: str | None = None) -> list[dict[str, Any]]:
        return [
            delivery.to_json()
            for delivery in self._deliveries.values()
            if match_id is None or delivery.body.get("match_id") == match_id
        ]

    def clear(self) -> int:
        cleared = len(self._deliveries)
        self._deliveries.clear()
        self._answers.clear()
        return cleared


def _key_problems(body: dict[str, Any], key: str | None) -> list[str]:
    if key is None:
        return ["no Idempotency-Key: a retry would be kept twice"]
    expected = f"{body['request_id']}:{body['match_id'] or 'none'}"
    if key != expected:
        return [f"Idempotency-Key is not <request_id>:<match_id or none> ({expected})"]
    return []
