#!/usr/bin/env bash
# A short fuzz run of every fuzz target (seconds, not minutes): catches a decoder that
# panics on the first odd input. Long runs: see docs/protocol.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT/fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked --quiet
fi
# cargo-fuzz passes nightly flags (sanitizers); the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  corpus="$(mktemp -d)"
  echo "== fuzz: $target for ${SECONDS_PER_TARGET}s"
  cargo fuzz run --target-dir "$RUNLOOP_FUZZ_TARGET_DIR" "$target" \
    "$corpus" "seeds/$target" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048
  rm -rf "$corpus"
done
