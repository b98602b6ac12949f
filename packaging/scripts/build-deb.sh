#!/usr/bin/env bash
# Builds Runloop's Debian package from a staged tree with plain `dpkg-deb --build` (no
# cargo-deb, no debhelper): runloopd, rlp, agtop, runloop-sandbox-host, the canonical agent
# bundles, man pages and bash/zsh/fish completions generated from the real clap commands,
# the hardened runloopd.service, the system-mode config and the maintainer scripts
# (packaging/deb/). What goes where and why: docs/packaging.md.
#
#   packaging/scripts/build-deb.sh [--profile release|dev] [--out DIR]
#
#   --profile release  (default) optimized binaries, `cargo build --release`: what you ship.
#                      About 13 minutes cold on the project's machines.
#   --profile dev      the debug binaries, the same ones `cargo test --workspace` already
#                      built, so CI (packaging/scripts/test.sh) packages in seconds instead
#                      of paying for a second, optimized build. Unoptimized code: for
#                      testing the package, not for shipping. The version gets `~dev`.
#   --out DIR          where the .deb goes (default: $CARGO_TARGET_DIR/deb).
#
# Binaries are stripped of debug info (symbols stay, for backtraces). The version is the
# workspace's (`[workspace.package] version` in Cargo.toml); the architecture dpkg's.
# The last line on stdout is the .deb's path.
#
# Exit status: 0 built; 1 a step failed; 2 bad usage.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT"

usage() { echo "usage: $0 [--profile release|dev] [--out DIR]" >&2; exit 2; }
die() { echo "build-deb: $1" >&2; exit 1; }

PROFILE=release
OUT_DIR="$CARGO_TARGET_DIR/deb"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --profile) [ "$#" -ge 2 ] || usage; PROFILE="$2"; shift 2 ;;
        --out) [ "$#" -ge 2 ] || usage; OUT_DIR="$2"; shift 2 ;;
        *) usage ;;
    esac
done
case "$PROFILE" in
    release) PROFILE_DIR=release ;;
    dev) PROFILE_DIR=debug ;;
    *) usage ;;
esac
for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install dpkg-dev binutils gzip)"
done

VERSION="$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)"
[ -n "$VERSION" ] || die "no [workspace.package] version in Cargo.toml"
[ "$PROFILE" = dev ] && VERSION="$VERSION~dev"
ARCH="$(dpkg --print-architecture)"
DEB="$OUT_DIR/runloop_${VERSION}_${ARCH}.deb"

echo "== build-deb: cargo build --profile $PROFILE (runloop-sandbox-host alone, then runloopd, rlp, agtop)" >&2
start=$(date +%s)
# The sandbox-host alone, so cargo's feature unification cannot pull cranelift into it.
cargo build --locked --quiet --profile "$PROFILE" -p runloop-sandbox-host
cargo build --locked --quiet --profile "$PROFILE" -p runloop-kernel --bin runloopd \
    -p runloop-cli --bin rlp -p runloop-tui --bin agtop
echo "build-deb: binaries ready in $(( $(date +%s) - start ))s" >&2
BIN="$CARGO_TARGET_DIR/$PROFILE_DIR"

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/runloop-deb.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/root"
PKG="$ROOT/DEBIAN"
install -d -m 0755 "$PKG" "$ROOT/usr/bin" "$ROOT/usr/share/man/man1" \
    "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
    "$ROOT/usr/share/fish/vendor_completions.d" "$ROOT/usr/share/runloop/agents" \
    "$ROOT/usr/share/runloop/openings" "$ROOT/usr/share/doc/runloop" \
    "$ROOT/lib/systemd/system" "$ROOT/etc/runloop"

echo "== build-deb: binaries" >&2
for bin in runloopd rlp agtop runloop-sandbox-host; do
    [ -x "$BIN/$bin" ] || die "$BIN/$bin was not built"
    install -m 0755 "$BIN/$bin" "$ROOT/usr/bin/$bin"
    strip --strip-debug "$ROOT/usr/bin/$bin"
done

echo "== build-deb: man pages and completions (from the clap commands)" >&2
man="$STAGE/man"
mkdir -p "$man"
"$BIN/rlp" man --out "$man"
"$BIN/runloopd" --man >"$man/runloopd.1"
"$BIN/agtop" --man >"$man/agtop.1"
for page in "$man"/*.1; do
    [ -s "$page" ] || die "empty man page $page"
    gzip -9n <"$page" >"$ROOT/usr/share/man/man1/$(basename "$page").gz"
done
"$BIN/rlp" completions bash >"$ROOT/usr/share/bash-completion/completions/rlp"
"$BIN/rlp" completions zsh >"$ROOT/usr/share/zsh/vendor-completions/_rlp"
"$BIN/rlp" completions fish >"$ROOT/usr/share/fish/vendor_completions.d/rlp.fish"

echo "== build-deb: canonical bundles, examples, docs, service, config" >&2
bundles=0
for dir in agents/bundles/*/; do
    name="$(basename "$dir")"
    [ -f "$dir/manifest.toml" ] || die "agents/bundles/$name has no manifest.toml"
    # Every file the bundle directory holds (module, manifest, policy, signature, ...).
    cp -R "$dir" "$ROOT/usr/share/runloop/agents/$name"
    bundles=$((bundles + 1))
done
[ "$bundles" -gt 0 ] || die "no bundles under agents/bundles"
install -m 0644 agents/bundles/DIGESTS "$ROOT/usr/share/runloop/agents/DIGESTS"
# The agent SDK as a standalone workspace: what `rlp agent scaffold` depends on.
bash packaging/scripts/stage-sdk.sh "$ROOT/usr/share/runloop/agent-sdk" >/dev/null
# Where `rlp` finds an opening by name (the router's `router.default_opening`).
install -m 0644 examples/openings/*.yaml "$ROOT/usr/share/runloop/openings/"
install -m 0644 README.md docs/packaging.md packaging/deb/copyright "$ROOT/usr/share/doc/runloop/"
install -m 0644 packaging/deb/runloopd.service "$ROOT/lib/systemd/system/runloopd.service"
install -m 0644 packaging/deb/config.yaml "$ROOT/etc/runloop/config.yaml"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$PKG/"
echo "/etc/runloop/config.yaml" >"$PKG/conffiles"
# Plain modes whatever the checkout's umask: directories 0755, data 0644.
find "$ROOT/usr/share" "$ROOT/etc" "$ROOT/lib" -type d -exec chmod 0755 {} +
find "$ROOT/usr/share" "$ROOT/etc" "$ROOT/lib" -type f -exec chmod 0644 {} +

echo "== build-deb: control (shared-library dependencies by dpkg-shlibdeps)" >&2
mkdir -p "$STAGE/shlibs/debian"
printf 'Source: runloop\n\nPackage: runloop\nArchitecture: any\n' >"$STAGE/shlibs/debian/control"
shlibs="$(cd "$STAGE/shlibs" && dpkg-shlibdeps -O -e"$ROOT/usr/bin/runloopd" \
    -e"$ROOT/usr/bin/rlp" -e"$ROOT/usr/bin/agtop" -e"$ROOT/usr/bin/runloop-sandbox-host" \
    2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no shared-library dependencies"
installed_kb="$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@INSTALLED_SIZE@/$installed_kb/" \
    -e "s/@DEPENDS@/$shlibs, adduser/" packaging/deb/control.in >"$PKG/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' \
    | LC_ALL=C sort -z | xargs -0 md5sum) >"$PKG/md5sums"
chmod 0644 "$PKG/control" "$PKG/conffiles" "$PKG/md5sums"

echo "== build-deb: dpkg-deb --build" >&2
mkdir -p "$OUT_DIR"
# Release: xz, the archive's default. Dev: gzip -1, since CI builds it on every run.
if [ "$PROFILE" = release ]; then compress=(-Zxz); else compress=(-Zgzip -z1); fi
dpkg-deb --root-owner-group "${compress[@]}" --build "$ROOT" "$DEB" >/dev/null
files="$(dpkg-deb --contents "$DEB" | grep -vc '/$')"
echo "build-deb: $DEB: $(du -h "$DEB" | cut -f1), $files files, installed ${installed_kb} KiB, depends: $shlibs, adduser" >&2
echo "$DEB"
