"""The `ARBITRIUM_*` environment a deployment's container gets, and its game port.

Values follow the formats documented in reference/edgegap-facts.md §1: 12-hex request id,
32-hex tokens, `ARBITRIUM_DELETE_URL` = `{base}/v1/self/stop/{request_id}/{access point}`,
`ARBITRIUM_PORTS_MAPPING` JSON, per-port `ARBITRIUM_PORT_<NAME>_*` variables, location JSON.
"""

from __future__ import annotations

import json
import random
import re
import socket

from sidecar.emulator.store import Deployment

GAME_PORT_NAME = "gameport"


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP right now, so the game can bind either."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError("no free port found for the game port")


def external_port() -> int:
    """An external port in the range the platform hands out: a simulated deployment's, which
    nothing serves (backed deployments get real ones, network.py)."""
    return random.randint(30000, 39999)


def port_env_name(port_name: str) -> str:
    """`gameport` -> `GAMEPORT`, `Game Port` -> `GAME_PORT` (the platform's name mangling)."""
    return re.sub(r"[^A-Z0-9]+", "_", port_name.upper()).strip("_")


def build_env(
    deployment: Deployment, base_url: str, network_env: dict[str, str] | None = None
) -> dict[str, str]:
    """The variables the platform injects (and the emulator's `network_env`, e.g. a
    deployment's own SIDECAR_PORT), then the app version's `envs`, then the deploy request's
    own variables: each later one wins."""
    request_id = deployment.request_id
    ports = {
        key: {
            "name": mapping.name,
            "internal": mapping.internal,
            "external": mapping.external,
            "protocol": mapping.protocol,
        }
        for key, mapping in deployment.ports.items()
    }
    env = {
        "ARBITRIUM_REQUEST_ID": request_id,
        "ARBITRIUM_DELETE_URL": (
            f"{base_url}/v1/self/stop/{request_id}/{deployment.access_point_id}"
        ),
        "ARBITRIUM_DELETE_TOKEN": deployment.delete_token,
        "ARBITRIUM_CONTEXT_URL": (
            f"{base_url}/v1/context/{request_id}/{deployment.context_number}"
        ),
        "ARBITRIUM_CONTEXT_TOKEN": deployment.context_token,
        "ARBITRIUM_PUBLIC_IP": deployment.public_ip,
        "ARBITRIUM_PORTS_MAPPING": json.dumps({"ports": ports}),
        "ARBITRIUM_DEPLOYMENT_LOCATION": json.dumps(deployment.location),
        "ARBITRIUM_DEPLOYMENT_TAGS": ",".join(deployment.tags),
        "ARBITRIUM_HOST_ID": f"emulator-{request_id[:6]}",
        "ARBITRIUM_HOST_BASE_CLOCK_FREQUENCY": "3000",
        "ARBITRIUM_DEPLOYMENT_VCPU_UNITS": "1024",
        "ARBITRIUM_DEPLOYMENT_MEMORY_MB": "2048",
        "ARBITRIUM_BEACON_ENABLED": "false",
        "ARBITRIUM_HOST_IN_PRIVATE_FLEET": "false",
        "ARBITRIUM_PRIVATE_FLEET_ID": "PUBLIC_CLOUD",
    }
    for mapping in deployment.ports.values():
        prefix = f"ARBITRIUM_PORT_{port_env_name(mapping.name)}"
        env[f"{prefix}_INTERNAL"] = str(mapping.internal)
        env[f"{prefix}_EXTERNAL"] = str(mapping.external)
        env[f"{prefix}_PROTOCOL"] = mapping.protocol
    env.update(network_env or {})
    env.update(deployment.app.envs)
    env.update(deployment.user_env)
    return env
