#!/bin/sh
# Build the standalone edgegap-sidecar from the source tree in the current directory, with the
# Python that build-python.sh made (/opt/python) and the pins of packaging/requirements.txt
# (installed by the step before). Result: dist/edgegap-sidecar/edgegap-sidecar (onedir).
# Runs in Dockerfile.sidecar's build stage and, through it, in scripts/build-binary.
set -eu
PY=${PYTHON:-/opt/python/bin/python3}
GLIBC_MAX=${GLIBC_MAX:-2.31}

# PyInstaller takes the sidecar from the source tree here (the spec puts it on the path): no wheel
# build, so the bundle is exactly this checkout's sidecar/ with the pinned dependencies.
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/edgegap-sidecar.spec

# The floor is read from the artifact, not assumed from the build system.
"$PY" packaging/glibc_floor.py dist/edgegap-sidecar --max "$GLIBC_MAX"
# It must start with no Python anywhere: empty environment, PATH pointing nowhere.
env -i PATH=/nonexistent dist/edgegap-sidecar/edgegap-sidecar --version
