#!/usr/bin/env bash
# What one exec costs before a program's main runs, on this machine: spawn+exit of a
# binary with no libc at all, of a static and a dynamic glibc binary that only return 0,
# and of runloop-sandbox-host started without its control socket (it reaches main, finds
# none and exits 64 at once); and what one CPUID instruction costs (on a VM it
# traps to the hypervisor, and glibc's start-up runs dozens of them to learn the CPU's
# features and caches). Each figure is the median of ROUNDS rounds of N spawns, measured in
# one process, interleaved. Needs gcc. Written up in perf/openings.md.
#
#   bash perf/exec-cost.sh [N] [ROUNDS]       (defaults: 300, 5)
#
# The sandbox host is $RUNLOOP_SANDBOX_HOST, else $CARGO_TARGET_DIR/release/runloop-sandbox-host
# (build it with `cargo build -p runloop-sandbox-host --release`).
set -euo pipefail
N="${1:-300}"
ROUNDS="${2:-5}"
case "$N$ROUNDS" in *[!0-9]*) echo "usage: $0 [N] [ROUNDS] (whole numbers)" >&2; exit 2 ;; esac
source "$(dirname "$0")/../packaging/scripts/env.sh"
HOST="${RUNLOOP_SANDBOX_HOST:-$CARGO_TARGET_DIR/release/runloop-sandbox-host}"
[ -x "$HOST" ] || { echo "no sandbox host at $HOST (cargo build -p runloop-sandbox-host --release)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "gcc is needed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/spawn.c" <<'EOF'
#include <cpuid.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
extern char **environ;
static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
/* argv: N, then "cpuid" or a program and its arguments. Prints µs per spawn+exit (or per
   CPUID instruction); a program killed by a signal fails the run. */
int main(int argc, char **argv) {
  int n = atoi(argv[1]);
  double start = now_us();
  if (strcmp(argv[2], "cpuid") == 0) {
    unsigned a, b, c, d;
    for (int i = 0; i < n; i++) __cpuid(2, a, b, c, d);
  } else {
    for (int i = 0; i < n; i++) {
      pid_t pid;
      int status;
      if (posix_spawn(&pid, argv[2], NULL, NULL, argv + 2, environ) != 0) return 1;
      if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
    }
  }
  printf("%.1f\n", (now_us() - start) / n);
  return 0;
}
EOF
printf '.globl _start\n_start:\n mov $60, %%eax\n xor %%edi, %%edi\n syscall\n.section .note.GNU-stack,"",@progbits\n' > "$work/nolibc.s"
printf 'int main(void) { return 0; }\n' > "$work/ret.c"
gcc -O2 -o "$work/spawn" "$work/spawn.c"
gcc -nostdlib -static -o "$work/nolibc" "$work/nolibc.s"
gcc -O2 -static -o "$work/static_glibc" "$work/ret.c"
gcc -O2 -o "$work/dynamic_glibc" "$work/ret.c"

median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
names=(nolibc static_glibc dynamic_glibc sandbox_host cpuid)
declare -A samples
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  samples[nolibc]+="$("$work/spawn" "$N" "$work/nolibc") "
  samples[static_glibc]+="$("$work/spawn" "$N" "$work/static_glibc") "
  samples[dynamic_glibc]+="$("$work/spawn" "$N" "$work/dynamic_glibc") "
  samples[sandbox_host]+="$("$work/spawn" "$N" "$HOST") "
  samples[cpuid]+="$("$work/spawn" 10000 cpuid) "
done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for name in "${names[@]}"; do
  unit="µs per spawn+exit"
  [ "$name" = cpuid ] && unit="µs per CPUID (leaf 2)"
  printf '  %-14s %8s %s  (rounds: %s)\n' "$name" "$(tr ' ' '\n' <<<"${samples[$name]}" | grep . | median)" "$unit" "${samples[$name]% }"
done
