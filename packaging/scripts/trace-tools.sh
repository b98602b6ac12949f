#!/usr/bin/env bash
# trace-tools.sh — install and run the real checkers of `rlp trace`'s exports, for
# runloop-client's tests (kernel/client/tests/trace_render.rs):
#
#   trace-tools.sh install              idempotent; everything under $RUNLOOP_TRACE_TOOLS
#   trace-tools.sh check-mermaid FILE   parses FILE with Mermaid's own parser (mermaid's
#                                       `parse()` under Node, no browser); exit 0 when it
#                                       parses, 1 with the parser's error otherwise
#   trace-tools.sh check-chrome FILE    checks FILE is Trace Event Format JSON: the format's
#                                       JSON schema (trace-tools/trace-event-format.schema.json,
#                                       with the `jsonschema` package), then the rule Perfetto's
#                                       importer applies to complete (X) events: on one thread
#                                       they nest or do not overlap; exit 0 or 1 with the errors
#
# What gets installed: the npm package `mermaid` at the version and dependency tree of
# trace-tools/package-lock.json (`npm ci`, no install scripts), with the machine's Node.js;
# and a Python venv with jsonschema and its dependencies at exact pins. Perfetto's own
# trace_processor is not used: its Python package downloads a prebuilt binary at run time,
# which this project's machines cannot fetch.
#
# Exit codes: 0 ok, 1 check failed, 2 usage, 3 not installed (or the install failed).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="${RUNLOOP_TRACE_TOOLS:-$HOME/.cache/runloop-trace-tools}"
NODE_DIR="$TOOLS/node"
VENV="$TOOLS/venv"
SCHEMA="$HERE/trace-tools/trace-event-format.schema.json"
# Exact pins, dependencies included (installed with --no-deps).
PY_PACKAGES="jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 typing_extensions==4.16.0"
STAMP="$TOOLS/.installed"

# What the stamp records: the lock file's and the pins' content, so a change to either
# reinstalls.
wanted_stamp() {
  { cat "$HERE/trace-tools/package.json" "$HERE/trace-tools/package-lock.json"; echo "$PY_PACKAGES"; } |
    sha256sum | cut -d' ' -f1
}

# Mermaid's parser, under Node: parses the file named by argv[1]; prints the parser's
# error and exits 1 when it does not parse.
MERMAID_CHECK='
import { readFileSync } from "node:fs";
import mermaid from "mermaid";
const file = process.argv[1];
const text = readFileSync(file, "utf8");
try {
  const result = await mermaid.parse(text);
  if (!result || result.diagramType !== "sequence") {
    console.error(`${file}: parsed as ${result && result.diagramType}, not a sequence diagram`);
    process.exit(1);
  }
  console.log(`${file}: mermaid ${result.diagramType} diagram parses`);
} catch (e) {
  console.error(`${file}: ${e.message || e}`);
  process.exit(1);
}
'

# The Trace Event Format checks: the schema, then nesting of X events per (pid, tid).
CHROME_CHECK='
import json, sys
from jsonschema import Draft202012Validator

schema_path, path = sys.argv[1], sys.argv[2]
with open(schema_path) as f:
    schema = json.load(f)
try:
    with open(path) as f:
        trace = json.load(f)
except ValueError as e:
    sys.exit(f"{path}: not JSON: {e}")

errors = sorted(Draft202012Validator(schema).iter_errors(trace), key=lambda e: list(e.absolute_path))
problems = []
for e in errors[:20]:
    where = "/".join(str(p) for p in e.absolute_path) or "(top)"
    # A oneOf failure hides the cause: report the deepest error under it.
    while e.context:
        e = max(e.context, key=lambda c: len(list(c.absolute_path)))
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
    problems.append(f"schema: at {where}: {e.message}")

events = trace["traceEvents"] if isinstance(trace, dict) else trace
threads = {}
if not errors:
    for k, ev in enumerate(events):
        if ev.get("ph") == "X":
            threads.setdefault((ev["pid"], ev["tid"]), []).append((ev["ts"], -ev["dur"], k))
for (pid, tid), spans in threads.items():
    spans.sort()
    open_ends = []  # ends of the slices that enclose the current one
    for ts, neg_dur, k in spans:
        end = ts - neg_dur
        while open_ends and open_ends[-1][0] <= ts:
            open_ends.pop()
        if open_ends and end > open_ends[-1][0]:
            problems.append(
                f"nesting: X events {open_ends[-1][1]} and {k} on pid {pid} tid {tid} overlap without nesting "
                f"([{open_ends[-1][2]}, {open_ends[-1][0]}) and [{ts}, {end}))")
            if len(problems) >= 20:
                break
        open_ends.append((end, k, ts))

if problems:
    print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
    for p in problems:
        print("  " + p, file=sys.stderr)
    sys.exit(1)
print(f"{path}: Trace Event Format ok ({len(events)} events, {len(threads)} threads with complete events)")
'

installed() {
  [ "$(cat "$STAMP" 2>/dev/null)" = "$(wanted_stamp)" ] &&
    (cd "$NODE_DIR" && node --input-type=module -e 'import "mermaid";') 2>/dev/null &&
    "$VENV/bin/python" -c 'import jsonschema' 2>/dev/null
}

cmd_install() {
  if installed; then echo "trace tools already installed in $TOOLS"; return 0; fi
  command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "trace tools need Node.js and npm (the machine's own; none found)" >&2; exit 3; }
  command -v python3 >/dev/null || { echo "trace tools need python3" >&2; exit 3; }
  mkdir -p "$TOOLS"
  rm -f "$STAMP"

  # Mermaid: exactly the locked tree, no install scripts run.
  rm -rf "$NODE_DIR"
  mkdir -p "$NODE_DIR"
  cp "$HERE/trace-tools/package.json" "$HERE/trace-tools/package-lock.json" "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) ||
    { echo "npm ci of mermaid failed" >&2; exit 3; }

  # jsonschema: a venv of our own, rebuilt from scratch.
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # PY_PACKAGES is a list of words
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps $PY_PACKAGES ||
    { echo "pip install of $PY_PACKAGES failed" >&2; exit 3; }

  wanted_stamp >"$STAMP"
  installed || { echo "install finished but mermaid or jsonschema does not load" >&2; exit 3; }
  echo "trace tools installed in $TOOLS"
}

# The cheap form of `installed` for each check (the check itself then loads the tools).
present() {
  [ "$(cat "$STAMP" 2>/dev/null)" = "$(wanted_stamp)" ] &&
    [ -f "$NODE_DIR/node_modules/mermaid/package.json" ] && [ -x "$VENV/bin/python" ]
}

need_installed() {
  present || { echo "trace tools not installed (run: bash packaging/scripts/trace-tools.sh install)" >&2; exit 3; }
}

cmd_check_mermaid() {
  [ $# -eq 1 ] || usage
  need_installed
  local file
  file="$(realpath "$1")"
  (cd "$NODE_DIR" && node --input-type=module -e "$MERMAID_CHECK" "$file")
}

cmd_check_chrome() {
  [ $# -eq 1 ] || usage
  need_installed
  "$VENV/bin/python" -c "$CHROME_CHECK" "$SCHEMA" "$1"
}

usage() { echo "usage: $0 install | check-mermaid FILE | check-chrome FILE" >&2; exit 2; }

case "${1:-}" in
  install) cmd_install ;;
  check-mermaid) shift; cmd_check_mermaid "$@" ;;
  check-chrome) shift; cmd_check_chrome "$@" ;;
  *) usage ;;
esac
