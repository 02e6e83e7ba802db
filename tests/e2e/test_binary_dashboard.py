"""The standalone build serves the emulator's dashboard: its static files (sidecar/emulator/ui/)
are bundled (packaging/edgegap-sidecar.spec `datas`), not only the Python modules.

    SIDECAR_BINARY=dist/edgegap-sidecar/edgegap-sidecar pytest -m binary tests/e2e
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.binary


async def test_dashboard_files_are_bundled(tmp_path: Path) -> None:
    """`emulate` from the standalone build serves /_emulator/ui and its script, no Python."""
    binary = os.environ.get("SIDECAR_BINARY")
    assert binary, "set SIDECAR_BINARY to the standalone executable (scripts/build-binary)"
    url_file = tmp_path / "emulator.url"
    process = subprocess.Popen(
        [str(Path(binary).resolve()), "emulate", "--port", "0", "--url-file", str(url_file)],
        env={"PATH": "/nonexistent", "LANG": "C.UTF-8"},
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            while not url_file.exists() or not url_file.read_text().strip():
                assert process.poll() is None, process.communicate()[1]
                await asyncio.sleep(0.05)
        url = url_file.read_text().strip()
        async with aiohttp.ClientSession() as http:
            for path in ("/", "/_emulator/ui/app.js", "/_emulator/ui/style.css"):
                async with http.get(url + path) as answer:
                    assert answer.status == 200, (path, await answer.text())
    finally:
        process.terminate()
        process.communicate(timeout=30)  # closes the stderr pipe too
