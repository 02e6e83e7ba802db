"""Prometheus text exposition (format 0.0.4) for `GET /metrics`.

Hand-written rather than prometheus_client: the sidecar exposes a dozen fixed families, and the
library would add start-up time and resident memory to every game container for no behaviour we
need. The tests parse our output with prometheus_client's own parser to keep us honest.

Counters on the request path are plain dict increments; everything else is read from a status
snapshot (sidecar.status) at scrape time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from sidecar import __version__
from sidecar.lifecycle import State
from sidecar.status import Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RequestCounter:
    """Requests by (route, method, status): the only metric touched on the hot path, where
    the API's guard increments `counts` directly."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, int]] = Counter()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Exposition:
    """Builds the text page family by family."""

    def __init__(self, prefix: str = "edgegap_sidecar_") -> None:
        self._prefix = prefix
        self._lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        # In the 0.0.4 text format a counter's family and samples share the `_total` name.
        full = self._prefix + name + ("_total" if kind == "counter" else "")
        self._lines.append(f"# HELP {full} {help_text}")
        self._lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            self._lines.append(f"{full}{_labels(labels)} {_number(value)}")

    def single(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def render(self) -> bytes:
        # "replace": a label value is whatever an id held, and an id read from the environment
        # may carry lone surrogates (undecodable bytes), which UTF-8 cannot encode. Such a
        # character shows as `?`; the scrape never fails.
        return ("\n".join(self._lines) + "\n").encode("utf-8", "replace")


def render(status: Status, requests: RequestCounter) -> bytes:
    """The `/metrics` page for one snapshot and the request counters."""
    page = Exposition()
    page.family("info", "gauge", "Sidecar version.", [({"version": __version__}, 1)])
    page.family(
        "state",
        "gauge",
        "1 for the current lifecycle state.",
        [({"state": s.value}, 1 if status.state is s else 0) for s in State],
    )
    page.single("players", "gauge", "Connected players.", status.player_count)
    page.single("players_peak", "gauge", "Most players connected at once.", status.players_peak)
    page.single("uptime_seconds", "gauge", "Seconds since the sidecar started.", status.uptime)
    page.single("dry_run", "gauge", "1 when self-stop calls are only logged.", status.dry_run)
    # SPEC §12: the matchmaker's players (0 without match data); the match id as a label.
    page.single(
        "match_expected_players", "gauge", "Players the matchmaker sent.", status.match_expected
    )
    page.single(
        "match_arrived_players",
        "gauge",
        "Matchmaker tickets whose player arrived.",
        status.match_arrived,
    )
    page.family(
        "match_info",
        "gauge",
        "1, labelled with the match id, once there is one.",
        [({"match_id": status.match_id}, 1)] if status.match_id is not None else [],
    )
    page.family(
        "timer_seconds_left",
        "gauge",
        "Seconds left on each armed timer.",
        [({"timer": name}, left) for name, left in status.timers_left.items()],
    )
    page.family(
        "stop_decided",
        "gauge",
        "1 once a stop is decided, labelled with its reason.",
        [({"reason": status.stop_reason.value}, 1)] if status.stop_reason else [],
    )
    page.family(
        "stop_attempts", "counter", "Self-stop HTTP attempts.", [({}, status.stop.attempts)]
    )
    outcome = status.stop.outcome
    page.family(
        "stop_result",
        "gauge",
        "1 for the self-stop outcome (accepted, already_gone, failed, dry_run).",
        [({"result": outcome.value}, 1)] if outcome else [],
    )
    page.single(
        "stop_log_storage_refused",
        "gauge",
        "1 once the platform refused the stop's container_log_storage (the stop went on "
        "without it).",
        status.stop.log_storage_refused,
    )
    page.family(
        "http_requests",
        "counter",
        "Local API requests by route, method and status.",
        [
            ({"route": route, "method": method, "status": str(code)}, count)
            for (route, method, code), count in sorted(requests.counts.items())
        ],
    )
    stats = status.game.stats if status.game is not None else None
    if stats is not None:
        page.single("game_cpu_percent", "gauge", "Game process tree CPU %.", stats.cpu_percent)
        page.single("game_rss_bytes", "gauge", "Game process tree RSS.", stats.rss_bytes)
    return page.render()
