# Shared settings for Runloop's scripts; sourced, not run.
# A persistent target dir outside the checkout keeps repeated builds (and CI) warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/runloop-target}"
# The fuzz targets' own target dir (cargo-fuzz builds with sanitizer flags: never shared).
export RUNLOOP_FUZZ_TARGET_DIR="${RUNLOOP_FUZZ_TARGET_DIR:-$HOME/.cache/runloop-fuzz-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
RUNLOOP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export RUNLOOP_ROOT
