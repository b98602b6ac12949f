#!/usr/bin/env bash
# Stages the agent SDK as a standalone Cargo workspace in DEST, for agents written outside
# the checkout: `rlp agent scaffold` depends on DEST/sdk. The .deb ships it as
# /usr/share/runloop/agent-sdk (build-deb.sh), and cli/tests/agent_scaffold.rs builds a
# scaffold against a staged copy, so what ships is what is tested.
#
#   DEST/Cargo.toml     agents/Cargo.toml with members = ["proto", "sdk"]
#   DEST/Cargo.lock     agents/Cargo.lock (the versions the canonical agents are built with)
#   DEST/sdk/           agents/sdk
#   DEST/proto/         kernel/proto's sources with agents/proto's manifest (the lib path
#                       made local)
#
# Usage: stage-sdk.sh DEST   (DEST is replaced)
set -euo pipefail
die() { echo "stage-sdk: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: stage-sdk.sh DEST"
dest="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

rm -rf "$dest"
mkdir -p "$dest/sdk" "$dest/proto"
cp "$root/agents/sdk/Cargo.toml" "$dest/sdk/Cargo.toml"
cp -R "$root/agents/sdk/src" "$dest/sdk/src"
cp -R "$root/kernel/proto/src" "$dest/proto/src"
sed 's#^path = "\.\./\.\./kernel/proto/src/lib\.rs"$#path = "src/lib.rs"#' \
    "$root/agents/proto/Cargo.toml" >"$dest/proto/Cargo.toml"
grep -q '^path = "src/lib.rs"$' "$dest/proto/Cargo.toml" \
    || die "agents/proto/Cargo.toml no longer names ../../kernel/proto/src/lib.rs"
# The workspace: the same [workspace.*] tables, only the two members.
awk '
    /^members = \[/ { print "members = [\"proto\", \"sdk\"]"; skip = 1; next }
    skip && /^\]/ { skip = 0; next }
    !skip { print }
' "$root/agents/Cargo.toml" >"$dest/Cargo.toml"
grep -q '^members = \["proto", "sdk"\]$' "$dest/Cargo.toml" \
    || die "agents/Cargo.toml has no members = [ ... ] list"
cp "$root/agents/Cargo.lock" "$dest/Cargo.lock"
echo "$dest"
