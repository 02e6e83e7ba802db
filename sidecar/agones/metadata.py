"""The Kubernetes rules for GameServer labels and annotations, so that a key or value Agones'
API server would refuse is refused here too (SPEC §10: 400), not only on a real cluster.

Keys the SDK sets are stored as `agones.dev/sdk-<key>` (Agones' `metadataPrefix`). A key is a
qualified name: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters,
alphanumeric at both ends with `-`, `_`, `.` inside. A label value is empty or such a name; an
annotation value is any text, but all annotations together hold at most 256 KiB.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SDK_PREFIX = "agones.dev/sdk-"
NAME_MAX = 63
PREFIX_MAX = 253
ANNOTATIONS_MAX_BYTES = 256 * 1024

_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", re.ASCII)


def key_problem(key: str) -> str | None:
    """Why Kubernetes would refuse `key` as a label or annotation key (None when it is fine)."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "the prefix before '/' must not be empty"
        if "/" in prefix:
            return "a key has at most one '/'"
        if len(prefix) > PREFIX_MAX or not all(
            _DNS_LABEL.fullmatch(part) for part in prefix.split(".")
        ):
            return f"the prefix {prefix[:60]!r} must be a lower-case DNS subdomain"
    if not name:
        return "the name part must not be empty"
    if len(name) > NAME_MAX:
        return f"the name part must be at most {NAME_MAX} characters"
    if not _NAME.fullmatch(name):
        return (
            "the name part must be alphanumeric characters, '-', '_' or '.', starting and "
            "ending with an alphanumeric character"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > NAME_MAX:
        return f"a label value must be at most {NAME_MAX} characters"
    if not _NAME.fullmatch(value):
        return (
            "a label value must be empty or alphanumeric characters, '-', '_' or '.', starting "
            "and ending with an alphanumeric character"
        )
    return None


def annotations_size(annotations: Mapping[str, str]) -> int:
    """What Kubernetes counts against ANNOTATIONS_MAX_BYTES."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def sdk_key(key: str) -> str:
    return SDK_PREFIX + key
