#!/usr/bin/env bash
# The one command that runs Runloop's tests: installs what the tests need (idempotent),
# then runs every test of the workspace.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT"

echo "== setup: the real model server for the broker's integration tests"
bash packaging/scripts/model-server.sh install

echo "== tests: cargo test --workspace (target dir $CARGO_TARGET_DIR)"
cargo test --workspace --locked
