"""Wire shapes: the reference's JSON bodies built from emulator records (no I/O, no state).

Field names, nesting and time formats follow reference/edgegap-dedicated-servers-api.txt.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from sidecar.emulator.store import (
    Deployment,
    ExitRecord,
    PortMapping,
    Status,
    Tag,
    format_time,
    utcnow,
)

T = TypeVar("T")


def _link(host: str, mapping: PortMapping) -> str:
    """`host:external`, with the scheme the platform puts in front of web ports."""
    scheme = {"HTTP": "http", "HTTPS": "https", "WS": "ws", "WSS": "wss"}.get(
        mapping.protocol.upper()
    )
    if scheme is not None and mapping.tls_upgrade:
        scheme = {"http": "https", "ws": "wss"}.get(scheme, scheme)
    return f"{scheme}://{host}:{mapping.external}" if scheme else f"{host}:{mapping.external}"


def ports_view(deployment: Deployment) -> dict[str, Any]:
    return {
        key: {
            "external": mapping.external,
            "internal": mapping.internal,
            "protocol": mapping.protocol,
            "name": mapping.name,
            "tls_upgrade": mapping.tls_upgrade,
            "link": _link(deployment.fqdn, mapping),
            # Where the platform's proxy listens for this port: locally the external port
            # itself is the proxy (the forwarder in netns mode, the game in ports mode).
            "proxy": mapping.external,
        }
        for key, mapping in deployment.ports.items()
    }


def status_view(deployment: Deployment) -> dict[str, Any]:
    """`GET /v1/status/{request_id}` (also the webhook body and the stop's summary)."""
    end = deployment.removal_time or utcnow()
    return {
        "request_id": deployment.request_id,
        "fqdn": deployment.fqdn,
        "app_name": deployment.app_name,
        "app_version": deployment.app_version,
        "current_status": str(deployment.status),
        "running": deployment.running,
        "whitelisting_active": False,
        "start_time": format_time(deployment.created_at),
        "removal_time": (format_time(deployment.removal_time) if deployment.removal_time else None),
        "elapsed_time": int((end - deployment.created_at).total_seconds()),
        "last_status": str(deployment.last_status) if deployment.last_status else None,
        "error": deployment.status is Status.ERROR,
        "error_detail": deployment.error_detail,
        "ports": ports_view(deployment),
        "public_ip": deployment.public_ip,
        "sessions": [],
        "location": deployment.location,
        "tags": list(deployment.tags),
        # Session sockets (deprecated on the platform): none are modelled, so none are used.
        "sockets": "0",
        "sockets_usage": "0",
        "command": deployment.container_command,
        "arguments": deployment.container_arguments,
        "max_duration": deployment.app.max_duration,
    }


def stop_view(deployment: Deployment) -> dict[str, Any]:
    """Body of `/v1/stop` and `/v1/self/stop` answers."""
    return {
        "message": f"Instance {deployment.request_id} will be deleted",
        "deployment_summary": status_view(deployment),
    }


def list_item_view(deployment: Deployment) -> dict[str, Any]:
    """One entry of `GET /v1/deployments`."""
    return {
        "request_id": deployment.request_id,
        "fqdn": deployment.fqdn,
        "start_time": format_time(deployment.created_at),
        "ready": deployment.status is Status.READY,
        "public_ip": deployment.public_ip,
        "ports": ports_view(deployment),
        "tags": list(deployment.tags),
        # Session sockets (deprecated on the platform): none are modelled, so none are used.
        "sockets": "0",
        "sockets_usage": "0",
        "is_joinable_by_session": False,
    }


def context_view(deployment: Deployment) -> dict[str, Any]:
    """`GET $ARBITRIUM_CONTEXT_URL` (reference/edgegap-facts.md §5)."""
    return {
        "request_id": deployment.request_id,
        "public_ip": deployment.public_ip,
        "status": str(deployment.status),
        "ready": deployment.status is Status.READY,
        "whitelisting_active": False,
        "fqdn": deployment.fqdn,
        "ports": ports_view(deployment),
        "location": deployment.location,
        "tags": list(deployment.tags),
        # Session sockets (deprecated on the platform): none are modelled, so none are used.
        "sockets": "0",
        "sockets_usage": "0",
        "is_joinable_by_session": False,
    }


def _decode(data: bytes | bytearray | None) -> str | None:
    return None if data is None else bytes(data).decode("utf-8", errors="replace")


def crash_data_view(record: ExitRecord) -> dict[str, Any]:
    return {
        "exit_code": record.exit_code,
        "message": record.message,
        "restart_count": record.restart_count,
    }


def container_logs_view(deployment: Deployment, logs_link: str | None) -> dict[str, Any]:
    return {
        "logs": _decode(None if deployment.logs is None else deployment.logs.kept()) or "",
        "encoding": "utf-8",
        "crash_logs": _decode(deployment.exit.crash_logs),
        "crash_data": crash_data_view(deployment.exit),
        "logs_link": logs_link,
    }


def tag_view(tag: Tag) -> dict[str, Any]:
    return {
        "name": tag.name,
        "create_time": format_time(tag.create_time),
        "last_updated": format_time(tag.last_updated),
    }


def paginate(items: list[T], page: int, limit: int) -> tuple[list[T], dict[str, Any]]:
    """One page of `items` and the reference's `pagination` object (pages count from 1)."""
    num_pages = max(1, math.ceil(len(items) / limit))
    start = (page - 1) * limit
    has_next = page < num_pages
    has_previous = page > 1
    return items[start : start + limit], {
        "number": page,
        # The reference shows numbers here, never null: without a next (previous) page they
        # stay on this one.
        "next_page_number": page + 1 if has_next else page,
        "previous_page_number": page - 1 if has_previous else page,
        "paginator": {"num_pages": num_pages},
        "has_next": has_next,
        "has_previous": has_previous,
    }
