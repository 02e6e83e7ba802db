"""The fallback load generator (no wrk): 16 keep-alive aiohttp connections against one URL for
a number of seconds, run as its own process so that it does not share the bench's GIL.

Usage: ``python -m benchmarks.core.loadgen URL METHOD SECONDS``; prints one JSON object with
the fields of `throughput.LoadResult` it measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

CONNECTIONS = 16


async def load(url: str, method: str, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < end:
                async with session.request(method, url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - now)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "requests": len(latencies),
        "errors": errors,
    }


if __name__ == "__main__":
    url, method, seconds = sys.argv[1:4]
    print(json.dumps(asyncio.run(load(url, method, float(seconds)))))
