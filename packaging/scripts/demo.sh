#!/usr/bin/env bash
# The main job, as far as it exists today, offline and with no configuration.
#
# The compose_email opening needs its five agents, the confirmation gate and the effects
# journal, which do not exist yet. Until they do, this runs the most useful things that do:
# an opening (fan-out/fan-in over the shipped test agents, durable in a fresh state
# directory), the committed `echo` agent through a real confined sandbox-host process in its
# own cgroup (with host calls answered), a looping guest stopped by its time limit, the
# offline model broker, and one RMP frame through encode → decode → validation.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT"

echo "== building the sandbox-host alone (runtime-only wasmtime, no compiler) and rlp"
cargo build --release --locked -p runloop-sandbox-host --quiet
cargo build --release --locked -p runloop-cli --quiet
RLP="$CARGO_TARGET_DIR/release/rlp"
export RUNLOOP_SANDBOX_HOST="$CARGO_TARGET_DIR/release/runloop-sandbox-host"

state="$(mktemp -d)"
echo "== rlp run examples/openings/fan_out.yaml (five nodes, three in parallel, each in its own sandbox; state in $state)"
HOME="$state" "$RLP" run examples/openings/fan_out.yaml --param text=hello
echo "== rlp runs (the run's record is durable in that state directory's POG)"
HOME="$state" "$RLP" runs

echo "== rlp agent invoke agents/bundles/echo (a Rust agent in its own sandbox and cgroup)"
"$RLP" agent invoke agents/bundles/echo --input '{"text": "hello from runloop", "log": true}'

echo "== a guest that loops forever is stopped by its wall-time limit (expected: exit 2)"
if "$RLP" agent invoke sandbox-host/tests/fixtures/loop.wat --input '{}' --timeout-ms 200; then
  echo "demo: the looping guest was not stopped" >&2
  exit 1
fi

echo "== rlp model complete (the offline provider: deterministic, labelled, not an LLM)"
echo "Runloop runs small agents in sandboxes. Each agent has its own cgroup. Runs can be replayed byte for byte." \
  | "$RLP" model complete --state-dir "$(mktemp -d)"

frame_json='{"header":{"trace_id":"0123456789abcdef0123456789abcdef","msg_id":"1","ttl_ms":60000},
  "body":{"type":"control.ping.v1","payload":{"seq":1},"meta":{"opening_id":"compose_email"}}}'
echo "== rlp rmp encode | rlp rmp decode (one control.ping.v1 frame)"
echo "$frame_json" | "$RLP" rmp encode | "$RLP" rmp decode
echo "== done"
