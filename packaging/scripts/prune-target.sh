#!/usr/bin/env bash
# Keeps the shared, persistent CARGO_TARGET_DIR from filling the disk: deletes test and
# binary executables in <profile>/deps that a newer build of the same crate superseded
# (cargo names them <crate>-<hash>; a dependency change makes a new hash and leaves the
# old file behind, 100–300 MB each), and the incremental caches once they pass a size.
# The fuzz targets' dir ($RUNLOOP_FUZZ_TARGET_DIR, <triple>/<profile>/deps) likewise.
# Never run it while a build uses the target dir (.ci/run calls it before building).
#
#   packaging/scripts/prune-target.sh            prune $CARGO_TARGET_DIR
# Exit status: 0 pruned (or nothing to do); 2 no target dir configured.
set -euo pipefail
source "$(dirname "$0")/env.sh"
TARGET="${CARGO_TARGET_DIR:-}"
[ -n "$TARGET" ] || { echo "prune-target: CARGO_TARGET_DIR is not set" >&2; exit 2; }
[ -d "$TARGET" ] || exit 0
INCREMENTAL_MAX_KB=$((8 * 1024 * 1024))
python3 - "$TARGET" "${RUNLOOP_FUZZ_TARGET_DIR:-}" <<'PY'
import collections, glob, os, sys
target, fuzz = sys.argv[1], sys.argv[2]
freed = 0
dirs = [os.path.join(target, profile, "deps") for profile in ("debug", "release")]
if fuzz:
    dirs += sorted(glob.glob(os.path.join(fuzz, "*", "deps")))
    dirs += sorted(glob.glob(os.path.join(fuzz, "*", "*", "deps")))
for deps in dirs:
    if not os.path.isdir(deps):
        continue
    groups = collections.defaultdict(list)
    for name in os.listdir(deps):
        path = os.path.join(deps, name)
        # Executables only: no extension, executable bit (rlibs and .d files stay).
        if "." in name or not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        stat = os.stat(path)
        groups[name.rsplit("-", 1)[0]].append((stat.st_mtime, path, stat.st_size))
    for files in groups.values():
        files.sort(reverse=True)
        for _mtime, path, size in files[1:]:
            os.remove(path)
            freed += size
print(f"prune-target: removed {freed / 2**30:.1f} GiB of superseded executables")
PY
for profile in debug release; do
    inc="$TARGET/$profile/incremental"
    if [ -d "$inc" ] && [ "$(du -sk "$inc" | cut -f1)" -gt "$INCREMENTAL_MAX_KB" ]; then
        echo "prune-target: $inc is over 8 GiB; removed"
        rm -rf "$inc"
    fi
done
