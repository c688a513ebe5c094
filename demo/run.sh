#!/usr/bin/env bash
# The hostbatch demo: a fleet of 4 real OpenSSH sshd hosts on 127.0.0.x, its inventory, and
# batch_run against its groups. Run as root on Debian; installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
work=demo/work
rm -rf "$work"; mkdir -p "$work"
export PATH="$PWD/.venv/bin:$PATH"

# A dedicated login user keeps the demo independent of root's shell start-up files.
.venv/bin/python -c 'import secrets; from tests.support.fleet import ensure_test_user; ensure_test_user("hbdemo", secrets.token_urlsafe(16))'
.venv/bin/python -m tests.support.fleet --count 4 --workdir "$work" --user hbdemo --private-tmp \
  --names web01,web02,web03,db01 --group web_clusters=web01,web02,web03 --group db_servers=db01 \
  --detach >/dev/null
trap 'kill "$(cat "$work/fleet.pid")" 2>/dev/null || true' EXIT
export HOSTBATCH_INVENTORY="$work/hosts.ini"
export XDG_STATE_HOME="$PWD/$work/state"   # the demo keeps its run history to itself

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@" || echo "(exit status $?)"; }

echo "Demo fleet: 4 OpenSSH sshd hosts on loopback; inventory at $HOSTBATCH_INVENTORY"
show cat "$HOSTBATCH_INVENTORY"
show batch_run -g web_clusters,db_servers --list
show batch_run -h web01,web02 -g db_servers -cmd 'echo "I am $(echo $SSH_CONNECTION | cut -d" " -f3)"; df -h / | tail -n 1'
show batch_run -g all -x 'web0[2-3]' -cmd 'for i in 1 2 3; do echo "tick $i"; sleep 0.3; done; echo "warning on stderr" >&2'
show batch_run -g web_clusters --json -cmd 'case "$SSH_CONNECTION" in *" 127.0.0.11 "*) echo "disk almost full" >&2; exit 1;; esac; echo fine'
show batch_run -h 'web*' -g nosuchgroup -cmd true
show batch_run -g all --timeout 1 -cmd 'sleep 30'

# Each demo host has its own private filesystem at /srv/hostbatch-fleet (a tmpfs per sshd).
printf 'print("hello from hostbatch")\n' > "$work/test.py"
show batch_scp -g web_clusters -h db01 -action put -local "$work/test.py" -remote /srv/hostbatch-fleet/ --verify
show batch_run -g all -cmd 'ls -l /srv/hostbatch-fleet/ && python3 /srv/hostbatch-fleet/test.py'
show batch_scp -g all -action get -remote /srv/hostbatch-fleet/test.py -local "$work/collected"
show find "$work/collected" -type f
show batch_scp -g db_servers -action put -local "$work/test.py" -remote /srv/hostbatch-fleet/missing/dir/
show batch_run -h @failed -cmd 'echo "retrying a host that failed in the last run"'
show batch_run -g all -b -cmd 'uname -s; cat /etc/debian_version'
show hostbatch history
show hostbatch inventory explain web01
show hostbatch inventory lint
