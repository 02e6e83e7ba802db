"""The standalone build's CA fallback (packaging/rthook_ca_bundle.py), run as PyInstaller would.

The hook runs before the sidecar in the standalone build; here it runs in a plain Python with a
fake bundle directory, against a TLS server whose certificate is in that bundle or not.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import FakePlatform, self_signed_certificate
from tests.e2e.process import ROOT

HOOK = ROOT / "packaging" / "rthook_ca_bundle.py"

# argv: bundle dir, hook path, URL. Exit 0 when a default TLS context verifies the server.
CLIENT = """
import runpy, ssl, sys, urllib.request
sys._MEIPASS = sys.argv[1]
runpy.run_path(sys.argv[2])
try:
    urllib.request.urlopen(sys.argv[3], context=ssl.create_default_context(), timeout=10)
except Exception as exc:
    print(type(exc).__name__, exc)
    raise SystemExit(1)
"""


async def verifies(bundle_dir: Path, url: str, **variables: str) -> bool:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")}
    env.update(variables)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(bundle_dir), str(HOOK), url, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    if proc.returncode == 1:
        assert b"CERTIFICATE_VERIFY_FAILED" in output, output
    return proc.returncode == 0


def bundle_with(directory: Path, cert: Path) -> Path:
    """A fake `_MEIPASS` whose certs/cacert.pem is `cert`."""
    (directory / "certs").mkdir(parents=True)
    shutil.copy(cert, directory / "certs" / "cacert.pem")
    return directory


class TestCaFallback:
    async def test_bundle_used_when_the_system_has_no_store(
        self, https_platform: tuple[FakePlatform, Path], tmp_path: Path
    ) -> None:
        """No system CA file or directory → the bundled CA list verifies the platform."""
        platform, cert = https_platform
        bundle = bundle_with(tmp_path / "meipass", cert)
        missing = str(tmp_path / "missing")
        url = platform.base + "/ping"
        assert await verifies(bundle, url, SSL_CERT_FILE=missing, SSL_CERT_DIR=missing)

    async def test_system_store_wins_when_present(
        self, https_platform: tuple[FakePlatform, Path], tmp_path: Path
    ) -> None:
        """A system CA store exists → the bundle is not added (the system's choice stands)."""
        platform, cert = https_platform
        bundle = bundle_with(tmp_path / "meipass", cert)
        other_ca, _ = self_signed_certificate(tmp_path, "other")
        url = platform.base + "/ping"
        assert not await verifies(bundle, url, SSL_CERT_FILE=str(other_ca))
