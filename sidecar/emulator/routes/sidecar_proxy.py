"""`GET /_emulator/deployments/{request_id}/sidecar/{path}`: a backed deployment's local API
(its sidecar's status, events, metrics…) from the host, one curl away, inside its isolation.

The connection is made where the deployment's sidecar listens: to `SIDECAR_PORT` (default 8787)
of the deployment's environment, on loopback of its network namespace (a socket created inside
it by netns.py, as the port forwarders do) or, in ports isolation, of the host. The call is
passed on as HTTP/1.0 (so the answer ends at end of file, never chunked) with the sidecar's own
bearer token when the deployment has `SIDECAR_API_TOKEN`, since the caller's `authorization` is
the emulator's; the answer streams back as it comes, so `/v1/events` (SSE) works through it.
404 when the deployment has no local API: simulated, ended, or nothing listening there.
Only GET: this is a window to look through, not a remote control.

`SIDECAR_HOST` must be a loopback address (or a wildcard, or `localhost`, which mean one): the
environment is the studio's to write, and following it to another address or a name to resolve
would send the sidecar's token off the machine; anything else is 404 saying so. The `Accept` and
`Last-Event-ID` passed on must be printable ASCII (400 naming the header otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket

from aiohttp import web

from sidecar.addresses import is_loopback, reachable_host
from sidecar.emulator import netns
from sidecar.emulator.route_io import PlatformError
from sidecar.emulator.state import STATE_KEY, EmulatorState, deployment_of, state_of
from sidecar.emulator.store import Deployment

DEFAULT_SIDECAR_PORT = 8787
_HEAD_LIMIT = 64 * 1024
_CHUNK = 65536
_CONNECT_TIMEOUT = 5.0
# Headers of the answer that describe this one connection, not the content: aiohttp sets its own.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
        "server",
        "date",
    }
)
_PASSED_REQUEST_HEADERS = ("accept", "last-event-id")
_LOOPBACK_NAMES = {"localhost": "127.0.0.1", "ip6-localhost": "::1"}


def _sidecar_address(deployment: Deployment) -> tuple[str, int]:
    env = deployment.env
    configured = env.get("SIDECAR_HOST", "127.0.0.1")
    host = reachable_host(configured).strip("[]")
    if host in _LOOPBACK_NAMES:
        host = _LOOPBACK_NAMES[host]  # never a resolver call: names stay on this machine
    if not _is_loopback_literal(host):
        # The deployment's environment is the studio's to write: following it elsewhere would
        # send the sidecar's token to whatever address (or name) it holds.
        raise PlatformError(
            404,
            f"Deployment {deployment.request_id} has no local API the emulator may reach: "
            f"SIDECAR_HOST {configured[:64]!r} is not a loopback address (the proxy connects "
            "only inside the deployment, never beyond this machine)",
        )
    text = env.get("SIDECAR_PORT", str(DEFAULT_SIDECAR_PORT))
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise PlatformError(404, f"Deployment {deployment.request_id} has no usable SIDECAR_PORT")
    return host, int(text)


def _is_loopback_literal(host: str) -> bool:
    """A loopback IP address written out (a zone id allowed), never a name to resolve."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return is_loopback(host)


async def _connect(
    state: EmulatorState, deployment: Deployment
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    network = state.manager.network_of(deployment)
    if deployment.command is None or network is None or deployment.terminated:
        raise PlatformError(
            404, f"Deployment {deployment.request_id} has no local API (no running process)"
        )
    host, port = _sidecar_address(deployment)
    where = f"{host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            fd = network.namespace_fd
            if fd is None:
                reader, writer = await asyncio.open_connection(host, port)
            else:
                sock = await netns.async_socket_in(fd, family, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    await asyncio.get_running_loop().sock_connect(sock, (host, port))
                except BaseException:
                    sock.close()
                    raise
                reader, writer = await asyncio.open_connection(sock=sock)
    except (OSError, TimeoutError) as exc:
        raise PlatformError(
            404,
            f"Deployment {deployment.request_id} has no local API: nothing answers on {where} "
            f"in its network ({getattr(exc, 'strerror', None) or type(exc).__name__})",
        ) from None
    return reader, writer, where


def _upstream_path(request: web.Request, deployment: Deployment) -> str:
    prefix = f"/_emulator/deployments/{deployment.request_id}/sidecar"
    raw = request.raw_path  # as sent (percent-encoding kept); the parser refuses CR and LF
    path = raw[len(prefix) :] if raw.startswith(prefix) else "/"
    return path if path.startswith("/") else "/" + path


def _passed_headers(request: web.Request) -> list[str]:
    """The caller's headers passed on; 400 for one that is not printable ASCII (aiohttp hands
    undecodable bytes over as surrogates, which no request line can carry)."""
    lines = []
    for name in _PASSED_REQUEST_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        if not all(" " <= char <= "~" or char == "\t" for char in value):
            raise PlatformError(400, f"Header {name} must be printable ASCII")
        lines.append(f"{name}: {value}")
    return lines


async def proxy(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    deployment = deployment_of(request)
    passed = _passed_headers(request)  # a bad header is refused before any connection
    reader, writer, where = await _connect(state, deployment)
    state.proxied.add(writer)
    try:
        lines = [f"GET {_upstream_path(request, deployment)} HTTP/1.0", f"Host: {where}"]
        lines += passed
        token = deployment.env.get("SIDECAR_API_TOKEN")
        if token:
            lines.append(f"Authorization: Bearer {token}")
        # surrogatepass: whatever the deployment's environment holds, the bytes go out as they
        # are and the sidecar judges them; encoding never fails here.
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass"))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            raise PlatformError(
                502, f"The local API of {deployment.request_id} gave no HTTP answer"
            ) from None
        status, headers = _parse_head(head)
        response = web.StreamResponse(status=status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                response.headers.add(name, value)
        await response.prepare(request)
        # Streams whatever comes (an SSE stream included) until the sidecar ends the answer,
        # the caller goes away (the handler is cancelled) or the emulator shuts down.
        while chunk := await reader.read(_CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        state.proxied.discard(writer)
        writer.close()
        with contextlib.suppress(Exception):  # the connection is going away anyway
            await writer.wait_closed()


def _parse_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise PlatformError(502, "The local API answered something that is not HTTP")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers.append((name.strip(), value.strip()))
    return int(parts[1]), headers


async def close_proxied(app: web.Application) -> None:
    """On shutdown: end every proxied stream, so no SSE keeps the emulator from stopping."""
    for writer in list(app[STATE_KEY].proxied):
        writer.close()
