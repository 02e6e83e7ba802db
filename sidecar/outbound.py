"""The agent's one outbound HTTP session, shared by every platform client: the self-stop
(sidecar.stop, through sidecar.edgegap), the match-result delivery (sidecar.result), and the
next one (a matchmaker or server-browser call takes it the same way, with sidecar.retry's loop).

One session is one connection pool, one DNS cache, and one place that says what every outbound
request carries and how it behaves:

* no connection-pool limit: the self-stop's DELETE never queues behind a result POST (or any
  other client's request), whatever the other is waiting for;
* no silent resend on a dropped keep-alive connection: one attempt is one request on the wire,
  and the client's retry policy decides about the next;
* the sidecar's User-Agent.

The agent opens it at start-up, so the stop waits for nothing, and closes it last, after the stop
and the result delivery are over; a client that asks for it after that gets an error it treats
as a failed attempt, never a wait.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from sidecar import __version__


class SessionClosed(RuntimeError):
    """The session was asked for after the agent closed it (its shutdown has begun)."""


class OutboundSession:
    """Opens the shared `aiohttp.ClientSession` once, hands it out, closes it once."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def open(self) -> aiohttp.ClientSession:
        """The session, opened now if it was not yet (inside the running loop)."""
        if self._closed:
            raise SessionClosed("the outbound HTTP session is closed: the sidecar is shutting down")
        if self._session is None:
            session = aiohttp.ClientSession(
                headers={"User-Agent": f"edgegap-sidecar/{__version__}"},
                connector=aiohttp.TCPConnector(limit=0),  # no pool limit (module docstring)
            )
            if hasattr(session, "_retry_connection"):
                # aiohttp resends an idempotent request (a DELETE is one) once, at once, when the
                # connection breaks under it: two DELETEs milliseconds apart, under the retry
                # floor and uncounted. The clients count attempts themselves. aiohttp has no
                # public switch (aio-libs/aiohttp#10790); its own test client turns this private
                # flag off the same way.
                session._retry_connection = False
            self._session = session
        return self._session

    @property
    def opened(self) -> bool:
        return self._session is not None

    async def close(self, within: float = 1.0) -> None:
        """Close the session (at most `within` seconds); idempotent, and final."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await session.close()
