#!/usr/bin/env bash
# otlp-receiver.sh — install, start and stop a real OTLP receiver bound to 127.0.0.1 only, for
# the kernel's OpenTelemetry tests (kernel/core/tests/otel.rs). No OpenTelemetry Collector or
# Jaeger package installs here, so this is a small receiver on the official OTLP protobuf
# definitions (PyPI `opentelemetry-proto`, with `grpcio` for the gRPC services): gRPC
# TraceService/MetricsService on one port, HTTP `POST /v1/traces` and `/v1/metrics`
# (application/x-protobuf) on another.
#
#   otlp-receiver.sh install     idempotent; venv under $RUNLOOP_OTLP_VENV
#   otlp-receiver.sh start DIR   serves on two free loopback ports; appends every span it
#                                receives as one JSON line to DIR/spans.jsonl and every metric
#                                data point to DIR/metrics.jsonl; prints
#                                "pid=<pid> grpc_port=<port> http_port=<port>" once both accept
#   otlp-receiver.sh stop PID    stops that receiver by PID (TERM, then KILL)
#
# A span line: {"trace_id": hex32, "span_id": hex16, "parent_span_id": hex16 or "", "name",
# "kind", "start_unix_nano", "end_unix_nano", "status_code", "status_message", "attributes":
# {key: value}, "scope", "service", "transport": "grpc"|"http"}.
# A metric line: {"name", "value", "attributes", "transport"}.
#
# Exit codes: 0 ok, 2 usage, 3 not installed (or the install failed), 4 not ready in time.
set -euo pipefail

VENV="${RUNLOOP_OTLP_VENV:-$HOME/.cache/runloop/otlp-venv}"
# Exact pins, dependencies included (installed with --no-deps): the set is the stamp.
PACKAGES="opentelemetry-proto==1.45.2 protobuf==7.36.2 grpcio==1.85.3 typing_extensions==4.16.0"
STAMP="$VENV/.runloop-otlp-receiver"
READY_WAIT_S=20
STOP_WAIT_S=5
READY_LINE="otlp receiver: listening" # printed by the receiver below once both ports listen

RECEIVER='
import json, signal, sys, threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tsvc, trace_service_pb2_grpc as tgrpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as msvc, metrics_service_pb2_grpc as mgrpc

out = sys.argv[1]
lock = threading.Lock()

def value(v):
    which = v.WhichOneof("value")
    if which is None:
        return None
    x = getattr(v, which)
    if which == "array_value":
        return [value(e) for e in x.values]
    if which == "kvlist_value":
        return {kv.key: value(kv.value) for kv in x.values}
    if which == "bytes_value":
        return x.hex()
    return x

def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}

def append(name, lines):
    with lock, open("%s/%s" % (out, name), "a") as f:
        for line in lines:
            f.write(json.dumps(line, sort_keys=True) + "\n")

def spans(request, transport):
    lines = []
    for rs in request.resource_spans:
        service = attrs(rs.resource.attributes).get("service.name", "")
        for ss in rs.scope_spans:
            for s in ss.spans:
                lines.append({
                    "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(), "name": s.name, "kind": s.kind,
                    "start_unix_nano": s.start_time_unix_nano,
                    "end_unix_nano": s.end_time_unix_nano,
                    "status_code": s.status.code, "status_message": s.status.message,
                    "attributes": attrs(s.attributes), "scope": ss.scope.name,
                    "service": service, "transport": transport,
                })
    append("spans.jsonl", lines)

def metrics(request, transport):
    lines = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                data = getattr(m, m.WhichOneof("data"))
                for p in getattr(data, "data_points", []):
                    v = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                    lines.append({"name": m.name, "value": v, "attributes": attrs(p.attributes),
                                  "transport": transport})
    append("metrics.jsonl", lines)

class Traces(tgrpc.TraceServiceServicer):
    def Export(self, request, context):
        spans(request, "grpc")
        return tsvc.ExportTraceServiceResponse()

class Metrics(mgrpc.MetricsServiceServicer):
    def Export(self, request, context):
        metrics(request, "grpc")
        return msvc.ExportMetricsServiceResponse()

class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            spans(tsvc.ExportTraceServiceRequest.FromString(body), "http")
            reply = tsvc.ExportTraceServiceResponse().SerializeToString()
        elif self.path == "/v1/metrics":
            metrics(msvc.ExportMetricsServiceRequest.FromString(body), "http")
            reply = msvc.ExportMetricsServiceResponse().SerializeToString()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
tgrpc.add_TraceServiceServicer_to_server(Traces(), server)
mgrpc.add_MetricsServiceServicer_to_server(Metrics(), server)
grpc_port = server.add_insecure_port("127.0.0.1:0")
server.start()
http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
threading.Thread(target=http.serve_forever, daemon=True).start()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: done.set())
print("otlp receiver: listening grpc 127.0.0.1:%d http 127.0.0.1:%d" % (grpc_port, http.server_address[1]), flush=True)
done.wait()
http.shutdown()
server.stop(1).wait()
'

# Our package set and a receiver that imports: a venv damaged after install counts as not
# installed, so `install` rebuilds it.
installed() {
  [ "$(cat "$STAMP" 2>/dev/null)" = "$PACKAGES" ] &&
    "$VENV/bin/python" -c 'import grpc; from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc; from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc' 2>/dev/null
}

cmd_install() {
  if installed; then echo "otlp receiver already installed in $VENV"; return 0; fi
  if [ -f "$VENV/pyvenv.cfg" ]; then
    rm -rf "$VENV" # an older or broken venv of ours: rebuild it from scratch
  elif [ -n "$(ls -A "$VENV" 2>/dev/null)" ]; then
    echo "$VENV exists and is not a venv; refusing to install over it" >&2; exit 3
  fi
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # PACKAGES is a list of words
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps $PACKAGES ||
    { echo "pip install of $PACKAGES failed" >&2; exit 3; }
  echo "$PACKAGES" >"$STAMP"
  installed || { echo "install finished but the receiver's modules do not import" >&2; exit 3; }
  echo "otlp receiver installed in $VENV"
}

# Running and not a zombie.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
}

accepts() {
  "$VENV/bin/python" -c 'import socket,sys;socket.create_connection(("127.0.0.1",int(sys.argv[1])),timeout=2).close()' "$1" 2>/dev/null
}

cmd_start() {
  [ $# -eq 1 ] || usage
  local dir="$1"
  installed || { echo "otlp receiver not installed (run: $0 install)" >&2; exit 3; }
  mkdir -p "$dir"
  local log="$dir/otlp-receiver.log"
  "$VENV/bin/python" -c "$RECEIVER" "$dir" >"$log" 2>&1 </dev/null &
  local pid=$!
  local deadline=$((SECONDS + READY_WAIT_S)) line grpc_port http_port
  while [ $SECONDS -lt $deadline ]; do
    if ! alive "$pid"; then
      local rc=0
      wait "$pid" || rc=$?
      echo "otlp receiver exited during start-up (exit status $rc); log: $log" >&2
      tail -n 5 "$log" >&2
      exit 4
    fi
    line="$(grep -m1 "^$READY_LINE" "$log" || true)"
    grpc_port="$(sed -n 's/.* grpc 127\.0\.0\.1:\([0-9]*\) .*/\1/p' <<<"$line")"
    http_port="$(sed -n 's/.* http 127\.0\.0\.1:\([0-9]*\)$/\1/p' <<<"$line")"
    if [ -n "$grpc_port" ] && [ -n "$http_port" ] && accepts "$grpc_port" && accepts "$http_port"; then
      echo "pid=$pid grpc_port=$grpc_port http_port=$http_port"; return 0
    fi
    sleep 0.1
  done
  cmd_stop "$pid"
  echo "otlp receiver not ready after ${READY_WAIT_S}s; log: $log" >&2; exit 4
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((STOP_WAIT_S * 10))); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

usage() { echo "usage: $0 install | start DIR | stop PID" >&2; exit 2; }

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) usage ;;
esac
