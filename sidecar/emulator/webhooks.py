"""Deployment webhooks: `webhook_on_ready`, `webhook_on_error`, `webhook_on_terminated` (legacy
`webhook_url`: ready), each a POST of the status body, as the platform sends them.

Fire and forget: a 10 s timeout, failures ignored (and logged at debug level), no retries.
`Webhooks` owns its session and its in-flight posts: `close()` cancels and awaits them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 10.0
_CLOSE_TIMEOUT = 5.0


class Webhooks:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._posts: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
        )

    def send(self, url: str, body: dict[str, Any], event: str) -> None:
        if self._session is None:
            return
        task = asyncio.create_task(self._post(url, body), name=f"emulator-webhook-{event}")
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        assert self._session is not None
        # The platform ignores webhook failures; so do we (but leave a trace for debugging).
        try:
            async with self._session.post(url, json=body) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("webhook %s failed: %r", url, exc)

    async def close(self) -> None:
        posts = list(self._posts)
        for task in posts:
            task.cancel()
        if posts:
            await asyncio.wait(posts, timeout=_CLOSE_TIMEOUT)
        if self._session is not None:
            await self._session.close()
