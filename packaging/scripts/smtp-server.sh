#!/usr/bin/env bash
# smtp-server.sh — install, start and stop a real SMTP server bound to 127.0.0.1 only, for
# runloop-mail's integration tests: aiosmtpd (pure Python, from PyPI; nothing is compiled)
# with its Mailbox handler, which stores every message it accepts as one file in a Maildir.
#
#   smtp-server.sh install     idempotent; venv under $RUNLOOP_SMTP_VENV
#   smtp-server.sh start DIR   serves on a free loopback port, storing messages in the
#                              Maildir DIR (created if missing); prints "pid=<pid> port=<port>"
#                              once the port accepts connections
#   smtp-server.sh stop PID    stops that server by PID (TERM, then KILL)
#
# RUNLOOP_SMTP_REFUSE_RCPT (optional, for failure-path tests): comma-separated addresses the
# server refuses at RCPT TO with "550 5.1.1 mailbox unavailable". The server's log is
# DIR/smtp-server.log unless RUNLOOP_SMTP_LOG names another file.
#
# Exit codes: 0 ok, 2 usage, 3 not installed (or the install failed), 4 server did not
# become ready.
set -euo pipefail

VENV="${RUNLOOP_SMTP_VENV:-$HOME/.cache/runloop/smtp-venv}"
# Exact pins, dependencies included (installed with --no-deps): the set is the stamp.
PACKAGES="aiosmtpd==1.4.6 atpublic==9.0.0 attrs==26.1.0"
STAMP="$VENV/.runloop-smtp-server"
READY_WAIT_S=20
STOP_WAIT_S=5
READY_LINE="smtp server: listening on" # printed by the launcher below once it listens

# The server. Not `python -m aiosmtpd -l 127.0.0.1:PORT`: that needs a free port picked
# beforehand, which another process can take first. Here the kernel picks it (bind to port
# 0) and the launcher reports it only once it listens. Same handler as `-c
# aiosmtpd.handlers.Mailbox DIR`; a fixed host name, because aiosmtpd's default is a
# getfqdn() that can wait on DNS.
LAUNCHER='
import asyncio, signal, socket, sys
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

class Handler(Mailbox):
    def __init__(self, maildir, refused):
        super().__init__(maildir)
        self.refused = refused

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

maildir, refused = sys.argv[1], sys.argv[2]
handler = Handler(maildir, {a.strip().lower() for a in refused.split(",") if a.strip()})
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", 0))
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
server = loop.run_until_complete(
    loop.create_server(lambda: SMTP(handler, hostname="runloop-test-smtp"), sock=sock))
loop.add_signal_handler(signal.SIGTERM, loop.stop)
print("smtp server: listening on 127.0.0.1:%d" % sock.getsockname()[1], flush=True)
loop.run_forever()
'

# Our package set and a server that imports: a venv damaged after install counts as not
# installed, so `install` rebuilds it.
installed() {
  [ "$(cat "$STAMP" 2>/dev/null)" = "$PACKAGES" ] &&
    "$VENV/bin/python" -c 'import aiosmtpd.smtp, aiosmtpd.handlers' 2>/dev/null
}

cmd_install() {
  if installed; then echo "smtp server already installed in $VENV"; return 0; fi
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
  installed || { echo "install finished but aiosmtpd does not import" >&2; exit 3; }
  echo "smtp server installed in $VENV"
}

cmd_start() {
  [ $# -eq 1 ] || usage
  local dir="$1"
  installed || { echo "smtp server not installed (run: $0 install)" >&2; exit 3; }
  # All three subdirectories: Python's mailbox.Maildir creates them only with the root.
  mkdir -p "$dir/tmp" "$dir/new" "$dir/cur"
  # The log lives beside tmp/, new/ and cur/ (Maildir readers ignore other files there), so
  # it goes away with the test's directory.
  local log="${RUNLOOP_SMTP_LOG:-$dir/smtp-server.log}"
  "$VENV/bin/python" -c "$LAUNCHER" "$dir" "${RUNLOOP_SMTP_REFUSE_RCPT:-}" >"$log" 2>&1 </dev/null &
  local pid=$!
  local deadline=$((SECONDS + READY_WAIT_S)) port=""
  while [ $SECONDS -lt $deadline ]; do
    if ! alive "$pid"; then
      local rc=0
      wait "$pid" || rc=$?
      echo "smtp server exited during start-up (exit status $rc); log: $log" >&2
      tail -n 5 "$log" >&2
      exit 4
    fi
    port="$(sed -n "s/^$READY_LINE 127\.0\.0\.1:\([0-9]*\)$/\1/p" "$log")"
    # Our process printed the port it listens on (so it cannot be another server's); check
    # that it accepts, with the venv's python rather than a tool a fresh machine may lack.
    if [ -n "$port" ] && "$VENV/bin/python" -c 'import socket,sys;socket.create_connection(("127.0.0.1",int(sys.argv[1])),timeout=2).close()' \
        "$port" 2>/dev/null; then
      echo "pid=$pid port=$port"; return 0
    fi
    sleep 0.1
  done
  cmd_stop "$pid"
  echo "smtp server not ready after ${READY_WAIT_S}s; log: $log" >&2; exit 4
}

# Running and not a zombie: a server started by `start` is reparented to init, which may
# take a while to reap it after it exits.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]
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
