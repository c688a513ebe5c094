#!/usr/bin/env bash
# The demo fleet on its own: four OpenSSH sshd hosts on 127.0.0.10-13 that stay up for you
# to play with from your own shell. Run as root on Debian.
#
#   demo/fleet.sh start   set up (apt, venv), create the demo user, start the fleet, and
#                         print the three lines that point your shell at it
#   demo/fleet.sh env     print those three lines again (eval "$(demo/fleet.sh env)")
#   demo/fleet.sh stop    stop every sshd of the fleet, delete the demo user (and its home)
#                         and the demo directory (inventory, keys, logs, run history)
#
# What it creates: the local user hbdemo (home /home/hbdemo), the directory demo/work, and
# packages and .venv through scripts/setup.sh. HOSTBATCH_DEMO_DIR and HOSTBATCH_DEMO_USER
# change the directory and the user, and HOSTBATCH_DEMO_SETUP=no skips scripts/setup.sh (the
# tests use them to stay apart from a real demo and from the venv they run in).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${HOSTBATCH_DEMO_DIR:-$root/demo/work}
user=${HOSTBATCH_DEMO_USER:-hbdemo}

env_lines() {
  printf 'export PATH="%s/.venv/bin:$PATH"\n' "$root"
  printf 'export HOSTBATCH_INVENTORY="%s/hosts.ini"\n' "$work"
  printf 'export XDG_STATE_HOME="%s/state"   # run history: %s/state/hostbatch/history.db\n' \
    "$work" "$work"
}

running() {
  [ -f "$work/fleet.pid" ] && kill -0 "$(cat "$work/fleet.pid")" 2>/dev/null
}

start() {
  [ "${HOSTBATCH_DEMO_SETUP:-yes}" = no ] || scripts/setup.sh
  if running; then
    echo "fleet.sh: the demo fleet is already running (pid $(cat "$work/fleet.pid"))" >&2
  else
    rm -rf "$work"; mkdir -p "$work"
    # A dedicated login user keeps the demo independent of root's shell start-up files.
    .venv/bin/python -c 'import secrets, sys; from tests.support.fleet import ensure_test_user
ensure_test_user(sys.argv[1], secrets.token_urlsafe(16))' "$user"
    .venv/bin/python -m tests.support.fleet --count 4 --workdir "$work" --user "$user" \
      --private-tmp --names web01,web02,web03,db01 \
      --group web_clusters=web01,web02,web03 --group db_servers=db01 --detach >/dev/null
  fi
  echo "The demo fleet is up: web01-03 and db01 on 127.0.0.10-13 (groups web_clusters,"
  echo "db_servers). Paste these three lines into your shell to use it:"
  env_lines
  echo "Stop it (and remove the user $user and $work) with: demo/fleet.sh stop"
}

stop() {
  if running; then
    local pid waited=0
    pid=$(cat "$work/fleet.pid")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do sleep 0.1; waited=$((waited + 1)); done
    kill -0 "$pid" 2>/dev/null && { echo "fleet.sh: fleet $pid did not stop" >&2; exit 1; }
  fi
  # sshd daemons left behind by a fleet process killed outright: found by their config
  # file, which lives in the demo directory, and ended by pid.
  local left
  left=$(pgrep -f -- "-f $work/[^ ]*/sshd_config" || true)
  [ -z "$left" ] || kill $left 2>/dev/null || true
  if id "$user" >/dev/null 2>&1; then
    userdel -r "$user" 2>/dev/null || userdel "$user"
  fi
  rm -rf "$work"
  echo "The demo fleet is stopped; the user $user and $work are gone."
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) echo "usage: demo/fleet.sh start|stop|env" >&2; exit 2 ;;
esac
