#!/usr/bin/env bash
# The one command that runs Runloop's tests. It installs what the tests need (idempotent:
# the real model server for the broker, the Debian wasm toolchain for the agents), checks
# that the committed agent bundles rebuild to their recorded digests, then runs every test
# of both workspaces (the kernel's and the agents'), the embedded example, the Debian
# package's build and install test, and a 3-minute soak.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT"

echo "== setup: the real model server for the broker's integration tests"
bash packaging/scripts/model-server.sh install
echo "== setup: the real SMTP server (aiosmtpd) for runloop-mail's integration tests"
bash packaging/scripts/smtp-server.sh install
echo "== setup: the real OTLP receiver (opentelemetry-proto + grpcio) for the kernel's OpenTelemetry tests"
bash packaging/scripts/otlp-receiver.sh install
echo "== setup: Mermaid's parser and the Trace Event Format checker for runloop-client's trace tests"
bash packaging/scripts/trace-tools.sh install
echo "== setup: tmux for agtop's terminal tests (tui/tests/e2e_tmux.rs, bad_stream.rs)"
if ! command -v tmux >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends tmux
fi
echo "== setup: dpkg-dev, zstd and debootstrap for the Debian package's build and install test"
missing=()
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "== setup: the wasm toolchain for building agents"
bash packaging/scripts/setup-wasm-toolchain.sh

echo "== agents: rebuild every agent, fail if a committed digest differs"
bash packaging/scripts/build-agents.sh --check

echo "== tests: agents workspace (the SDK and agents, natively)"
(cd agents && CARGO_TARGET_DIR="$HOME/.cache/runloop-agents-native" cargo test --locked)

echo "== tests: cargo test --workspace (target dir $CARGO_TARGET_DIR)"
cargo test --workspace --locked

echo "== example: examples/embedded_echo.rs (boot a kernel, start echo, send one message)"
cargo run --locked --quiet -p runloop-kernel --example embedded_echo

echo "== package: the .deb from the debug binaries built above (build-deb.sh --profile dev: no second,"
echo "   optimized build in CI), its contents and service score, then installed, run and purged in a"
echo "   clean Debian root (test-deb.sh; docs/packaging.md)"
deb="$(bash packaging/scripts/build-deb.sh --profile dev | tail -n 1)"
bash packaging/scripts/test-deb.sh "$deb"

echo "== soak: 3 minutes of compose_email runs with random faults (rlp drill soak; docs/drills.md)"
cargo run --locked --quiet -p runloop-cli -- drill soak --minutes 3
