#!/usr/bin/env bash
# The hostbatch demo: a fleet of 4 real OpenSSH sshd hosts on 127.0.0.10-13, its inventory,
# and batch_run / batch_scp / hostbatch against it. Run as root on Debian; installs what it
# needs first (scripts/setup.sh).
#
#   demo/run.sh          run the demo, then stop the fleet and remove what it created
#   demo/run.sh --keep   run the demo and leave the fleet running, with the three lines that
#                        point your own shell at it (stop it later with demo/fleet.sh stop)
#
# Every command is printed exactly as it runs, so it can be pasted into that shell.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    *) echo "usage: demo/run.sh [--keep]" >&2; exit 2 ;;
  esac
done

demo/fleet.sh start >/dev/null
[ "$keep" = 1 ] || trap 'demo/fleet.sh stop >/dev/null' EXIT
eval "$(demo/fleet.sh env)"
work=$(dirname "$HOSTBATCH_INVENTORY")

# Bold headings only on a terminal, and never with NO_COLOR set.
bold='' plain=''
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' plain=$'\033[0m'; fi

# Each line below is printed (with $work spelled out), then run as printed.
show() {
  local line=${1//\$work/$work}
  printf '\n%s$ %s%s\n' "$bold" "$line" "$plain"
  eval "$line" || echo "(exit status $?)"
}

echo "Demo fleet: 4 OpenSSH sshd hosts on loopback; inventory at $HOSTBATCH_INVENTORY"
printf 'print("hello from hostbatch")\n' > "$work/test.py"
# Each demo host has its own private filesystem at /srv/hostbatch-fleet (a tmpfs per sshd).
while IFS= read -r line <&3; do
  show "$line"
done 3<<'DEMO'
cat "$HOSTBATCH_INVENTORY"
batch_run -g web_clusters,db_servers --list
batch_run -h web01,web02 -g db_servers -cmd 'echo "I am $(echo $SSH_CONNECTION | cut -d" " -f3)"; df -h / | tail -n 1'
batch_run -g all -x 'web0[2-3]' -cmd 'for i in 1 2 3; do echo "tick $i"; sleep 0.3; done; echo "warning on stderr" >&2'
batch_run -g web_clusters --json -cmd 'case "$SSH_CONNECTION" in *" 127.0.0.11 "*) echo "disk almost full" >&2; exit 1;; esac; echo fine'
batch_run -h 'web*' -g nosuchgroup -cmd true
batch_run -g all --timeout 1 -cmd 'sleep 30'
batch_scp -g web_clusters -h db01 -action put -local "$work/test.py" -remote /srv/hostbatch-fleet/ --verify
batch_run -g all -cmd 'ls -l /srv/hostbatch-fleet/ && python3 /srv/hostbatch-fleet/test.py'
batch_scp -g all -action get -remote /srv/hostbatch-fleet/test.py -local "$work/collected"
find "$work/collected" -type f
batch_scp -g db_servers -action put -local "$work/test.py" -remote /srv/hostbatch-fleet/missing/dir/
batch_run -h @failed -cmd 'echo "retrying a host that failed in the last run"'
batch_run -g all -b -cmd 'uname -s; cat /etc/debian_version'
hostbatch history
hostbatch inventory explain web01
hostbatch inventory lint
DEMO

if [ "$keep" = 1 ]; then
  printf '\n%sThe demo fleet is still running.%s Paste these three lines into your shell:\n' "$bold" "$plain"
  demo/fleet.sh env
  echo "then try, e.g.: batch_run -g all -cmd uptime; hostbatch history; batch_run -h @failed -cmd true"
  echo "Stop it, and remove the demo user and $work, with: demo/fleet.sh stop"
fi
