#!/usr/bin/env bash
# Builds every agent under agents/ to wasm32-wasip1 and writes its bundle, reproducibly.
#
#   packaging/scripts/build-agents.sh           build, write agents/bundles/<name>/ + DIGESTS
#   packaging/scripts/build-agents.sh --check   rebuild, fail if any digest differs from the
#                                               committed one, or a committed bundle's
#                                               signature does not verify against the
#                                               project key (CI runs this)
#
# Signing: each bundle is signed (signature.toml) with the project's secret key when it is
# present: $RUNLOOP_PROJECT_KEY, else ~/.config/runloop/project-signing.key. The key is
# never in the repository; its public half is packaging/keys/runloop-project.pub (the
# default trust root, docs/trust.md). Without it, a repacked bundle whose bytes did not
# change keeps its committed signature, and one whose bytes changed is left unsigned
# (and --check then fails until someone with the key signs it).
#
# Toolchain, first found wins (RUNLOOP_WASM_TOOLCHAIN=rustup|debian forces one):
#   rustup  rustup's wasm32-wasip1 target (a developer laptop);
#   debian  Debian's rustc-web 1.96 + rust-web-src with -Zbuild-std, lld-22, wasi-libc
#           (route (e) of the toolchain notes; packaging/scripts/setup-wasm-toolchain.sh).
# The committed digests come from one toolchain, recorded in agents/bundles/DIGESTS;
# --check refuses to compare bytes made by a different one (exit 3) instead of failing late.
#
# Reproducibility: release profile (opt-level s, fat LTO, one codegen unit, no debug info,
# stripped, panic=abort) from agents/Cargo.toml, --locked against agents/Cargo.lock, and
# every machine-specific path (checkout, cargo registry, std sources, target dir) remapped,
# so two checkouts in different directories produce identical bytes. The canonical
# (debian) route also drops panic locations (-Zlocation-detail=none).
#
# Exit status: 0 ok; 1 a digest differs or the build failed; 2 bad usage; 3 no usable
# toolchain or a toolchain other than the one the digests were made with.
set -euo pipefail

usage() { echo "usage: $0 [--check]" >&2; exit 2; }
CHECK=0
case "${1:-}" in
    "") ;;
    --check) CHECK=1 ;;
    *) usage ;;
esac
[ "$#" -le 1 ] || usage

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
AGENTS="$REPO/agents"
BUNDLES="$AGENTS/bundles"
TARGET="wasm32-wasip1"
# Outside the checkout by default so repeated builds (and CI) stay warm; the path is
# remapped, so it does not reach the bytes.
WASM_TARGET_DIR="${RUNLOOP_AGENTS_TARGET_DIR:-$HOME/.cache/runloop-agents-wasm}"
mkdir -p "$WASM_TARGET_DIR"
WASM_TARGET_DIR="$(cd "$WASM_TARGET_DIR" && pwd -P)"
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
# The agent crates: every workspace member but the SDK, by directory name.
AGENT_NAMES=(echo hostcalls panicker alloc_bomb flaky contact_resolver context_gatherer writer critic mailer)

die() { echo "build-agents: $1" >&2; exit "${2:-1}"; }

# --- toolchain ------------------------------------------------------------------------
have_rustup_wasm() {
    command -v rustup >/dev/null 2>&1 \
        && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"
}
have_debian_wasm() {
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && command -v wasm-ld-22 >/dev/null 2>&1 \
        && [ -d /usr/lib/rustlib/src/rust/library ] && [ -d /usr/lib/wasm32-wasi ] \
        && /usr/bin/rustc --version | grep -q '^rustc 1\.9[6-9]\|^rustc 1\.[1-9][0-9][0-9]'
}
ROUTE="${RUNLOOP_WASM_TOOLCHAIN:-}"
if [ -z "$ROUTE" ]; then
    if have_rustup_wasm; then ROUTE=rustup
    elif have_debian_wasm; then ROUTE=debian
    else die "no wasm toolchain: rustup has no $TARGET target and Debian's route is not installed; run packaging/scripts/setup-wasm-toolchain.sh" 3
    fi
fi

# Paths that must not leak into the bytes, each mapped to a fixed name. Later flags win in
# rustc, so the more specific (target dir, maybe inside the checkout) comes last.
REMAPS=("$REPO=/runloop" "$CARGO_HOME_DIR/registry/src=/cargo/registry/src"
        "$CARGO_HOME_DIR/git/checkouts=/cargo/git")
FLAGS=()
case "$ROUTE" in
    rustup)
        have_rustup_wasm || die "RUNLOOP_WASM_TOOLCHAIN=rustup but rustup has no $TARGET target" 3
        CARGO_BIN=(cargo)
        RUSTC_BIN="$(rustup which rustc)"
        SYSROOT="$("$RUSTC_BIN" --print sysroot)"
        REMAPS+=("$SYSROOT=/rustc-sysroot")
        BUILD_STD=()
        TOOLCHAIN_ID="rustup $("$RUSTC_BIN" -V) / $(cargo -V)"
        ;;
    debian)
        have_debian_wasm || die "RUNLOOP_WASM_TOOLCHAIN=debian but Debian's route is not installed; run packaging/scripts/setup-wasm-toolchain.sh" 3
        CARGO_BIN=(env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo)
        RUSTC_BIN=/usr/bin/rustc
        REMAPS+=("/usr/lib/rustlib/src/rust=/rustc-src")
        BUILD_STD=(-Zbuild-std=std,panic_abort)
        # No file:line:col in panic locations: the bytes then do not move when an edit
        # elsewhere in a shared source file (runloop-proto) shifts lines, only when code
        # the agents actually run changes. The panic message itself is kept.
        FLAGS+=(-C linker=wasm-ld-22 -L native=/usr/lib/wasm32-wasi -Zlocation-detail=none)
        TOOLCHAIN_ID="debian $(/usr/bin/rustc -V) / $(/usr/bin/cargo -V) / $(dpkg-query -W -f='${Package} ${Version}' lld-22) / $(dpkg-query -W -f='${Package} ${Version}' wasi-libc)"
        ;;
    *) die "RUNLOOP_WASM_TOOLCHAIN must be rustup or debian, not '$ROUTE'" 2 ;;
esac
REMAPS+=("$WASM_TARGET_DIR=/target")
for remap in "${REMAPS[@]}"; do FLAGS+=("--remap-path-prefix=$remap"); done
# CARGO_ENCODED_RUSTFLAGS keeps paths with spaces intact (0x1f between flags).
ENCODED="$(printf '%s\x1f' "${FLAGS[@]}")"
ENCODED="${ENCODED%$'\x1f'}"

if [ "$CHECK" = 1 ] && [ -f "$BUNDLES/DIGESTS" ]; then
    committed_toolchain="$(sed -n 's/^# toolchain: //p' "$BUNDLES/DIGESTS")"
    if [ "$committed_toolchain" != "$TOOLCHAIN_ID" ]; then
        die "cannot check: the committed digests were made by '$committed_toolchain', this machine has '$TOOLCHAIN_ID'" 3
    fi
fi

# --- build ----------------------------------------------------------------------------
echo "build-agents: toolchain $TOOLCHAIN_ID" >&2
start=$(date +%s)
(
    cd "$AGENTS"
    CARGO_ENCODED_RUSTFLAGS="$ENCODED" "${CARGO_BIN[@]}" build --release --locked \
        --target "$TARGET" --target-dir "$WASM_TARGET_DIR" "${BUILD_STD[@]}" \
        $(printf -- '-p runloop-agent-%s ' "${AGENT_NAMES[@]//_/-}")
) || die "cargo build of the agents failed"
echo "build-agents: wasm built in $(( $(date +%s) - start ))s" >&2

# The packer (host code, runloop-bundle) computes digests and writes/verifies bundles.
(cd "$REPO" && cargo build --quiet --locked -p runloop-bundle --bin runloop-bundle) \
    || die "building the bundle packer failed"
# The root workspace sets no target-dir in any config file, so this is where cargo put it.
HOST_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
case "$HOST_TARGET_DIR" in /*) ;; *) HOST_TARGET_DIR="$REPO/$HOST_TARGET_DIR" ;; esac
PACKER="$HOST_TARGET_DIR/debug/runloop-bundle"

wasm_of() { echo "$WASM_TARGET_DIR/$TARGET/release/runloop_agent_$1.wasm"; }
PROJECT_PUB="$REPO/packaging/keys/runloop-project.pub"
PROJECT_KEY="${RUNLOOP_PROJECT_KEY:-${XDG_CONFIG_HOME:-$HOME/.config}/runloop/project-signing.key}"

if [ "$CHECK" = 0 ]; then
    digests="$(mktemp)"
    {
        echo "# BLAKE3 of each canonical agent.wasm; written by packaging/scripts/build-agents.sh"
        echo "# toolchain: $TOOLCHAIN_ID"
    } >"$digests"
    for name in "${AGENT_NAMES[@]}"; do
        "$PACKER" pack --crate-dir "$AGENTS/$name" --wasm "$(wasm_of "$name")" \
            --out "$BUNDLES/$name" >/dev/null || die "packing $name failed"
        if [ -f "$PROJECT_KEY" ]; then
            "$PACKER" sign "$BUNDLES/$name" --key "$PROJECT_KEY" >/dev/null \
                || die "signing $name failed"
        elif [ ! -f "$BUNDLES/$name/signature.toml" ]; then
            echo "build-agents: $name: unsigned (no project key at $PROJECT_KEY)" >&2
        fi
        echo "$("$PACKER" digest "$BUNDLES/$name/agent.wasm")  $name" >>"$digests"
    done
    mv "$digests" "$BUNDLES/DIGESTS"
    cat "$BUNDLES/DIGESTS"
    exit 0
fi

status=0
for name in "${AGENT_NAMES[@]}"; do
    committed="$(awk -v n="$name" '$2 == n { print $1 }' "$BUNDLES/DIGESTS")"
    rebuilt="$("$PACKER" digest "$(wasm_of "$name")")"
    if [ -z "$committed" ]; then
        echo "build-agents: $name: no committed digest in agents/bundles/DIGESTS (rebuilt $rebuilt)" >&2
        status=1
    elif [ "$committed" != "$rebuilt" ]; then
        echo "build-agents: $name: digest differs: committed $committed, rebuilt $rebuilt" >&2
        status=1
    elif ! "$PACKER" verify "$BUNDLES/$name" --key "$PROJECT_PUB" >/dev/null; then
        echo "build-agents: $name: the committed bundle does not verify (signature by the project key, digest, policy, ABI)" >&2
        status=1
    else
        echo "build-agents: $name: ok $rebuilt"
    fi
done
exit "$status"
