"""Fleets, fleet policies and fleet ↔ application-version links, as stored resources.

The emulator stores and returns them with the reference's bodies; it does not act on them
(no deployments are created by policies). Errors are `FleetError(status, message)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sidecar.emulator.models import FleetCreate, FleetPatch, PolicyCreate, PolicyPatch
from sidecar.emulator.store import format_time, utcnow
from sidecar.errors import HttpError


class FleetError(HttpError):
    """A fleet or policy request the store refuses (an unknown name, a duplicate)."""


@dataclass
class Policy:
    name: str
    enabled: bool
    type: str
    minimum: int
    maximum: int
    threshold: float
    data: dict[str, Any]
    create_time: datetime
    last_updated: datetime

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "type": self.type,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "threshold": self.threshold,
            "data": self.data,
            "create_time": format_time(self.create_time),
            "last_updated": format_time(self.last_updated),
        }


@dataclass
class Link:
    app: str
    app_version: str
    create_time: datetime
    last_updated: datetime


@dataclass
class Fleet:
    name: str
    enabled: bool
    create_time: datetime
    last_updated: datetime
    policies: dict[str, Policy] = field(default_factory=dict)
    links: dict[tuple[str, str], Link] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "enabled": self.enabled,
            "create_time": format_time(self.create_time),
            "last_updated": format_time(self.last_updated),
        }

    def link_view(self, link: Link) -> dict[str, Any]:
        return {
            "app": link.app,
            "app_version": link.app_version,
            "fleet": self.name,
            "create_time": format_time(link.create_time),
            "last_updated": format_time(link.last_updated),
        }


class FleetStore:
    def __init__(self) -> None:
        self._fleets: dict[str, Fleet] = {}

    def all(self) -> list[Fleet]:
        return list(self._fleets.values())

    def get(self, name: str) -> Fleet:
        fleet = self._fleets.get(name)
        if fleet is None:
            raise FleetError(404, f"Fleet {name} not found")
        return fleet

    def create(self, body: FleetCreate) -> Fleet:
        if body.name in self._fleets:
            raise FleetError(400, f"Fleet {body.name} already exists")
        now = utcnow()
        fleet = Fleet(body.name, body.enabled, now, now)
        self._fleets[fleet.name] = fleet
        return fleet

    def update(self, name: str, body: FleetPatch) -> Fleet:
        fleet = self.get(name)
        if body.name is not None and body.name != name:
            if body.name in self._fleets:
                raise FleetError(400, f"Fleet {body.name} already exists")
            del self._fleets[name]
            fleet.name = body.name
            self._fleets[fleet.name] = fleet
        if body.enabled is not None:
            fleet.enabled = body.enabled
        fleet.last_updated = utcnow()
        return fleet

    def delete(self, name: str) -> None:
        self.get(name)
        del self._fleets[name]

    def add_policy(self, fleet_name: str, body: PolicyCreate) -> Policy:
        fleet = self.get(fleet_name)
        if body.name in fleet.policies:
            raise FleetError(400, f"Policy {body.name} already exists in fleet {fleet_name}")
        if body.minimum > body.maximum:
            raise FleetError(400, "minimum must not be greater than maximum")
        now = utcnow()
        policy = Policy(
            name=body.name,
            enabled=body.enabled,
            type=body.type,
            minimum=body.minimum,
            maximum=body.maximum,
            threshold=body.threshold,
            data=body.data,
            create_time=now,
            last_updated=now,
        )
        fleet.policies[policy.name] = policy
        return policy

    def get_policy(self, fleet_name: str, policy_name: str) -> Policy:
        policy = self.get(fleet_name).policies.get(policy_name)
        if policy is None:
            raise FleetError(404, f"Policy {policy_name} not found in fleet {fleet_name}")
        return policy

    def update_policy(self, fleet_name: str, policy_name: str, body: PolicyPatch) -> Policy:
        fleet = self.get(fleet_name)
        policy = self.get_policy(fleet_name, policy_name)
        minimum = policy.minimum if body.minimum is None else body.minimum
        maximum = policy.maximum if body.maximum is None else body.maximum
        if minimum > maximum:
            raise FleetError(400, "minimum must not be greater than maximum")
        if body.name is not None and body.name != policy_name:
            if body.name in fleet.policies:
                raise FleetError(400, f"Policy {body.name} already exists in fleet {fleet_name}")
            del fleet.policies[policy_name]
            policy.name = body.name
            fleet.policies[policy.name] = policy
        for attribute in ("enabled", "type", "threshold", "data"):
            value = getattr(body, attribute)
            if value is not None:
                setattr(policy, attribute, value)
        policy.minimum, policy.maximum = minimum, maximum
        policy.last_updated = utcnow()
        return policy

    def delete_policy(self, fleet_name: str, policy_name: str) -> None:
        self.get_policy(fleet_name, policy_name)
        del self.get(fleet_name).policies[policy_name]

    def link(self, fleet_name: str, app: str, version: str) -> dict[str, Any]:
        fleet = self.get(fleet_name)
        now = utcnow()
        link = fleet.links.get((app, version))
        if link is None:
            link = fleet.links[(app, version)] = Link(app, version, now, now)
        else:
            link.last_updated = now
        return fleet.link_view(link)

    def unlink(self, fleet_name: str, app: str, version: str) -> None:
        fleet = self.get(fleet_name)
        if fleet.links.pop((app, version), None) is None:
            raise FleetError(404, f"Version {app}/{version} is not linked to fleet {fleet_name}")
