#!/usr/bin/env bash
# The main job, offline and with no configuration: compose_email drafts an email to John
# about the Q4 plan from the sample knowledge base, reviews it, and sends it (to a local
# Maildir outbox) only after a person says yes. Then a few other parts on their own: the
# `echo` agent in a real confined sandbox, a looping guest stopped by its time limit, the
# offline model broker, and one RMP frame through encode → decode → validation.
#
# On a terminal, `rlp run` shows the draft and asks you; answer yes to send. Not on a
# terminal nobody can be asked, so the first run is denied (and says how to approve), and
# the demo then runs it again with --approve, recorded as "approved by flag".
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT"

echo "== building the sandbox-host alone (runtime-only wasmtime, no compiler) and rlp"
cargo build --release --locked -p runloop-sandbox-host --quiet
cargo build --release --locked -p runloop-cli --quiet
RLP="$CARGO_TARGET_DIR/release/rlp"
export RUNLOOP_SANDBOX_HOST="$CARGO_TARGET_DIR/release/runloop-sandbox-host"

state="$(mktemp -d)"
echo "== a fresh state directory: $state (HOME for this demo)"
echo "== rlp kb import examples/pog/sample.ndjson (sample contacts and notes into the POG)"
HOME="$state" "$RLP" kb import examples/pog/sample.ndjson
echo "== rlp run examples/openings/compose_email.yaml (email John about the Q4 plan)"
if [ -t 0 ] && [ -t 2 ]; then
  HOME="$state" "$RLP" run examples/openings/compose_email.yaml || true
else
  echo "   (not on a terminal: nobody can be asked, so the send is denied and the run says why)"
  HOME="$state" "$RLP" run examples/openings/compose_email.yaml || true
  echo "== the same, approved by flag (as a script would): rlp run ... --approve"
  HOME="$state" "$RLP" run examples/openings/compose_email.yaml --approve
fi
echo "== the outbox ($state/.runloop/outbox): what was sent"
found=0
for f in "$state"/.runloop/outbox/new/* "$state"/.runloop/outbox/cur/*; do
  [ -f "$f" ] || continue
  found=1
  echo "--- $f"
  cat "$f"
done
[ "$found" = 1 ] || echo "(empty: nothing was sent)"
echo "== rlp runs (every run is durable in that state directory's POG)"
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
