"""Application versions: what the platform knows about an app before any deployment of it.

`AppVersion` holds the fields of the platform's app version that change how its deployments
behave here: the backing command (`--app`; none: deployments are simulated), the restart
policy, `time_to_deploy` (how long the port readiness check may take), the termination grace
period, the ports (`port`, `protocol`, `to_check`, `name`), `max_duration`, injected `envs` and
the linked `endpoint_storage`. `--app-version NAME=FILE` reads them from a JSON file in the
platform's own shape (a `GET /v1/app/{app}/version/{version}` body works as is; fields the
emulator does not model are ignored); `--restart-policy NAME=POLICY` sets one app's policy.
The file is read as the sidecar reads its manifests: a regular file (a FIFO or a device is
refused, never waited on) of at most 1 MiB, decoded by `bounded_json` (nesting deeper than 64
levels, NaN or Infinity refused), so a bad file is exit 2 naming the option before anything is
served, never a hang, a memory spike or a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sidecar.bounded_json import MAX_DEPTH, read_json
from sidecar.emulator.models import env_key, env_value
from sidecar.errors import UsageError
from sidecar.regular_file import read_regular_file

RestartPolicy = Literal["always", "never", "on_failure"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("always", "never", "on_failure")

# The endpoint storage every app version is linked to unless its file says otherwise: the
# emulator's own log store, so `container_log_storage=true` keeps logs out of the box.
DEFAULT_STORAGE = "emulator"
DEFAULT_TIME_TO_DEPLOY = 30.0
# A platform app version body is a few KiB; the cap is the one the sidecar's manifests have.
MAX_APP_VERSION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class AppPort:
    """One port of an app version (the platform's AppVersionPort)."""

    port: int = 7777
    protocol: str = "UDP"
    # The platform's port readiness check: READY waits until the process listens on it.
    to_check: bool = True
    tls_upgrade: bool = False
    name: str = "gameport"


@dataclass(frozen=True)
class AppVersion:
    """An app version as the emulator runs it; `command` None means simulated deployments."""

    command: str | None = None
    restart_policy: RestartPolicy = "always"
    time_to_deploy: float = DEFAULT_TIME_TO_DEPLOY
    grace_seconds: float = 5.0
    ports: tuple[AppPort, ...] = (AppPort(),)
    max_duration: int = 1440
    envs: dict[str, str] = field(default_factory=dict)
    endpoint_storage: str | None = DEFAULT_STORAGE


class _PortFile(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    port: int = Field(ge=0, le=65535)
    protocol: str = Field(min_length=1)
    to_check: bool = True
    tls_upgrade: bool = False
    name: str | None = None


class _EnvFile(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    key: str = Field(min_length=1)
    value: str

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        return env_key(key)

    @model_validator(mode="after")
    def _value(self) -> _EnvFile:
        env_value(self.value, self.key)
        return self


class AppVersionFile(BaseModel):
    """The fields of a platform app version body that the emulator models; None: not given."""

    model_config = ConfigDict(extra="ignore", strict=True)

    restart_policy: RestartPolicy | None = None
    # The platform's minimum is 15 s; locally any positive time is allowed, for fast tests.
    time_to_deploy: float | None = Field(default=None, gt=0)
    termination_grace_period_seconds: float | None = Field(default=None, ge=0)
    ports: list[_PortFile] | None = None
    max_duration: int | None = Field(default=None, ge=-1, le=1440)
    envs: list[_EnvFile] | None = None
    endpoint_storage: str | None = None

    def apply(self, base: AppVersion) -> AppVersion:
        """`base` with the fields this file gives."""
        ports = base.ports
        if self.ports is not None:
            ports = tuple(
                AppPort(
                    port=item.port,
                    protocol=item.protocol.upper(),
                    to_check=item.to_check,
                    tls_upgrade=item.tls_upgrade,
                    name=item.name or str(item.port),
                )
                for item in self.ports
            )
        grace = self.termination_grace_period_seconds
        storage = base.endpoint_storage
        if "endpoint_storage" in self.model_fields_set:
            storage = self.endpoint_storage or None
        return AppVersion(
            command=base.command,
            restart_policy=self.restart_policy or base.restart_policy,
            time_to_deploy=self.time_to_deploy or base.time_to_deploy,
            grace_seconds=base.grace_seconds if grace is None else grace,
            ports=ports,
            max_duration=base.max_duration if self.max_duration is None else self.max_duration,
            envs={**base.envs, **{item.key: item.value for item in self.envs or []}},
            endpoint_storage=storage,
        )


def read_app_version(path: str) -> AppVersionFile:
    """Parse an app version JSON file; a bad file is a UsageError naming it and the field."""
    try:
        raw = read_regular_file(path, MAX_APP_VERSION_BYTES)
    except ValueError as exc:
        raise UsageError(f"--app-version: {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--app-version: {path} is not UTF-8 text") from None
    read = read_json(text, max_bytes=MAX_APP_VERSION_BYTES, max_depth=MAX_DEPTH)
    if read.problem is not None:
        raise UsageError(f"--app-version: {path} {read.problem}")
    data = read.value
    if isinstance(data, dict) and isinstance(data.get("version"), dict):
        data = data["version"]  # the body of "create app version": {"success", "version"}
    try:
        return AppVersionFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise UsageError(f"--app-version: {path}: {where}: {first['msg']}") from None
