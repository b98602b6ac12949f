#!/usr/bin/env bash
# Installs the toolchain that builds Runloop's Rust agents to wasm32-wasip1 on Debian 12.
#
# Route (e) of shared/notes/toolchain.md: Debian bookworm-security's rustc-web 1.96 with its
# std sources (built with -Zbuild-std), lld-22 as the wasm linker and wasi-libc. These live
# under /usr/bin and /usr/lib, so rustup's toolchain (first on PATH) is left untouched.
#
# Idempotent: when every package is already installed it does nothing, not even
# `apt-get update`. A machine whose rustup already has the wasm32-wasip1 target needs none
# of this (build-agents.sh prefers that route) and the script says so and exits 0.
set -euo pipefail

PACKAGES=(rustc-web cargo-web rust-web-src lld-22 wasi-libc)

if command -v rustup >/dev/null 2>&1 \
    && rustup target list --installed 2>/dev/null | grep -qx 'wasm32-wasip1'; then
    echo "setup-wasm-toolchain: rustup has wasm32-wasip1; nothing to install"
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup-wasm-toolchain: all of ${PACKAGES[*]} already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

echo "setup-wasm-toolchain: installing ${missing[*]}"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"

/usr/bin/rustc --version
wasm-ld-22 --version
echo "setup-wasm-toolchain: done"
