"""The release artifacts made from a standalone build: SBOM, OCI image archive, checksums.

scripts/release calls it after building the wheel, the sdist and the standalone tarball:

    python3 packaging/release.py sbom  BUILD_DIR VERSION OUT.cdx.json
    python3 packaging/release.py oci   BUILD_DIR VERSION OUT.tar [--source URL] [--revision SHA]
    python3 packaging/release.py sums  RELEASE_DIR

* The SBOM (CycloneDX 1.6 JSON) names every Python distribution bundled in the build, with its
  exact version and licence, read from the *.dist-info folders the PyInstaller spec copies into
  `_internal/`: the build's own metadata, not a list kept by hand.
* The OCI archive is Dockerfile.sidecar's `standalone` stage (FROM scratch, /edgegap-sidecar/),
  written without a Docker engine: an OCI image layout (oci-layout, index.json, blobs/sha256/)
  in a tar, plus the top-level manifest.json of `docker save`, which `docker load` reads (Docker
  25+ writes the same two-in-one layout). `skopeo copy oci-archive:...` and `docker load` both
  accept it.
* Everything is deterministic: entries sorted, owner 0:0, every mtime SOURCE_DATE_EPOCH (the
  commit time), gzip without a timestamp. The same commit gives the same digests.

Standard library only (it runs with the host's python3, before or without any venv).
"""

from __future__ import annotations

import email.parser
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

IMAGE_NAME = "edgegap-sidecar"
# The folder's place in the image, as Dockerfile.sidecar's standalone stage puts it.
IMAGE_ROOT = "edgegap-sidecar"
PROJECT_LICENSE = "MIT"
# A distribution's classifier licence when it declares no SPDX expression (PEP 639).
CLASSIFIER_SPDX = {
    "MIT License": "MIT",
    "BSD License": "BSD-3-Clause",
    "Apache Software License": "Apache-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "ISC License (ISCL)": "ISC",
}

# A License field that is already an SPDX id (older metadata) is given as one.
SPDX_IDS = {*CLASSIFIER_SPDX.values(), "BSD-2-Clause", "Apache-2.0", "MIT", "BSD-3-Clause"}


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# ---- SBOM -------------------------------------------------------------------------------------


def normalize(name: str) -> str:
    """PEP 503 name, as purls spell PyPI packages."""
    return re.sub(r"[-_.]+", "-", name).lower()


def licenses_of(meta: Any) -> list[dict[str, Any]]:
    """CycloneDX licences from core metadata: the SPDX expression when declared (PEP 639),
    else the short License field, else the licence classifiers."""
    expression = meta.get("License-Expression")
    if expression:
        return [{"expression": expression.strip()}]
    found: list[dict[str, Any]] = []
    for classifier in meta.get_all("Classifier") or []:
        if classifier.startswith("License ::"):
            name = classifier.split(" :: ")[-1]
            if name in CLASSIFIER_SPDX:
                found.append({"license": {"id": CLASSIFIER_SPDX[name]}})
            elif name != "OSI Approved":
                found.append({"license": {"name": name}})
    declared = (meta.get("License") or "").strip()
    if declared in SPDX_IDS:
        return [{"license": {"id": declared}}]
    if not found and declared and "\n" not in declared and len(declared) <= 120:
        found.append({"license": {"name": declared}})
    return found


def bundled_distributions(build_dir: Path) -> list[dict[str, Any]]:
    """One CycloneDX component per *.dist-info in the build's _internal/."""
    components = []
    for info in sorted((build_dir / "_internal").glob("*.dist-info")):
        meta_file = info / "METADATA"
        if not meta_file.exists():
            continue
        meta = email.parser.Parser().parsestr(meta_file.read_text(encoding="utf-8"), True)
        name, version = meta["Name"], meta["Version"]
        purl = f"pkg:pypi/{normalize(name)}@{version}"
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": purl,
            "name": name,
            "version": version,
            "purl": purl,
            "licenses": licenses_of(meta),
        }
        components.append(component)
    return components


def make_sbom(build_dir: Path, version: str) -> dict[str, Any]:
    components = bundled_distributions(build_dir)
    if not components:
        raise SystemExit(
            f"release: no *.dist-info in {build_dir}/_internal: was the build made with "
            "packaging/edgegap-sidecar.spec (it copies the bundled metadata)?"
        )
    main_ref = f"pkg:pypi/{IMAGE_NAME}@{version}"
    serial = uuid.uuid5(
        uuid.NAMESPACE_URL, main_ref + "#" + ",".join(c["bom-ref"] for c in components)
    )
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": iso(source_date_epoch()),
            "component": {
                "type": "application",
                "bom-ref": main_ref,
                "name": IMAGE_NAME,
                "version": version,
                "purl": main_ref,
                "licenses": [{"license": {"id": PROJECT_LICENSE}}],
                "description": "the standalone build (PyInstaller one-folder, linux x86_64)",
            },
        },
        "components": components,
        "dependencies": [{"ref": main_ref, "dependsOn": [c["bom-ref"] for c in components]}],
    }


# ---- OCI image archive --------------------------------------------------------------------------


def layer_tar(build_dir: Path, mtime: int) -> bytes:
    """The image's one layer: /edgegap-sidecar/ and everything below it, deterministic."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = [build_dir, *sorted(build_dir.rglob("*"))]
        for path in paths:
            rel = path.relative_to(build_dir)
            arcname = IMAGE_ROOT if str(rel) == "." else f"{IMAGE_ROOT}/{rel.as_posix()}"
            info = tar.gettarinfo(str(path), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            if info.isfile():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    tar.addfile(info)


def dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def make_oci_archive(
    build_dir: Path, version: str, out: Path, source: str, revision: str
) -> dict[str, str]:
    """Write the OCI image archive; returns the manifest digest and the layer digests."""
    mtime = source_date_epoch()
    created = iso(mtime)
    layer = layer_tar(build_dir, mtime)
    # mtime=0 and no file name in the gzip header: the same layer gives the same bytes.
    layer_gz = gzip.compress(layer, compresslevel=6, mtime=0)
    labels = {
        "org.opencontainers.image.title": IMAGE_NAME,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.licenses": PROJECT_LICENSE,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.description": (
            "edgegap-sidecar standalone build: COPY --from this image's /edgegap-sidecar"
        ),
    }
    config = dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
            "history": [
                {
                    "created": created,
                    "created_by": "COPY --from=build /src/dist/edgegap-sidecar /edgegap-sidecar",
                }
            ],
        }
    )
    manifest = dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer_gz),
                    "size": len(layer_gz),
                }
            ],
            "annotations": {
                k: v for k, v in labels.items() if k != "org.opencontainers.image.description"
            },
        }
    )
    index = dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "annotations": {
                        "org.opencontainers.image.ref.name": version,
                        "io.containerd.image.name": f"docker.io/library/{IMAGE_NAME}:{version}",
                    },
                }
            ],
        }
    )

    def blob(data: bytes) -> str:
        return "blobs/sha256/" + hashlib.sha256(data).hexdigest()

    # docker save's manifest.json: `docker load` reads this one, OCI tools read index.json.
    docker_manifest = dumps(
        [
            {
                "Config": blob(config),
                "RepoTags": [f"{IMAGE_NAME}:{version}"],
                "Layers": [blob(layer_gz)],
            }
        ]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", dumps({"imageLayoutVersion": "1.0.0"}), mtime)
        add_bytes(tar, "index.json", index, mtime)
        add_bytes(tar, "manifest.json", docker_manifest, mtime)
        add_dir(tar, "blobs", mtime)
        add_dir(tar, "blobs/sha256", mtime)
        for data in sorted(
            (config, manifest, layer_gz), key=lambda d: hashlib.sha256(d).hexdigest()
        ):
            add_bytes(tar, blob(data), data, mtime)
    return {"manifest": sha256(manifest), "layer": sha256(layer_gz), "diff_id": sha256(layer)}


# ---- checksums ---------------------------------------------------------------------------------


def write_sums(release_dir: Path) -> Path:
    """SHA256SUMS over every other file of the release folder, `sha256sum -c` format."""
    lines = []
    for path in sorted(p for p in release_dir.iterdir() if p.is_file()):
        if path.name == "SHA256SUMS":
            continue
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    target = release_dir / "SHA256SUMS"
    target.write_text("".join(lines), encoding="utf-8")
    return target


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "sbom":
        sbom = make_sbom(Path(argv[1]), argv[2])
        Path(argv[3]).write_text(json.dumps(sbom, indent=2) + "\n", encoding="utf-8")
        print(f"{argv[3]}: CycloneDX 1.6, {len(sbom['components'])} bundled distributions")
        return 0
    if len(argv) >= 4 and argv[0] == "oci":
        options = dict(zip(argv[4::2], argv[5::2], strict=False))
        digests = make_oci_archive(
            Path(argv[1]),
            argv[2],
            Path(argv[3]),
            source=options.get("--source", "unknown"),
            revision=options.get("--revision", "unknown"),
        )
        print(f"{argv[3]}: manifest {digests['manifest']}")
        return 0
    if len(argv) == 2 and argv[0] == "sums":
        print(write_sums(Path(argv[1])).read_text(encoding="utf-8"), end="")
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
