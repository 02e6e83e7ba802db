#!/bin/sh
# Build OpenSSL 3.0 and CPython 3.11 into /opt/python on the system this runs on: Debian 11
# "bullseye" (glibc 2.31), both in Dockerfile.sidecar's build stage and in scripts/build-binary's
# chroot. A standalone build made with this Python needs no glibc newer than 2.31, so it runs on
# Ubuntu 20.04, Debian 11 and newer.
#
# Why build Python: bullseye's own python3 is 3.9 (the sidecar needs ≥ 3.11), and a Python built
# on a newer system (pyenv, python:3.11-slim) references GLIBC_2.34+ symbols.
# Why build OpenSSL: bullseye's libssl is 1.1.1, out of upstream support; the self-stop is an
# HTTPS call, so the build carries bookworm's OpenSSL 3.0 (Debian-maintained) instead.
#
# Sources: Debian bookworm's `openssl` and `python3.11` source packages, fetched with apt from
# Debian's archive (signed Release → Sources → .dsc → tarball checksums, verified by apt and
# dpkg-source). OpenSSL gets all of Debian's patches. Python gets upstream 3.11.2 plus Debian's
# backported fixes (every patch of the series from FIRST_FIX_PATCH on); Debian's packaging
# patches before them (install layout, multiarch, dist-packages) are left out on purpose: this is
# a plain /opt/python prefix.
#
# No PGO/LTO: they triple the build time for a process that mostly idles. Modules the sidecar
# never uses (tkinter, sqlite3, readline, curses, dbm) are not built: their -dev packages are not
# installed.
set -eu

PREFIX=${PYTHON_PREFIX:-/opt/python}
SRC=${PYTHON_SRC:-/usr/src/sidecar-python}
FIRST_FIX_PATCH=shutdown-deadlock.diff
JOBS=$(nproc)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    build-essential dpkg-dev patch perl pkg-config xz-utils ca-certificates \
    zlib1g-dev libffi-dev libbz2-dev liblzma-dev uuid-dev >/dev/null

echo "deb-src http://deb.debian.org/debian bookworm main" \
    >/etc/apt/sources.list.d/sidecar-bookworm-src.list
apt-get update -qq
rm -rf "$SRC" && mkdir -p "$SRC" && cd "$SRC"

# unpack PACKAGE: download and unpack bookworm's source package into ./PACKAGE
unpack() {
    apt-get source --download-only "$1" >"$1.log" 2>&1 || { cat "$1.log"; exit 1; }
    # dpkg-source warns that it cannot check the uploader's signature (no debian-keyring);
    # apt has already checked the .dsc against the signed archive index. $2: optional flags.
    # shellcheck disable=SC2086
    dpkg-source --no-copy ${2:-} -x "$1"_*.dsc "$1" >>"$1.log" 2>&1 || { cat "$1.log"; exit 1; }
    echo "source: $(ls "$1"_*.dsc)"
}

unpack openssl
(
    cd openssl
    ./config --prefix="$PREFIX" --libdir=lib --openssldir=/usr/lib/ssl \
        shared no-tests no-legacy "-Wl,-rpath,$PREFIX/lib" >/dev/null
    make -s -j"$JOBS" build_libs >/dev/null 2>&1 || make -j1 build_libs
    make -s install_dev >/dev/null
)

unpack python3.11 --skip-patches
(
    cd python3.11
    sed -n "/^${FIRST_FIX_PATCH}\$/,\$p" debian/patches/series | while read -r fix; do
        case "$fix" in '' | '#'*) continue ;; esac
        patch -p1 --forward --batch --quiet <"debian/patches/$fix"
    done
    # The CVE-2026-4224 fix makes pyexpat.c use an internal header. Debian links pyexpat into
    # the interpreter, where Py_BUILD_CORE is set; built as a shared module, as here (pip needs
    # it), it must ask for the internal API the way 3.12's pyexpat.c does.
    if grep -q 'pycore_ceval.h' Modules/pyexpat.c && ! grep -q 'Py_BUILD_CORE_MODULE' Modules/pyexpat.c; then
        sed -i '1i #ifndef Py_BUILD_CORE_BUILTIN\n#  define Py_BUILD_CORE_MODULE 1\n#endif' Modules/pyexpat.c
    fi
    # --disable-test-modules: no Lib/test to install and byte-compile (a minute of CI time).
    ./configure --quiet --prefix="$PREFIX" --enable-shared --with-ensurepip=install \
        --disable-test-modules --with-openssl="$PREFIX" --with-openssl-rpath=auto \
        LDFLAGS="-Wl,-rpath,$PREFIX/lib"
    make -s -j"$JOBS" >/dev/null 2>make.log || { cat make.log; exit 1; }
    make -s install >/dev/null 2>install.log || { cat install.log; exit 1; }
)

cd / && rm -rf "$SRC" /etc/apt/sources.list.d/sidecar-bookworm-src.list
"$PREFIX/bin/python3" -c '
import ctypes, bz2, lzma, ssl, sys, uuid, zlib
print("built Python", sys.version.split()[0], "with", ssl.OPENSSL_VERSION)
assert ssl.OPENSSL_VERSION.startswith("OpenSSL 3."), ssl.OPENSSL_VERSION
'
