"""How a backed deployment gets its network, as a container does on the platform: its own ports,
reachable from the host at `public_ip:external`, and a readiness check of the ones to check.

Two modes (`Isolation`), chosen once when the emulator starts:

* netns: the process runs in a network namespace of its own (netns.py). Inside, its ports are
  the app version's (7777 stays 7777, and a sidecar's 8787 is its own), and the emulator's API
  is served on the same address as outside, so `ARBITRIUM_DELETE_URL` works unchanged. From
  the host, `public_ip:external` forwards TCP and UDP to `127.0.0.1:internal` inside
  (forward.py). Nothing else of the host is reachable from inside.
* ports: the process shares the host's network. Each port gets a free host port, used as both
  `internal` and `external`, and the deployment gets its own `SIDECAR_PORT`, so two
  deployments of one app never collide. A game that ignores ARBITRIUM_PORT_*_INTERNAL and
  binds a fixed port collides here (in netns it would not).

The readiness check reads the kernel's socket tables as the process sees them
(`/proc/<pid>/net/{tcp,udp}{,6}`): a TCP port is ready once something listens on it, a UDP port
once something is bound to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from sidecar.emulator import netns
from sidecar.emulator.apps import AppPort
from sidecar.emulator.environment import pick_free_port
from sidecar.emulator.forward import TcpForwarder, UdpForwarder
from sidecar.emulator.store import PortMapping
from sidecar.errors import StartupError

log = logging.getLogger(__name__)


class Isolation(enum.StrEnum):
    NETNS = "netns"  # own network namespace; ports forwarded from the host
    PORTS = "ports"  # host network; distinct free ports, internal = external


def resolve_isolation(requested: str) -> tuple[Isolation, str]:
    """The mode to run in, and why (shown at start-up and in /_emulator/health)."""
    if requested == "ports":
        return Isolation.PORTS, "requested with --isolation ports"
    reason = netns.unavailable()
    if reason is None:
        return Isolation.NETNS, "each backed deployment has its own network namespace"
    if requested == "netns":
        raise StartupError(f"--isolation netns: {reason}")
    return Isolation.PORTS, f"network namespaces unavailable ({reason})"


def transports(protocol: str) -> tuple[str, ...]:
    """The kernel transports a platform protocol runs on ("tcp", "udp")."""
    upper = protocol.upper()
    if upper == "UDP":
        return ("udp",)
    if upper == "TCP/UDP":
        return ("tcp", "udp")
    return ("tcp",)  # TCP, HTTP, HTTPS, WS, WSS


def _socket_table_has(path: str, port: int, tcp: bool) -> bool:
    try:
        with open(path, encoding="ascii") as table:
            rows = table.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        fields = row.split()
        if len(fields) < 4:
            continue
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        # TCP: LISTEN (0A). UDP: any bound socket (unconnected ones show as 07).
        if local_port == port and (not tcp or fields[3] == "0A"):
            return True
    return False


def listening(pid: int, port: int, protocol: str) -> bool:
    """Whether the network `pid` lives in has `port` open for every transport of `protocol`."""
    for transport in transports(protocol):
        tcp = transport == "tcp"
        tables = (f"/proc/{pid}/net/{transport}", f"/proc/{pid}/net/{transport}6")
        if not any(_socket_table_has(path, port, tcp) for path in tables):
            return False
    return True


ApiSite = Callable[[socket.socket], Awaitable[web.BaseSite]]


@dataclass
class DeploymentNetwork:
    """The network of one backed deployment: its ports, the variables that describe it, and
    (netns) the namespace, the emulator's API inside it and the forwarders into it."""

    isolation: Isolation
    ports: dict[str, PortMapping]
    env: dict[str, str]
    _bound: list[tuple[PortMapping, str, socket.socket]] = field(default_factory=list)
    _fd: int | None = None
    _forwarders: list[TcpForwarder | UdpForwarder] = field(default_factory=list)
    _api_sites: list[web.BaseSite] = field(default_factory=list)

    @property
    def namespace_fd(self) -> int | None:
        return self._fd

    def command_prefix(self) -> tuple[list[str], tuple[int, ...]]:
        """argv prefix and descriptors to pass, to start a process in this network."""
        if self._fd is None:
            return [], ()
        return netns.spawn_prefix(self._fd), (self._fd,)

    async def start(self, base_url: str, api_site: ApiSite | None) -> None:
        """netns: make the namespace, serve the API inside it, start the forwarders."""
        if self.isolation is not Isolation.NETNS:
            return
        self._fd = await asyncio.to_thread(netns.create_namespace)
        fd = self._fd

        async def inner(kind: int) -> socket.socket:
            return await netns.async_socket_in(fd, socket.AF_INET, kind)

        if api_site is not None:
            address = urlsplit(base_url)
            host, port = address.hostname or "127.0.0.1", address.port or 80
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = await netns.async_socket_in(fd, family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(128)
            self._api_sites.append(await api_site(listener))
        for mapping, transport, bound in self._bound:
            forwarder: TcpForwarder | UdpForwarder
            if transport == "tcp":
                bound.listen(128)
                forwarder = TcpForwarder(bound, inner, mapping.internal)
            else:
                forwarder = UdpForwarder(bound, inner, mapping.internal)
            await forwarder.start()
            self._forwarders.append(forwarder)
        self._bound.clear()

    def listening(self, pid: int) -> list[str]:
        """The names of the checked ports nothing listens on yet (empty: ready)."""
        return [
            mapping.name
            for mapping in self.ports.values()
            if mapping.to_check and not listening(pid, mapping.internal, mapping.protocol)
        ]

    def discard(self) -> None:
        """Let go of the host sockets of a network that will never start."""
        for _, _, bound in self._bound:
            bound.close()
        self._bound.clear()

    async def close(self) -> None:
        for site in self._api_sites:
            with contextlib.suppress(RuntimeError):
                await site.stop()
        for forwarder in self._forwarders:
            await forwarder.close()
        for _, _, bound in self._bound:
            bound.close()
        self._api_sites.clear()
        self._forwarders.clear()
        self._bound.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PortAllocator:
    """Hands out host ports no active deployment holds; raises OSError when none is free."""

    def __init__(self, isolation: Isolation, public_ip: str) -> None:
        self.isolation = isolation
        self._public_ip = public_ip
        self._taken: set[int] = set()

    def release(self, network: DeploymentNetwork) -> None:
        for mapping in network.ports.values():
            self._taken.discard(mapping.external)
        sidecar_port = network.env.get("SIDECAR_PORT")
        if sidecar_port is not None:
            self._taken.discard(int(sidecar_port))

    def _free_port(self) -> int:
        for _ in range(50):
            port = pick_free_port(self._public_ip)
            if port not in self._taken:
                self._taken.add(port)
                return port
        raise OSError("no free port")

    def allocate(self, ports: tuple[AppPort, ...]) -> DeploymentNetwork:
        if self.isolation is Isolation.PORTS:
            mappings = {}
            for port in ports:
                number = self._free_port()
                mappings[port.name] = _mapping(port, number, number)
            # The sidecar's own local API, apart from every other deployment's.
            env = {"SIDECAR_PORT": str(self._free_port())}
            return DeploymentNetwork(Isolation.PORTS, mappings, env)
        network = DeploymentNetwork(Isolation.NETNS, {}, {})
        try:
            for port in ports:
                external, bound = self._bind_external(transports(port.protocol))
                mapping = _mapping(port, port.port or external, external)
                network.ports[port.name] = mapping
                network._bound.extend((mapping, kind, sock) for kind, sock in bound)
        except OSError:
            for _, _, sock in network._bound:
                sock.close()
            raise
        return network

    def _bind_external(self, kinds: tuple[str, ...]) -> tuple[int, list[tuple[str, socket.socket]]]:
        """Host sockets on one free port for every transport in `kinds`, bound now, so the
        port is the deployment's from its creation on."""
        for _ in range(50):
            bound: list[tuple[str, socket.socket]] = []
            port = 0
            try:
                for kind in kinds:
                    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
                    sock = socket.socket(socket.AF_INET, sock_type)
                    bound.append((kind, sock))
                    sock.bind((self._public_ip, port))
                    port = sock.getsockname()[1]
            except OSError:
                for _, sock in bound:
                    sock.close()
                continue
            if port in self._taken:
                for _, sock in bound:
                    sock.close()
                continue
            self._taken.add(port)
            return port, bound
        raise OSError("no free port")


def _mapping(port: AppPort, internal: int, external: int) -> PortMapping:
    return PortMapping(
        name=port.name,
        internal=internal,
        external=external,
        protocol=port.protocol,
        to_check=port.to_check,
        tls_upgrade=port.tls_upgrade,
    )
