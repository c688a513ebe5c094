#!/usr/bin/env bash
# Install what hostbatch's demo, tests and benchmark need on Debian, and the package in .venv.
# Idempotent; run as root. Usage: scripts/setup.sh [--test] [--bench]
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0; want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_bench=1; want_test=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

packages=()
command -v python3 >/dev/null || packages+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh >/dev/null || packages+=(openssh-client)
command -v unshare >/dev/null || packages+=(util-linux)
command -v pgrep >/dev/null || packages+=(procps)
if [ "$want_test" = 1 ]; then
  command -v sudo >/dev/null || packages+=(sudo)   # --sudo tests: a test user with a sudo rule
  command -v ip >/dev/null || packages+=(iproute2)   # jump-host tests: loopback up in a namespace
  command -v zsh >/dev/null || packages+=(zsh)   # completion tests run the zsh script
  command -v fish >/dev/null || packages+=(fish)   # ... and the fish one
  command -v rsync >/dev/null || packages+=(rsync)   # batch_scp --sync compared with parallel-rsync
fi
if [ "$want_bench" = 1 ]; then
  command -v parallel-ssh >/dev/null || packages+=(pssh)
  command -v clush >/dev/null || packages+=(clustershell)
  command -v pdsh >/dev/null || packages+=(pdsh)
fi
if [ "${#packages[@]}" -gt 0 ]; then
  echo "setup: installing ${packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${packages[@]}" >/dev/null
fi
mkdir -p /run/sshd

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
extra=""
[ "$want_test" = 1 ] && extra="[test]"
.venv/bin/pip install -q --disable-pip-version-check -e ".$extra" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import hostbatch, paramiko' 
