"""Deployment records: the emulator's in-memory state of every deployment it has created.

This module is data only (no I/O, no tasks): the status strings of the platform, one
`Deployment` record per request id with the rules of its tags, and the `DeploymentStore` that
indexes them and mints ids and tokens. The behaviour that moves a deployment through its
statuses lives in `deployments.py`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sidecar.emulator.apps import AppVersion
from sidecar.emulator.errors import PlatformError
from sidecar.emulator.storage import LogChoice
from sidecar.emulator.tail import Tail

# How much of a backed process's last output the control API keeps after its logs are gone.
OUTPUT_TAIL_BYTES = 8192
# The platform formats every timestamp like this (UTC, microseconds).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


class Status(StrEnum):
    """Deployment statuses, spelled as the platform spells them on the wire."""

    INITIALIZING = "Status.INITIALIZING"  # request accepted, nothing placed yet
    SEEKING = "Status.SEEKING"  # looking for a location
    SEEKED = "Status.SEEKED"  # location chosen
    SCANNING = "Status.SCANNING"  # image checked on the host
    DEPLOYING = "Status.DEPLOYING"  # container (here: backing process) starting
    READY = "Status.READY"  # serving; a stop is carried out from here
    ERROR = "Status.ERROR"  # failed to start; can still be stopped
    TERMINATING = "Status.TERMINATING"  # SIGTERM sent, grace period running
    TERMINATED = "Status.TERMINATED"  # gone; only kept logs remain readable


# The statuses a new deployment walks through before READY, in order.
STARTUP_WALK: tuple[Status, ...] = (
    Status.INITIALIZING,
    Status.SEEKING,
    Status.SEEKED,
    Status.SCANNING,
    Status.DEPLOYING,
)


@dataclass
class PortMapping:
    name: str
    internal: int
    external: int
    protocol: str
    to_check: bool = False
    tls_upgrade: bool = False


@dataclass
class Tag:
    name: str
    create_time: datetime
    last_updated: datetime


@dataclass
class ExitRecord:
    """What `crash_data` / `crash_logs` report: the last exit of the backing process."""

    exit_code: int | None = None
    message: str = ""
    restart_count: int = 0
    crash_logs: bytes | None = None


@dataclass
class Deployment:
    request_id: str
    app_name: str
    app_version: str
    access_point_id: int
    delete_token: str
    context_number: int
    context_token: str
    public_ip: str
    ports: dict[str, PortMapping]
    location: dict[str, Any]
    created_at: datetime
    user_env: dict[str, str]
    # The app version it runs as; its `command` is None for a simulated deployment.
    app: AppVersion
    # What a stop that does not say keeps (legacy `container_log_storage`); default: nothing.
    default_logs: LogChoice = field(
        default_factory=lambda: LogChoice(False, None, "not given: v2 deployments keep none")
    )
    # event ("ready" | "error" | "terminated") -> webhook URL
    webhooks: dict[str, str] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)
    container_command: str = ""
    container_arguments: str = ""
    status: Status = Status.INITIALIZING
    last_status: Status | None = None
    # Every status reached, in order, so a waiter cannot miss a short-lived one.
    history: list[Status] = field(default_factory=lambda: [Status.INITIALIZING])
    # When each of `history` was reached (same order), for the dashboard's timeline.
    history_times: list[datetime] = field(default_factory=lambda: [utcnow()])
    removal_time: datetime | None = None
    error_detail: str = ""
    # A stop that arrived before READY; carried out when READY is reached.
    stop_pending: bool = False
    # The first stop's container_log_storage choice; None until a stop arrives.
    stop_logs: LogChoice | None = None
    # Captured stdout+stderr in arrival order, the last MAX_LOG_BYTES of it (tail.py); None
    # once discarded at the stop.
    logs: Tail | None = field(default_factory=Tail)
    logs_kept: bool = False
    logs_note: str = ""
    # For the control API only, whatever the log storage: why the deployment ended, and the
    # last of its output, so a CI job can see why a deployment went away.
    end_reason: str = ""
    output_tail: bytearray = field(default_factory=bytearray)
    exit: ExitRecord = field(default_factory=ExitRecord)
    pid: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    # "netns" | "ports" for a backed deployment (network.Isolation), None when simulated.
    isolation: str | None = None
    # The first stop request's choice stands (its container_log_storage); later ones do not
    # change it.
    stop_requested: bool = False

    def remember_output(self, chunk: bytes) -> None:
        self.output_tail.extend(chunk)
        del self.output_tail[:-OUTPUT_TAIL_BYTES]

    @property
    def command(self) -> str | None:
        return self.app.command

    @property
    def fqdn(self) -> str:
        # The platform's `<id>.pr.edgegap.net` resolves to the host's public IP. `<id>.localhost`
        # does not resolve everywhere (only with nss-myhostname or systemd-resolved), so the
        # address itself is the name: every resolver and client library takes an IP literal.
        return self.public_ip

    @property
    def running(self) -> bool:
        return self.status not in (Status.TERMINATED, Status.ERROR)

    @property
    def terminated(self) -> bool:
        return self.status is Status.TERMINATED

    # ---- tags: names are unique per deployment; a rename keeps the tag's place -------------

    def tag(self, name: str) -> Tag:
        tag = self.tags.get(name)
        if tag is None:
            raise PlatformError(404, f"Tag {name} not found")
        return tag

    def add_tag(self, name: str) -> Tag:
        if name in self.tags:
            raise PlatformError(409, f"Tag {name} already exists")
        now = utcnow()
        tag = self.tags[name] = Tag(name, now, now)
        return tag

    def rename_tag(self, old: str, new: str) -> Tag:
        tag = self.tag(old)
        if new != old:
            if new in self.tags:
                raise PlatformError(409, f"Tag {new} already exists")
            self.tags = {(new if name == old else name): item for name, item in self.tags.items()}
            tag.name = new
        tag.last_updated = utcnow()
        return tag

    def remove_tag(self, name: str) -> None:
        del self.tags[self.tag(name).name]


@dataclass(frozen=True)
class Credentials:
    """What the platform mints for a new deployment: its ids and its two raw tokens."""

    request_id: str
    access_point_id: int
    delete_token: str
    context_number: int
    context_token: str


class DeploymentStore:
    """Deployments by request id, in creation order."""

    def __init__(self) -> None:
        self._by_id: dict[str, Deployment] = {}

    def mint(self) -> Credentials:
        """Fresh ids and tokens in the platform's formats (12-hex id, 32-hex tokens)."""
        while True:
            request_id = secrets.token_hex(6)
            if request_id not in self._by_id:
                break
        return Credentials(
            request_id=request_id,
            access_point_id=100000 + secrets.randbelow(900000),
            delete_token=secrets.token_hex(16),
            context_number=100000 + secrets.randbelow(900000),
            context_token=secrets.token_hex(16),
        )

    def add(self, deployment: Deployment) -> None:
        self._by_id[deployment.request_id] = deployment

    def get(self, request_id: str) -> Deployment | None:
        return self._by_id.get(request_id)

    def __iter__(self) -> Iterator[Deployment]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
