"""Endpoint storages and a stop's `container_log_storage` choice.

The reference: "`true` if you already have endpoint storage associated with your deployment's
app version, `false` if it is enabled by default and you want to disable it for this specific
request, or the name of your endpoint storage and if it is valid we will store the container
logs." So, at the stop:

* `true`: kept in the app version's storage; an app version without one keeps nothing;
* `false`: not kept;
* a storage name: kept (SPEC §9: "`true` or a storage name keeps them"). Once storages are
  declared (`--endpoint-storage`, or named by app version files), only a storage that exists
  keeps them (the built-in `emulator` or a declared one), as the platform checks the name;
* anything that is not a storage name at all (`bogus!!`): 400, the stop is refused;
* omitted: the deployment's default (legacy deploy `container_log_storage.enabled`, else not
  kept).

Every decision carries a `note` that the control API shows, so a CI job can see why its logs
were or were not kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.emulator.apps import DEFAULT_STORAGE, AppVersion
from sidecar.emulator.errors import PlatformError
from sidecar.emulator.options import STORAGE_NAME


@dataclass(frozen=True)
class LogChoice:
    """What one stop asked for: keep the logs (None: it did not say), in which storage."""

    keep: bool | None = None
    storage: str | None = None
    note: str = "container_log_storage not given: the deployment's default applies"


class EndpointStorages:
    def __init__(self, names: Iterable[str]) -> None:
        declared = set(names)
        self.names = {DEFAULT_STORAGE, *declared}
        # Without declared storages every well-formed name counts as one (SPEC §9).
        self.strict = bool(declared)

    def exists(self, name: str) -> bool:
        return name in self.names or not self.strict

    def choice(self, value: str | None, app: AppVersion) -> LogChoice:
        """The stop's `container_log_storage` value as a LogChoice; 400 when it is garbage."""
        if value is None or not value.strip():
            return LogChoice()
        text = value.strip()
        lowered = text.lower()
        if lowered == "false":
            return LogChoice(False, None, "container_log_storage=false: logs not kept")
        if lowered == "true":
            if app.endpoint_storage is None:
                note = "container_log_storage=true, but the app version has no endpoint storage"
                return LogChoice(False, None, note + ": logs not kept")
            note = f"container_log_storage=true: kept in {app.endpoint_storage}"
            return LogChoice(True, app.endpoint_storage, note)
        if not STORAGE_NAME.match(text):
            raise PlatformError(
                400, "container_log_storage must be true, false or an endpoint storage name"
            )
        if not self.exists(text):
            note = f"container_log_storage={text}: no endpoint storage of that name"
            return LogChoice(False, text, note + ": logs not kept")
        return LogChoice(True, text, f"container_log_storage={text}: kept in {text}")

    def default(self, enabled: bool, name: str | None, app: AppVersion) -> LogChoice:
        """A legacy deploy's `container_log_storage` {enabled, endpoint_storage}."""
        if not enabled:
            return LogChoice(False, None, "legacy deploy: log storage not enabled")
        storage = name or app.endpoint_storage
        if storage is None or not self.exists(storage):
            return LogChoice(False, storage, f"legacy deploy: no endpoint storage {storage}")
        return LogChoice(True, storage, f"legacy deploy: kept in {storage}")
