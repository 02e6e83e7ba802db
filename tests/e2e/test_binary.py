"""The standalone build itself: it exists, and it needs no Python on the machine that runs it.

Run in CI after scripts/build-binary, with the acceptance tests of this folder:

    SIDECAR_BINARY=dist/edgegap-sidecar/edgegap-sidecar pytest -m binary tests/e2e
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sidecar import __version__
from tests.conftest import free_port
from tests.e2e.conftest import StartSidecar

pytestmark = pytest.mark.binary


def binary() -> Path:
    value = os.environ.get("SIDECAR_BINARY")
    assert value, "set SIDECAR_BINARY to the standalone executable (scripts/build-binary)"
    return Path(value).resolve()


def no_python_environ(**variables: str) -> dict[str, str]:
    """An environment in which no Python can be found: PATH leads nowhere, no PYTHON* vars."""
    return {"PATH": "/nonexistent", "LANG": "C.UTF-8", **variables}


class TestStandaloneBuild:
    def test_is_a_native_executable(self) -> None:
        """SIDECAR_BINARY is an ELF executable, not a script that needs an interpreter."""
        path = binary()
        assert path.is_file()
        assert os.access(path, os.X_OK)
        assert path.read_bytes()[:4] == b"\x7fELF"

    def test_version_without_python(self) -> None:
        """--version works with no Python on PATH and no PYTHONHOME/PYTHONPATH."""
        result = subprocess.run(
            [str(binary()), "--version"],
            env=no_python_environ(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"edgegap-sidecar {__version__}"

    def test_emulator_is_bundled(self) -> None:
        """`emulate --help` works: the lazily imported emulator is in the build."""
        result = subprocess.run(
            [str(binary()), "emulate", "--help"],
            env=no_python_environ(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "--app" in result.stdout

    async def test_serves_without_python(self, start_sidecar: StartSidecar) -> None:
        """serve answers /healthz with no Python anywhere in its environment."""
        binary()
        port = free_port()
        env = no_python_environ(SIDECAR_PORT=str(port))
        sidecar = await start_sidecar(["serve"], env, port)
        await sidecar.wait_healthy()
        status, body = await sidecar.call("GET", "/v1/status")
        assert (status, body["state"]) == (200, "starting")

    async def test_agones_facade_reads_a_yaml_manifest(
        self, start_sidecar: StartSidecar, tmp_path: Path
    ) -> None:
        """The build bundles the Agones facade and PyYAML: a YAML manifest's label shows."""
        import aiohttp

        binary()
        manifest = tmp_path / "gameserver.yaml"
        manifest.write_text("metadata:\n  labels:\n    mode: ranked\n")
        port, agones_port = free_port(), free_port()
        env = no_python_environ(
            SIDECAR_PORT=str(port),
            SIDECAR_AGONES="true",
            SIDECAR_AGONES_HTTP_PORT=str(agones_port),
            SIDECAR_AGONES_GAMESERVER=str(manifest),
        )
        sidecar = await start_sidecar(["serve"], env, port)
        await sidecar.wait_healthy()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{agones_port}/gameserver") as response,
        ):
            assert response.status == 200
            body = await response.json()
        assert body["object_meta"]["labels"] == {"mode": "ranked"}
        assert body["status"]["state"] == "Scheduled"
