"""What a host address means on this machine: loopback or not, how a local process reaches a
server bound to it, and how it is written in a URL.

One rule for the configuration (a non-loopback SIDECAR_HOST needs a token), the watchers (a
game port bound to loopback only is not the game's port), the CLI's healthcheck and the
emulator's printed URL. `sidecar/client.py` keeps its own copy of `local_url`: it is meant to be
copied into a game as one file (tests/test_client.py checks that the two agree).
"""

from __future__ import annotations

import ipaddress

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})
# A wildcard bind answers on every address, so a process on this machine uses loopback.
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1", "": "127.0.0.1"}


def is_loopback(host: str) -> bool:
    """True for a loopback address or name: `127.x`, `::1` (bracketed or with a zone id),
    `::ffff:127.0.0.1`, `localhost`."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 is loopback, but only the IPv4 view of it says so.
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def reachable_host(bind_host: str) -> str:
    """The address a process on this machine connects to for a server bound to `bind_host`."""
    return _WILDCARD_TO_LOOPBACK.get(bind_host, bind_host)


def url_host(host: str) -> str:
    """`host` as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def local_url(bind_host: str, port: int) -> str:
    """The base URL a process on this machine uses for a server bound to bind_host:port."""
    return f"http://{url_host(reachable_host(bind_host))}:{port}"
