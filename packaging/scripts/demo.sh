#!/usr/bin/env bash
# The main job, as far as it exists today. The compose_email opening needs the kernel,
# the agents and the broker (not built yet); until then this builds `rlp` and walks one
# RMP frame through encode → decode → validation, offline, with no configuration.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT"

echo "== building rlp (release; target dir $CARGO_TARGET_DIR)"
cargo build --release --locked -p runloop-cli --quiet
RLP="$CARGO_TARGET_DIR/release/rlp"

frame_json='{"header":{"trace_id":"0123456789abcdef0123456789abcdef","msg_id":"1","ttl_ms":60000},
  "body":{"type":"control.ping.v1","payload":{"seq":1},"meta":{"opening_id":"compose_email"}}}'
echo "== rlp rmp encode (a control.ping.v1 frame)"
hex=$(echo "$frame_json" | "$RLP" rmp encode)
echo "$hex"
echo "== rlp rmp decode"
echo "$hex" | "$RLP" rmp decode
echo "== rlp rmp decode of the same frame one minute later (expected: Expired, exit 2)"
later=$(( $(date +%s%3N) + 120000 ))
if echo "$hex" | "$RLP" rmp decode --now-ms "$later"; then
  echo "demo: an expired frame was accepted" >&2
  exit 1
fi
echo "== done"
