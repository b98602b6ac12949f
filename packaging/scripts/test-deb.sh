#!/usr/bin/env bash
# Tests Runloop's Debian package the way a stranger would meet it: its contents, its
# service's hardening score, and an install into a clean Debian root made by debootstrap,
# where the daemon is started as the service would start it and `rlp run` of a one-node
# opening works against it; then `dpkg --purge` must leave no state behind.
#
#   packaging/scripts/test-deb.sh [DEB]
#
# Without DEB it builds one with `build-deb.sh --profile dev` (the test build's debug
# binaries; see that script). Steps, each fatal (nothing is skipped: a missing tool,
# mirror or file is a failure):
#   1. contents  `dpkg-deb --contents`/`--info`: every file the package must hold, the
#                conffile, the maintainer scripts, nothing outside the expected places.
#   2. unit      `systemd-analyze security --offline=true` of the shipped runloopd.service;
#                the exposure must stay at or below EXPOSURE_MAX (docs/packaging.md).
#   3. root      a minimal Debian root (debootstrap --variant=minbase, the host's suite and
#                apt mirror), cached as a tarball under ~/.cache/runloop-debootstrap/ so
#                warm runs do not download it again; unpacked fresh for every run.
#   4. install   in private mount and pid namespaces (so every mount and process goes away
#                with them, also on failure): /proc, /sys, /dev, a tmpfs /run and /tmp;
#                `dpkg -i`; the postinst's user, group, directories and modes; runloopd
#                started with the unit's ExecStart, User, Group, UMask and Environment
#                (PID 1 here is not systemd); `rlp run` of the packaged echo opening as a
#                member of the `runloop` group, through the daemon; `rlp status` as root;
#                SIGTERM and a clean stop; `dpkg --purge`; no /var/lib/runloop, no
#                /etc/runloop, no runloop user left.
#
# Exit status: 0 all passed; 1 a step failed; 2 bad usage.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$RUNLOOP_ROOT"

# The highest `systemd-analyze security` exposure the unit may have (measured: 1.7).
EXPOSURE_MAX=2.0
# How long the daemon may take to bind its socket, and to stop, in tenths of a second.
DAEMON_START_TENTHS_MAX=300
DAEMON_STOP_TENTHS_MAX=300
CACHE_DIR="$HOME/.cache/runloop-debootstrap"
UNIT=lib/systemd/system/runloopd.service
OPENING=/usr/share/runloop/openings/echo.yaml

die() { echo "test-deb: FAIL: $1" >&2; exit 1; }
step() { echo "== test-deb: $1" >&2; }

# --- inside the namespaces ------------------------------------------------------------
# Runs as PID 1 of a private pid namespace with a private mount namespace: when it exits,
# the kernel kills every process left in it and drops every mount made here. The Debian
# root becomes the namespace's root with pivot_root, not chroot: the kernel refuses a
# user namespace to a chrooted process, and the sandbox jail makes one for every sandbox
# when the daemon is not root (as under the service).
inner() {
    local root="$1" deb="$2"
    local daemon=""
    # On every exit: the daemon first (by its pid), then whatever is still mounted.
    cleanup_inner() {
        # Also runs after inner() returned, when its locals are gone: hence the defaults.
        local pid="${daemon:-}" base="${root:-}" target
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        for target in /tmp /run /dev /sys /proc "$base/tmp" "$base/run" "$base/dev" \
            "$base/sys" "$base/proc" "$base"; do
            if [ -n "$target" ] && [ "$target" != / ] && mountpoint -q "$target" 2>/dev/null; then
                umount -R "$target" 2>/dev/null || umount -R -l "$target" 2>/dev/null || true
            fi
        done
    }
    trap cleanup_inner EXIT
    # pivot_root needs the new root to be a mount point of its own.
    mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
    mkdir -p "$root/.host"
    cd "$root"
    pivot_root . .host
    cd /
    umount -R -l /.host
    rmdir /.host
    # From here on the Debian root is /, and "$root/x" is /x.
    root=""

    in_root() { /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

    step "dpkg -i $(basename "$deb") in the clean root"
    in_root dpkg -i "/var/cache/runloop-test/$(basename "$deb")" >&2 \
        || die "dpkg -i failed"

    step "postinst: the runloop user and group, directories and modes"
    in_root getent passwd runloop >/dev/null || die "no runloop user"
    in_root getent group runloop >/dev/null || die "no runloop group"
    local want got
    for want in "/var/lib/runloop runloop:runloop 750" "/var/cache/runloop runloop:runloop 750" \
        "/etc/runloop/config.yaml root:runloop 640"; do
        # shellcheck disable=SC2086 # three words: path, owner:group, mode.
        set -- $want
        got="$(in_root stat -c '%U:%G %a' "$1")" || die "$1 missing"
        [ "$got" = "$2 $3" ] || die "$1 is $got, want $2 $3"
    done
    for want in /usr/bin/runloopd /usr/bin/rlp /usr/bin/agtop; do
        in_root "$want" --version >/dev/null || die "$want --version failed in the root"
    done
    # The sandbox-host takes no flags (the kernel starts it); its libraries must resolve.
    ! in_root ldd /usr/bin/runloop-sandbox-host | grep -q "not found" \
        || die "runloop-sandbox-host has unresolved libraries in the root"

    step "start runloopd as runloopd.service would (ExecStart, User, Group, UMask, Environment)"
    local unit="$root/$UNIT" exec_start user group umask_ env_line
    exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
    user="$(sed -n 's/^User=//p' "$unit")"
    group="$(sed -n 's/^Group=//p' "$unit")"
    umask_="$(sed -n 's/^UMask=//p' "$unit")"
    local envs=()
    while IFS= read -r env_line; do envs+=("$env_line"); done \
        < <(sed -n 's/^Environment=//p' "$unit")
    [ -n "$exec_start" ] && [ -n "$user" ] && [ -n "$group" ] && [ -n "$umask_" ] \
        || die "the unit lacks ExecStart, User, Group or UMask"
    # What RuntimeDirectory=, StateDirectory= and CacheDirectory= would make.
    in_root install -d -o "$user" -g "$group" -m 0750 /run/runloop /var/lib/runloop /var/cache/runloop
    local log="$root/var/log/runloopd-test.log"
    # ExecStart is a command line; sh splits it into words as systemd would (ours has no quotes).
    /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/runloop \
        LANG=C.UTF-8 "${envs[@]}" setpriv --reuid="$user" --regid="$group" --init-groups \
        --no-new-privs -- /bin/sh -c "umask $umask_; exec $exec_start" >"$log" 2>&1 &
    daemon=$!
    local tenths=0
    until [ -S "$root/run/runloop/rmp.sock" ]; do
        if ! kill -0 "$daemon" 2>/dev/null; then
            cat "$log" >&2
            die "runloopd exited before binding /run/runloop/rmp.sock"
        fi
        tenths=$((tenths + 1))
        [ "$tenths" -le "$DAEMON_START_TENTHS_MAX" ] || { cat "$log" >&2; die "runloopd did not bind its socket"; }
        sleep 0.1
    done
    got="$(in_root stat -c '%U:%G %a' /run/runloop/rmp.sock)"
    [ "$got" = "$user:$group 660" ] || die "the socket is $got, want $user:$group 660"
    # /proc is this pid namespace's, where $daemon is.
    got="$(stat -c '%u' "/proc/$daemon")"
    [ "$got" = "$(in_root id -u "$user")" ] || die "runloopd runs as uid $got, not $user"

    step "rlp run $OPENING --json, as a member of the runloop group, through the daemon"
    in_root useradd --create-home --shell /bin/sh alice
    in_root adduser --quiet alice runloop
    local report
    report="$(/usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/home/alice \
        LANG=C.UTF-8 setpriv --reuid=alice --regid=alice --init-groups -- \
        rlp run "$OPENING" --param text=installed --json)" \
        || { echo "$report" >&2; cat "$log" >&2; die "rlp run failed"; }
    echo "$report" >&2
    # One JSON object, keys in the report's order (no python3 in a minimal root).
    for want in '"opening":"echo_once","status":"succeeded"' \
        '"nodes":[{"id":"echo","status":"succeeded"' '"source":"daemon"' \
        '"socket":"/run/runloop/rmp.sock"'; do
        grep -qF "$want" <<<"$report" || { cat "$log" >&2; die "the run's report lacks $want"; }
    done
    step "rlp status as root, through the daemon"
    in_root rlp status >"$root/tmp/status.txt" 2>&1 || { cat "$root/tmp/status.txt" >&2; die "rlp status failed"; }
    grep -q "daemon at /run/runloop/rmp.sock" "$root/tmp/status.txt" \
        || { cat "$root/tmp/status.txt" >&2; die "rlp status did not reach the daemon"; }
    [ -d "$root/var/lib/runloop/pog" ] || die "the daemon kept no POG under /var/lib/runloop"

    step "SIGTERM: runloopd stops cleanly and removes its socket"
    kill -TERM "$daemon"
    tenths=0
    while kill -0 "$daemon" 2>/dev/null; do
        tenths=$((tenths + 1))
        [ "$tenths" -le "$DAEMON_STOP_TENTHS_MAX" ] || { cat "$log" >&2; die "runloopd did not stop on SIGTERM"; }
        sleep 0.1
    done
    wait "$daemon" || { cat "$log" >&2; die "runloopd exited non-zero on SIGTERM"; }
    daemon=""
    grep -q "runloopd: stopped" "$log" || { cat "$log" >&2; die "no clean stop in runloopd's log"; }
    [ ! -e "$root/run/runloop/rmp.sock" ] || die "the socket is left behind"
    echo "--- runloopd's log" >&2
    cat "$log" >&2

    step "dpkg --purge runloop: no state, config, user or binaries left"
    in_root dpkg --purge runloop >&2 || die "dpkg --purge failed"
    for want in /var/lib/runloop /var/cache/runloop /etc/runloop /usr/bin/rlp /$UNIT; do
        [ ! -e "$root$want" ] || die "$want is left after purge"
    done
    ! in_root getent passwd runloop >/dev/null || die "the runloop user is left after purge"
    ! in_root getent group runloop >/dev/null || die "the runloop group is left after purge"
}

if [ "${1:-}" = "--inner" ]; then
    [ "$#" -eq 3 ] || exit 2
    inner "$2" "$3"
    exit 0
fi

# --- on the host ----------------------------------------------------------------------
[ "$#" -le 1 ] || { echo "usage: $0 [DEB]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, namespaces, mounts)"
for tool in dpkg-deb systemd-analyze unshare pivot_root zstd; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
if [ "$#" -eq 1 ]; then
    DEB="$1"
else
    DEB="$(packaging/scripts/build-deb.sh --profile dev | tail -n 1)"
fi
[ -f "$DEB" ] || die "no package at $DEB"
start=$(date +%s)

step "contents of $(basename "$DEB")"
contents="$(dpkg-deb --contents "$DEB" | awk '{ print $6 }' | sed 's|^\./|/|')"
required=(
    /usr/bin/runloopd /usr/bin/rlp /usr/bin/agtop /usr/bin/runloop-sandbox-host
    /lib/systemd/system/runloopd.service /etc/runloop/config.yaml
    /usr/share/man/man1/rlp.1.gz /usr/share/man/man1/rlp-run.1.gz
    /usr/share/man/man1/runloopd.1.gz /usr/share/man/man1/agtop.1.gz
    /usr/share/bash-completion/completions/rlp /usr/share/zsh/vendor-completions/_rlp
    /usr/share/fish/vendor_completions.d/rlp.fish
    /usr/share/runloop/agents/DIGESTS /usr/share/runloop/openings/echo.yaml
    /usr/share/runloop/openings/compose_email.yaml
    /usr/share/doc/runloop/copyright /usr/share/doc/runloop/packaging.md
)
# Every canonical bundle, with every file its directory holds in the checkout.
while IFS= read -r file; do
    required+=("/usr/share/runloop/agents/${file#agents/bundles/}")
done < <(find agents/bundles -mindepth 2 -type f | LC_ALL=C sort)
for path in "${required[@]}"; do
    grep -qxF "$path" <<<"$contents" || die "the package lacks $path"
done
outside="$(grep -v '/$' <<<"$contents" | grep -Ev '^/(usr/bin|usr/share|lib/systemd/system|etc/runloop)/' || true)"
[ -z "$outside" ] || die "files outside the expected places: $outside"
info="$(dpkg-deb --info "$DEB")"
for want in "Package: runloop" "Depends: .*libc6.*adduser" " postinst" " prerm" " postrm" " conffiles"; do
    grep -q "$want" <<<"$info" || die "dpkg-deb --info lacks '$want'"
done
[ "$(dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles)" = /etc/runloop/config.yaml ] \
    || die "the conffiles are not exactly /etc/runloop/config.yaml"
echo "test-deb: $(grep -vc '/$' <<<"$contents") files, $(du -h "$DEB" | cut -f1), all ${#required[@]} required present" >&2

step "systemd-analyze security --offline=true runloopd.service (exposure <= $EXPOSURE_MAX)"
unit_dir="$(mktemp -d)"
dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$unit_dir" "./$UNIT"
score="$(cd "$unit_dir" && systemd-analyze security --offline=true --no-pager \
    "$unit_dir/$UNIT" 2>&1 | sed -n 's/.*Overall exposure level for runloopd.service: \([0-9.]*\).*/\1/p')"
rm -rf "$unit_dir"
[ -n "$score" ] || die "systemd-analyze security gave no score"
echo "test-deb: runloopd.service exposure $score (max $EXPOSURE_MAX)" >&2
awk -v s="$score" -v m="$EXPOSURE_MAX" 'BEGIN { exit !(s <= m) }' \
    || die "runloopd.service exposure $score is above $EXPOSURE_MAX"

step "a clean Debian root (debootstrap, cached in $CACHE_DIR)"
# The host's suite, so the binaries' glibc matches; the host's apt mirror.
SUITE="$(. /etc/os-release && echo "$VERSION_CODENAME")"
ARCH="$(dpkg --print-architecture)"
MIRROR="$(sed -n 's/^URIs: *\([^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
[ -n "$MIRROR" ] || MIRROR="$(sed -n 's/^deb \(\[[^]]*\] \)\?\(http[^ ]*\/debian\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)"
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian
TARBALL="$CACHE_DIR/$SUITE-minbase-$ARCH.tar.zst"
if [ ! -f "$TARBALL" ]; then
    if ! command -v debootstrap >/dev/null 2>&1; then
        SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
        $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends debootstrap
    fi
    build="$(mktemp -d /var/tmp/runloop-debootstrap.XXXXXX)"
    echo "test-deb: debootstrap --variant=minbase --include=adduser $SUITE from $MIRROR" >&2
    debootstrap --variant=minbase --include=adduser "$SUITE" "$build/root" "$MIRROR" >"$build/log" 2>&1 \
        || { tail -n 20 "$build/log" >&2; rm -rf --one-file-system "$build"; die "debootstrap failed"; }
    # What a package install does not need: downloaded .debs and apt's lists (~80 MB).
    rm -rf "$build/root/var/cache/apt/archives/"*.deb "$build/root/var/lib/apt/lists/"*_Packages
    mkdir -p "$CACHE_DIR"
    tar -C "$build/root" -cf - . | zstd -q -T0 -6 >"$TARBALL.tmp"
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf --one-file-system "$build"
fi
echo "test-deb: root tarball $TARBALL ($(du -h "$TARBALL" | cut -f1))" >&2

ROOT_DIR="$(mktemp -d /var/tmp/runloop-deb-root.XXXXXX)"
cleanup() {
    # The namespaces took their mounts with them; refuse to delete through one anyway.
    if findmnt -rn -o TARGET | grep -q "^$ROOT_DIR/"; then
        echo "test-deb: mounts left under $ROOT_DIR; not removing it" >&2
    else
        rm -rf --one-file-system "$ROOT_DIR"
    fi
}
trap cleanup EXIT
zstd -q -d -c "$TARBALL" | tar -C "$ROOT_DIR" -xf -
mkdir -p "$ROOT_DIR/var/cache/runloop-test"
cp "$DEB" "$ROOT_DIR/var/cache/runloop-test/"
unshare --mount --pid --fork --propagation private -- \
    bash "$0" --inner "$ROOT_DIR" "$(basename "$DEB")" \
    || die "the install test failed (see above)"
echo "== test-deb: all passed in $(( $(date +%s) - start ))s" >&2
