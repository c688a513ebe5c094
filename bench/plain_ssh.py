#!/usr/bin/env python3
"""The plain paramiko-threads design, as a yardstick for hostbatch's client CPU.

Connect, exec, read, print ``HOST: LINE``, nothing else: one process, a thread per host with
at most ``--fanout`` hosts in flight, paramiko's ``SSHClient`` with the fleet's client key
and known_hosts. No inventory, history, masking, worker processes or summary: whatever
hostbatch spends beyond this on the same fleet is its own overhead (issue 10).

Usage: ``plain_ssh.py --hosts FILE --user U --key KEY --known-hosts KH [--fanout 64] CMD``
where FILE holds one ``NAME ADDRESS PORT`` per line. Exit status: 0 when every host ran the
command with exit status 0, else 1.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import paramiko

_print_lock = threading.Lock()


def _write(prefix: bytes, block: bytes) -> None:
    """Print complete lines (``block`` ends in a newline) each behind ``prefix``."""
    text = prefix + block[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
    with _print_lock:
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()


def name_of(address: str, port: int) -> str:
    """The known_hosts name paramiko checks a host's key under."""
    return address if port == 22 else f"[{address}]:{port}"


def run_host(name: str, address: str, port: int, args: argparse.Namespace) -> int:
    """Run the command on one host, printing its stdout lines as they come; its status."""
    client = paramiko.SSHClient()
    entry = name_of(address, port)
    for key_type, key in (args.host_keys.lookup(entry) or {}).items():
        client.get_host_keys().add(entry, key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, port=port, username=args.user, key_filename=args.key,
                       allow_agent=False, look_for_keys=False, timeout=30)
        channel = client.get_transport().open_session()  # type: ignore[union-attr]
        channel.exec_command(args.command)
        channel.shutdown_write()
        prefix, partial = name.encode() + b": ", b""
        while data := channel.recv(65536):
            data = partial + data
            end = data.rfind(b"\n") + 1
            partial = data[end:]
            if end:
                _write(prefix, data[:end])
        if partial:
            _write(prefix, partial + b"\n")
        while data := channel.recv_stderr(65536):
            sys.stderr.buffer.write(data)
        return channel.recv_exit_status()
    except Exception as exc:  # one host's failure is reported, never the whole run's
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 255
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", required=True, help="file of NAME ADDRESS PORT lines")
    parser.add_argument("--user", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--fanout", type=int, default=64)
    parser.add_argument("command")
    args = parser.parse_args(argv)
    # Parsed once: each host parsing the whole file would cost O(hosts^2) key decodings.
    args.host_keys = paramiko.HostKeys(args.known_hosts)
    with open(args.hosts) as handle:
        hosts = [line.split() for line in handle if line.strip()]
    with ThreadPoolExecutor(max_workers=args.fanout) as pool:
        statuses = list(pool.map(lambda h: run_host(h[0], h[1], int(h[2]), args), hosts))
    return 0 if all(status == 0 for status in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
