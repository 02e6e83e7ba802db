"""Prometheus text exposition (format 0.0.4) for `GET /metrics`.

Hand-written rather than prometheus_client: the sidecar exposes a dozen fixed families, and the
library would add start-up time and resident memory to every game container for no behaviour we
need. The tests parse our output with prometheus_client's own parser to keep us honest.

Counters on the request path are plain dict increments; everything else is read from the agent
at scrape time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

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
        return ("\n".join(self._lines) + "\n").encode()
