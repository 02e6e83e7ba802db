"""The release artifacts: an OCI image archive that standard tools accept, an SBOM, checksums.

Two layers:
* `TestWriter` (always): packaging/release.py on a tiny stand-in build (a shell script as the
  executable, one *.dist-info) — the OCI layout's digests and sizes, the docker-save manifest,
  determinism, and, when skopeo and umoci are installed (CI installs them from Debian), the
  archive through `skopeo inspect`, `skopeo copy` and `umoci unpack`, then the unpacked file run.
* `TestRelease` (`-m binary`, with SIDECAR_RELEASE_DIR=dist/release after scripts/release, as
  .ci/run does): the real artifacts — SHA256SUMS, the SBOM against the build's pins, the OCI
  archive unpacked by skopeo/umoci and the standalone executable inside it run.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
VERSION_RE = re.compile(r'^__version__ = "([^"]+)"', re.MULTILINE)
VERSION = VERSION_RE.findall((REPO / "sidecar" / "__init__.py").read_text())[0]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release", REPO / "packaging" / "release.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


release = _load()


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name.rstrip("/"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def check_oci_layout(files: dict[str, bytes]) -> dict[str, Any]:
    """What skopeo and `docker load` rely on: every digest and size true. Returns the config."""

    def blob(digest: str) -> bytes:
        algorithm, hexdigest = digest.split(":")
        assert algorithm == "sha256"
        data = files[f"blobs/sha256/{hexdigest}"]
        assert hashlib.sha256(data).hexdigest() == hexdigest
        return data

    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    [entry] = index["manifests"]
    manifest_bytes = blob(entry["digest"])
    assert len(manifest_bytes) == entry["size"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config_bytes = blob(manifest["config"]["digest"])
    assert len(config_bytes) == manifest["config"]["size"]
    config = json.loads(config_bytes)
    [layer_desc] = manifest["layers"]
    assert layer_desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer = blob(layer_desc["digest"])
    assert len(layer) == layer_desc["size"]
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [diff_id]}
    # docker save's manifest.json, which `docker load` reads: the same config and layer.
    [docker_entry] = json.loads(files["manifest.json"])
    assert docker_entry["RepoTags"] == [f"edgegap-sidecar:{VERSION}"]
    assert docker_entry["Config"] == "blobs/sha256/" + manifest["config"]["digest"][7:]
    assert docker_entry["Layers"] == ["blobs/sha256/" + layer_desc["digest"][7:]]
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    for key in ("source", "revision"):
        assert labels[f"org.opencontainers.image.{key}"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        members = tar.getmembers()
    assert all(
        m.name == "edgegap-sidecar" or m.name.startswith("edgegap-sidecar/") for m in members
    )
    assert all(m.uid == 0 and m.gid == 0 for m in members)
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    return config


def unpack_with_standard_tools(archive: Path, work: Path) -> Path:
    """skopeo inspect + copy to an OCI layout, umoci unpack: the image's root filesystem."""
    if not (shutil.which("skopeo") and shutil.which("umoci")):
        if os.environ.get("CI"):
            pytest.fail("skopeo and umoci are missing in CI (.ci/run installs them)")
        pytest.skip("skopeo/umoci not installed (apt-get install skopeo umoci)")
    inspect = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{archive}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(inspect.stdout)["Labels"]["org.opencontainers.image.version"] == VERSION
    layout = work / "layout"
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci-archive:{archive}", f"oci:{layout}:{VERSION}"],
        capture_output=True,
        timeout=120,
        check=True,
    )
    bundle = work / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{VERSION}", str(bundle)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return bundle / "rootfs"


def fake_build(root: Path) -> Path:
    """A stand-in for dist/edgegap-sidecar: an executable and one bundled distribution."""
    build = root / "edgegap-sidecar"
    info = build / "_internal" / "Foo_Bar-1.2.dist-info"
    info.mkdir(parents=True)
    exe = build / "edgegap-sidecar"
    exe.write_text(f'#!/bin/sh\necho "edgegap-sidecar {VERSION}"\n')
    exe.chmod(0o755)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.2\n"
        "Classifier: License :: OSI Approved :: MIT License\n\n"
    )
    return build


class TestWriter:
    """packaging/release.py writes archives the standard tools accept, byte for byte again."""

    def test_oci_layout_is_consistent(self, tmp_path: Path) -> None:
        """index.json → manifest → config and layer: every digest, size and diff_id true."""
        build = fake_build(tmp_path)
        archive = tmp_path / "image.tar"
        release.make_oci_archive(build, VERSION, archive, "https://example.invalid/src", "abc")
        check_oci_layout(read_archive(archive))

    def test_same_input_same_bytes(self, tmp_path: Path) -> None:
        """Two writes of the same build give the same archive (reproducible digests)."""
        build = fake_build(tmp_path)
        first, second = tmp_path / "a.tar", tmp_path / "b.tar"
        release.make_oci_archive(build, VERSION, first, "s", "r")
        os.utime(build / "edgegap-sidecar", (1, 1))  # a different mtime changes nothing
        release.make_oci_archive(build, VERSION, second, "s", "r")
        assert first.read_bytes() == second.read_bytes()

    def test_sbom_reads_the_bundled_metadata(self, tmp_path: Path) -> None:
        """The SBOM names each *.dist-info of the build with its version, purl and licence."""
        sbom = release.make_sbom(fake_build(tmp_path), VERSION)
        assert sbom["bomFormat"] == "CycloneDX"
        assert sbom["specVersion"] == "1.6"
        [component] = sbom["components"]
        assert component["name"] == "Foo_Bar"
        assert component["version"] == "1.2"
        assert component["purl"] == "pkg:pypi/foo-bar@1.2"
        assert component["licenses"] == [{"license": {"id": "MIT"}}]

    def test_sums_cover_every_file(self, tmp_path: Path) -> None:
        """SHA256SUMS lists every other file in `sha256sum -c` format."""
        (tmp_path / "a.tar.gz").write_bytes(b"a")
        (tmp_path / "b.json").write_bytes(b"b")
        sums = release.write_sums(tmp_path).read_text().splitlines()
        assert sums == [
            f"{hashlib.sha256(b'a').hexdigest()}  a.tar.gz",
            f"{hashlib.sha256(b'b').hexdigest()}  b.json",
        ]

    def test_standard_tools_unpack_it(self, tmp_path: Path) -> None:
        """skopeo and umoci accept the archive; the unpacked executable runs."""
        archive = tmp_path / "image.tar"
        release.make_oci_archive(fake_build(tmp_path), VERSION, archive, "s", "r")
        rootfs = unpack_with_standard_tools(archive, tmp_path)
        out = subprocess.run(
            [str(rootfs / "edgegap-sidecar" / "edgegap-sidecar"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert out.stdout.strip() == f"edgegap-sidecar {VERSION}"


RELEASE_DIR = os.environ.get("SIDECAR_RELEASE_DIR")


def runtime_pins() -> dict[str, str]:
    """packaging/requirements.txt's runtime section: normalized name → exact version."""
    text = (REPO / "packaging" / "requirements.txt").read_text()
    runtime = text.split("# build tool", 1)[0]
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", runtime, re.MULTILINE)
    return {release.normalize(name): version for name, version in pins}


@pytest.mark.binary
@pytest.mark.skipif(not RELEASE_DIR, reason="set SIDECAR_RELEASE_DIR (after scripts/release)")
class TestRelease:
    """The artifacts scripts/release wrote, checked as a user or a registry would."""

    @pytest.fixture
    def out(self) -> Path:
        return Path(RELEASE_DIR or "")

    def test_names_and_checksums(self, out: Path) -> None:
        """Every artifact is there under its documented name, and SHA256SUMS verifies."""
        expected = {
            f"edgegap-sidecar-{VERSION}-linux-x86_64.tar.gz",
            f"edgegap-sidecar-{VERSION}-oci.tar",
            f"edgegap_sidecar-{VERSION}-py3-none-any.whl",
            f"edgegap_sidecar-{VERSION}.tar.gz",
            "sbom.cdx.json",
            "SHA256SUMS",
        }
        assert {p.name for p in out.iterdir()} == expected
        listed = {}
        for line in (out / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split("  ", 1)
            listed[name] = digest
        assert set(listed) == expected - {"SHA256SUMS"}
        subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=out, check=True)

    def test_sbom_names_every_bundled_package(self, out: Path) -> None:
        """Each runtime pin is in the SBOM at its exact version, each component has a licence."""
        sbom = json.loads((out / "sbom.cdx.json").read_text())
        assert sbom["specVersion"] == "1.6"
        assert sbom["metadata"]["component"]["version"] == VERSION
        found = {release.normalize(c["name"]): c for c in sbom["components"]}
        for name in ("aiohttp", "pydantic", "pydantic-core", "psutil", "yarl", "pyyaml"):
            assert name in found, f"{name} is bundled but not in the SBOM"
        for name, component in found.items():
            assert component["licenses"], f"{name} has no licence in the SBOM"
            assert component["purl"] == f"pkg:pypi/{name}@{component['version']}"
        pins = runtime_pins()
        for name, component in found.items():
            if name in pins:
                assert component["version"] == pins[name], name

    def test_oci_archive_unpacks_and_runs(self, out: Path, tmp_path: Path) -> None:
        """The OCI archive is consistent, skopeo/umoci unpack it, and the executable runs."""
        archive = out / f"edgegap-sidecar-{VERSION}-oci.tar"
        check_oci_layout(read_archive(archive))
        rootfs = unpack_with_standard_tools(archive, tmp_path)
        result = subprocess.run(
            [str(rootfs / "edgegap-sidecar" / "edgegap-sidecar"), "--version"],
            env={"PATH": "/nonexistent"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == f"edgegap-sidecar {VERSION}"

    def test_tarball_holds_the_build(self, out: Path) -> None:
        """The standalone tarball unpacks to edgegap-sidecar/ with the executable."""
        with tarfile.open(out / f"edgegap-sidecar-{VERSION}-linux-x86_64.tar.gz") as tar:
            names = tar.getnames()
        assert "edgegap-sidecar/edgegap-sidecar" in names
        assert all(n == "edgegap-sidecar" or n.startswith("edgegap-sidecar/") for n in names)
