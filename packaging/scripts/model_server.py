"""Runs llama.cpp's own OpenAI-compatible HTTP server (through the `xllamacpp` wheel) on one
GGUF model, in the foreground, until SIGTERM or SIGINT. Started by model-server.sh; not a
library.

Why this file exists: the `xllamacpp` CPU wheel is a portable build of llama.cpp (no
AVX-512/AMX; its floor is AVX2+FMA+F16C+BMI2, i.e. x86-64-v3) whose C++ server starts inside a
Python process instead of as a `llama-server` binary, so something has to set its parameters
and keep the process alive. Everything that answers HTTP is llama.cpp's C++ server, not Python.

Exit codes: 0 stopped by a signal, 2 bad arguments (argparse), 5 the model did not load or
the server did not start.
"""

import argparse
import signal
import sys
import threading

# The parameters of the test server. One slot keeps answers deterministic: with more slots,
# concurrent embeddings of the same text differ.
SLOTS = 1
CONTEXT_TOKENS = 2048
HOST = "127.0.0.1"  # loopback only, never another address


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="path of the GGUF file")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--api-key", required=True)
    p.add_argument("--alias", required=True, help="model id served on /v1/models")
    # One thread by default: on a 2-core machine shared with builds, llama.cpp's OpenMP
    # threads spin-wait on each other and 2 threads ran ~10x slower than 1 (measured).
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    try:
        import xllamacpp as xlc
    except ImportError as e:
        print(f"model server: import xllamacpp: {e}", file=sys.stderr)
        return 5
    params = xlc.CommonParams()
    params.model.path = args.model
    params.hostnames = [HOST]
    params.port = args.port
    params.api_keys = [args.api_key]
    params.model_alias = {args.alias}
    params.n_ctx = CONTEXT_TOKENS
    params.n_parallel = SLOTS
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.embedding = True
    params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    print(f"model server: {xlc.get_system_info().strip()}", file=sys.stderr, flush=True)
    try:
        server = xlc.Server(params)
    except Exception as e:  # the binding raises plain exceptions for a failed load or bind
        print(f"model server: start llama.cpp server on {HOST}:{args.port}: {e}",
              file=sys.stderr)
        return 5
    # model-server.sh waits for this exact line: it proves this process bound the port.
    print(f"model server: listening on {server.listening_address}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server  # joins llama.cpp's HTTP and main loops
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
