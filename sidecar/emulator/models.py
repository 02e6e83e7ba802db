"""Request bodies the emulator accepts, as pydantic models (unknown fields are rejected).

A body that is not JSON answers 400; one that does not fit its model answers 400 (422 for
legacy deploy and the control API) with `{"message": ..., "details": [...]}` — the v2 error
shape, so clients see what was wrong. Types are strict (`wire.parse_body`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def env_key(key: str) -> str:
    """A variable name a process environment can hold: no '=' (it ends the name in
    `KEY=value`) and no NUL (it ends the string). The platform says keys are "automatically
    sanitized" without saying how, so the emulator refuses such a key by name instead of
    guessing; a deployment carrying one would otherwise never start."""
    if "=" in key or "\0" in key:
        raise ValueError(
            f"environment variable {key[:64]!r}: a key cannot contain '=' or a NUL character"
        )
    return key


def env_value(value: str, key: str) -> str:
    """A value a process environment can hold: no NUL. The value is not quoted (it may be a
    secret: `is_hidden`)."""
    if "\0" in value:
        raise ValueError(
            f"environment variable {key[:64]!r}: a value cannot contain a NUL character"
        )
    return value


class EnvVar(_Body):
    key: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=4096)
    is_hidden: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, key: str) -> str:
        return env_key(key)

    @model_validator(mode="after")
    def _value(self) -> EnvVar:
        env_value(self.value, self.key)
        return self


class Webhook(_Body):
    url: str = Field(min_length=1, max_length=2048)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url


class User(_Body):
    user_type: Literal["ip_address", "geo_coordinates"]
    user_data: dict[str, Any]


class DeployV2(_Body):
    """`POST /deployments`."""

    application: str = Field(min_length=1, max_length=256)
    version: str = Field(min_length=1, max_length=256)
    require_cached_locations: bool = False
    users: list[User] = Field(default_factory=list)
    environment_variables: list[EnvVar] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    webhook_on_ready: Webhook | None = None
    webhook_on_error: Webhook | None = None
    webhook_on_terminated: Webhook | None = None


class Filter(_Body):
    field: str = Field(min_length=1)
    values: list[str]
    filter_type: Literal["any", "all", "not"] = "any"


class GeoIp(_Body):
    ip: str
    latitude: float
    longitude: float


class Coordinates(_Body):
    latitude: float
    longitude: float


class LogStorage(_Body):
    enabled: bool = False
    endpoint_storage: str | None = None


class DeployV1(_Body):
    """Legacy `POST /v1/deploy`: exactly one of `ip_list` / `geo_ip_list` (the reference: "not
    optional, but mutually exclusive")."""

    app_name: str = Field(min_length=1, max_length=256)
    version_name: str | None = None
    is_public_app: bool = False
    ip_list: list[str] | None = None
    geo_ip_list: list[GeoIp] | None = None
    telemetry_profile_uuid_list: list[str] | None = None
    env_vars: list[EnvVar] = Field(default_factory=list)
    skip_telemetry: bool = False
    location: Coordinates | None = None
    webhook_url: str | None = None
    tags: list[str] | None = None
    container_log_storage: LogStorage | None = None
    filters: list[Filter] | None = None
    ap_sort_strategy: str | None = "basic"
    command: str | None = None
    arguments: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url


class BulkStop(_Body):
    filters: list[Filter] = Field(min_length=1)


class TagBody(_Body):
    name: str = Field(min_length=1, max_length=256)


class FleetCreate(_Body):
    name: str = Field(min_length=1, max_length=256)
    enabled: bool = False


class FleetPatch(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    enabled: bool | None = None


class PolicyCreate(_Body):
    name: str = Field(min_length=1, max_length=256)
    enabled: bool = True
    type: str = Field(min_length=1)
    minimum: int = Field(ge=0)
    maximum: int = Field(ge=0)
    threshold: float = Field(ge=0.1, le=1.0)
    data: dict[str, Any] = Field(default_factory=dict)


class PolicyPatch(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    enabled: bool | None = None
    type: str | None = Field(default=None, min_length=1)
    minimum: int | None = Field(default=None, ge=0)
    maximum: int | None = Field(default=None, ge=0)
    threshold: float | None = Field(default=None, ge=0.1, le=1.0)
    data: dict[str, Any] | None = None
    # The reference's PATCH example echoes these; they are accepted and ignored.
    create_time: str | None = None
    last_updated: str | None = None


class FaultBody(_Body):
    """`POST /_emulator/faults` (see faults.py for what each field does)."""

    target: str = "self_stop"
    status: int | None = Field(default=None, ge=200, le=599)
    # null: every matching call while the fault lasts. The bound only keeps the number an int.
    count: int | None = Field(default=1, ge=1, le=10**12)
    delay_seconds: float = Field(default=0.0, ge=0.0, le=600.0)
    retry_after: str | int | None = None
    request_id: str | None = Field(default=None, min_length=1, max_length=256)
    starts_in_seconds: float = Field(default=0.0, ge=0.0, le=86_400.0, allow_inf_nan=False)
    duration_seconds: float | None = Field(default=None, gt=0.0, le=86_400.0, allow_inf_nan=False)
