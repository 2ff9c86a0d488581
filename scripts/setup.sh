#!/usr/bin/env bash
# Installs what Ferrite's build, tests and demo need on a fresh Debian machine, and nothing
# more. Safe to run again: it only installs what is missing.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; exit 1; fi
}

# Debian packages, by the command each provides.
declare -A packages=(
    [losetup]=util-linux
    [lvm]=lvm2
    [sqlite3]=sqlite3
    [python3]=python3
    [curl]=curl
    # NBD clients the ferrite-nbd tests drive, and nbdkit, the baseline of its benchmark.
    [nbdinfo]=libnbd-bin
    [nbdcopy]=libnbd-bin
    [qemu-io]=qemu-utils
    [fio]=fio
    [nbdkit]=nbdkit
    # What the block-device tests format, inspect and discard with.
    [mkfs.ext4]=e2fsprogs
    [debugfs]=e2fsprogs
    [blkdiscard]=util-linux
    # Network namespaces and veth links for the MIRROR partition tests.
    [ip]=iproute2
    # drbd-utils: the DRBD layer's resource files are checked with the real drbdadm (dry runs:
    # no kernel module is needed), and its option table is generated from drbdsetup.
    [drbdadm]=drbd-utils
    # File systems with reflinks, where FILE snapshots are reflink copies (storage tests).
    [mkfs.btrfs]=btrfs-progs
    [mkfs.xfs]=xfsprogs
)
missing=()
for command in "${!packages[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
# One package may provide several missing commands.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')
if ! python3 -m pip --version >/dev/null 2>&1; then missing+=(python3-pip); fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# python-linstor from PyPI: the compatibility suite drives the controller with it.
PYTHON_LINSTOR_VERSION=1.29.1
if ! python3 -c "import sys; from linstor.version import VERSION; sys.exit(0 if VERSION == '$PYTHON_LINSTOR_VERSION' else 1)" 2>/dev/null; then
    log "installing python-linstor $PYTHON_LINSTOR_VERSION from PyPI"
    python3 -m pip install -q --disable-pip-version-check "python-linstor==$PYTHON_LINSTOR_VERSION" 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "python-linstor==$PYTHON_LINSTOR_VERSION"
fi

# schemathesis from PyPI: crates/testkit/tests/schemathesis.rs runs it against the controller's
# OpenAPI document. The version is pinned there too.
SCHEMATHESIS_VERSION=4.32.5
if [ "$(python3 -m schemathesis.cli --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI"
    python3 -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION"
fi

if ! command -v cargo >/dev/null; then
    log "cargo is missing: install the Rust toolchain (rustup) first"; exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || { log "cargo $component is missing and rustup is not there to add it"; exit 1; }
        log "adding the $component component"
        rustup component add "$component"
    fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi
