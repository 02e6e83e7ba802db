"""`run_emulator`: serve the emulator until cancelled or SIGTERM/SIGINT, then shut down.

Order: bind (port in use → StartupError) → record the base URL → print the isolation, the
dashboard's URL and, last, the base URL (and, with `url_file`, write it there: atomically, so
a script that sees the file can use it) → wait for a signal → cleanup, which stops every
backing process (SIGTERM, SIGKILL after the grace) and closes the listener. The file is
removed at exit, so a stale one never points at nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from aiohttp import web

from sidecar.addresses import url_host
from sidecar.emulator.app import create_app
from sidecar.emulator.console import Console
from sidecar.emulator.options import EmulatorOptions, check_listen_address
from sidecar.emulator.routes.dashboard import PAGE
from sidecar.emulator.state import STATE_KEY
from sidecar.errors import StartupError


@contextlib.contextmanager
def signal_handlers(
    signums: Iterable[signal.Signals], callback: Callable[[], None]
) -> Iterator[None]:
    """`callback` runs on each of `signums` while inside. Where the loop cannot take signal
    handlers (off the main thread, some platforms) none is installed: cancellation, and SIGINT's
    KeyboardInterrupt, still end the caller."""
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in signums:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, callback)
            handled.append(signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve `app` on host:port; returns the runner and the base URL actually bound."""
    check_listen_address(host, app[STATE_KEY].options.api_token)
    # handler_cancellation: a caller that goes away ends its long-poll or proxied SSE stream
    # at once, instead of holding its upstream connection until the next event.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"emulator cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    bound_host, bound_port = runner.addresses[0][:2]
    base_url = f"http://{url_host(str(bound_host))}:{bound_port}"
    state = app[STATE_KEY]
    state.base_url = base_url

    async def api_site(sock: socket.socket) -> web.BaseSite:
        # The same app on one more listener: a deployment namespace's, at the same address.
        extra = web.SockSite(runner, sock)
        await extra.start()
        return extra

    state.manager.api_site = api_site
    return runner, base_url


async def run_emulator(options: EmulatorOptions) -> None:
    """Serve until cancelled or SIGTERM/SIGINT; prints one line with the base URL at start."""
    runner, base_url = await start_site(create_app(options), options.host, options.port)
    url_file = Path(options.url_file) if options.url_file else None
    console = Console(options.log_format, follow=options.follow, secrets=[options.api_token])
    stop = asyncio.Event()
    try:
        with signal_handlers((signal.SIGTERM, signal.SIGINT), stop.set):
            if runner.app is not None:
                manager = runner.app[STATE_KEY].manager
                manager.console = console
                console.notice(
                    "isolation",
                    f"isolation: {manager.isolation} ({manager.isolation_note})",
                    isolation=str(manager.isolation),
                )
            console.notice(
                "dashboard",
                _dashboard_line(base_url, token_required=bool(options.api_token)),
                url=base_url + PAGE,
                token_required=bool(options.api_token),
            )
            # Last, and ending with the URL: scripts wait for this line and take its last word
            # (in json, its `url`).
            console.notice("listening", f"Edgegap emulator listening on {base_url}", url=base_url)
            if url_file is not None:
                _write_atomically(url_file, base_url + "\n")
            await stop.wait()
    finally:
        await runner.cleanup()
        if url_file is not None:
            with contextlib.suppress(OSError):
                url_file.unlink()


def _dashboard_line(base_url: str, *, token_required: bool) -> str:
    page = base_url + PAGE
    if not token_required:
        return f"dashboard: {page}"
    # The token itself is never printed (the console redacts it anyway): say where it goes.
    return f"dashboard: {page} (needs the --api-token: open {page}#token=<TOKEN>)"


def _write_atomically(path: Path, text: str) -> None:
    try:
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        raise StartupError(f"--url-file: cannot write {path}: {exc.strerror or exc}") from None
