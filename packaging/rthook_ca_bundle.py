"""PyInstaller runtime hook: a CA bundle for the self-stop call in images that have none.

The standalone build carries its own OpenSSL, which looks for CA certificates where Debian and
Ubuntu keep them (/usr/lib/ssl → /etc/ssl/certs). Many game-server images (`ubuntu:22.04`,
Unity's and Unreal's server bases) do not install `ca-certificates`, and then every HTTPS
self-stop would fail certificate verification and keep the deployment billing. So when the
system offers no CA file or directory (and SSL_CERT_FILE/SSL_CERT_DIR do not point at one),
every default TLS context also trusts the Mozilla bundle shipped in the build (from certifi).

It patches `ssl.SSLContext.load_default_certs` rather than setting SSL_CERT_FILE so that the game
started by `run` inherits an unchanged environment. A system store, when present, always wins.
"""

import os
import ssl
import sys


def _system_store_present() -> bool:
    paths = ssl.get_default_verify_paths()  # honours SSL_CERT_FILE / SSL_CERT_DIR
    if paths.cafile:  # set only when the file exists
        return True
    if paths.capath:
        try:
            return any(os.scandir(paths.capath))
        except OSError:
            return False
    return False


def _install_fallback(bundle: str) -> None:
    system_default = ssl.SSLContext.load_default_certs

    def load_default_certs(
        self: ssl.SSLContext, purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH
    ) -> None:
        system_default(self, purpose)
        if purpose == ssl.Purpose.SERVER_AUTH:
            self.load_verify_locations(cafile=bundle)

    ssl.SSLContext.load_default_certs = load_default_certs  # type: ignore[method-assign]


_bundle = os.path.join(getattr(sys, "_MEIPASS", ""), "certs", "cacert.pem")
if os.path.isfile(_bundle) and not _system_store_present():
    _install_fallback(_bundle)
