#!/usr/bin/env python3
"""Benchmark the controller's own cost through relays against a direct run.

Starts N target sshd hosts (127.0.34.10 onwards) and two relay sshd hosts (127.0.36.1-2)
with ``tests/support/fleet.py``, then runs ``batch_run -g all -cmd true`` on every target,
interleaved and rotated per repetition:

* direct: the controller connects to every target itself (``--via none``);
* relays: the targets are split across relay1 and relay2 (``via`` in the inventory), each
  relay running ``hostbatch relay --stdio`` with ``relay_forks = 64``.

Per run: wall time, exit status, and the controller's CPU (user + system of the controller
and its worker processes, from ``wait4``): the issue's target is at most 0.5 ms per host
through relays, against about 4-5 ms direct. ``--list`` of the same hosts gives the fixed
start-up cost (interpreter, imports, inventory), so the per-host cost is shown both with and
without it, and ``relays-100`` (the first 100 targets, same inventory) gives the marginal
cost of one more relayed host: (relays - relays-100) / (N - 100). On one machine the relays
share the cores, so the wall time is not the point. The controller runs with its bytecode
compiled first (``compileall``) and ``PYTHONDONTWRITEBYTECODE`` unset, as an installed
package runs: otherwise every run would compile its modules again.

Then ``batch_scp -action put`` of one ``--put-mb`` MiB file to the first ``--put-hosts``
targets, direct and through the relays: the bytes the controller's sockets sent (``ss -ti``
``bytes_sent``, polled while it runs). Target: one copy per relay, not one per host.
Medians go to ``bench/results-relay.md``.

The relays log in as the test user ``hbtest``, who cannot run the venv's interpreter under
/root: their ``relay_command`` runs a Python of the same minor version with the worktree's
``src`` and the venv's site-packages on its path (as tests/integration/test_relay.py does),
and reach the targets with a copy of the client key that user can read.

Needs root (binds 127.0.x.y, creates the test user). Example::

    .venv/bin/python bench/bench_relay.py --hosts 500 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.fleet import Fleet, ensure_test_user  # noqa: E402

USER = "hbtest"
PASSWORD = "pw%#;x"  # the integration suite's password for this user (conftest.TEST_PASSWORD)
BIN = Path(sys.executable).parent


@dataclass
class Run:
    mode: str
    rep: int
    wall: float
    cpu: float
    status: int


def relay_command() -> str:
    """``hostbatch relay --stdio`` as :data:`USER` can run it on this machine."""
    paths = f"{REPO / 'src'}:{sysconfig.get_paths()['purelib']}"
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        probe = subprocess.run(["runuser", "-u", USER, "--", "env", f"PYTHONPATH={paths}",
                                python, "-c", "import paramiko, hostbatch.relay.server"],
                               capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return f"env PYTHONPATH={paths} {python} -m hostbatch relay --stdio"
    raise SystemExit(f"no Python {minor} that {USER} can run hostbatch with")


def write_inventory(work: Path, relays: Fleet, targets: Fleet, key: Path,
                    put_hosts: int) -> Path:
    """Targets alternate between relay1 and relay2; relays are reached with the client key."""
    known = work / "known_hosts"
    known.write_text("".join(h.known_hosts_line + "\n" for f in (relays, targets)
                             for h in f.hosts))
    lines = ["[defaults]", f"user = {USER}", f"known_hosts = {known}",
             f"identity_file = {key}", ""]
    command = relay_command()
    for host in relays.hosts:
        lines += [f"[host:{host.name}]", f"hostname = {host.address}", f"port = {host.port}",
                  f"identity_file = {relays.client_key}", f"relay_command = {command}",
                  "relay_forks = 64", ""]
    for index, host in enumerate(targets.hosts):
        lines += [f"[host:{host.name}]", f"hostname = {host.address}", f"port = {host.port}",
                  f"via = {relays.hosts[index % 2].name}", ""]
    lines += ["[group:targets]", "hosts = " + ", ".join(h.name for h in targets.hosts), ""]
    chosen = ", ".join(h.name for h in targets.hosts[:put_hosts])
    lines += ["[group:puttargets]", f"hosts = {chosen}", ""]
    first = ", ".join(h.name for h in targets.hosts[:100])
    lines += ["[group:first100]", f"hosts = {first}", ""]
    path = work / "hosts.ini"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def run_once(mode: str, inventory: Path, rep: int, hosts: int, work: Path,
             action: Sequence[str] = ("-cmd", "true"), program: str = "batch_run",
             group: str = "targets") -> Run:
    """One timed run; the controller's CPU includes its (waited) worker processes."""
    via = ["--via", "none"] if mode.startswith("direct") else []
    if mode == "list":
        via, action = ["--via", "none"], ("--list",)
    if mode == "relays-100":
        group = "first100"
    argv = [str(BIN / program), "-i", str(inventory), "-g", group, "-f", "64",
            "--no-history", "-q", *via, *action]
    env = {key: value for key, value in os.environ.items()
           if key != "PYTHONDONTWRITEBYTECODE"}
    env["HOME"] = str(work / "home")
    start = time.monotonic()
    with open(work / f"{mode}-{rep}.err", "wb") as err:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(f"  {mode} rep {rep}: exit {proc.returncode}, see {work}/{mode}-{rep}.err")
    return Run(mode, rep, wall, usage.ru_utime + usage.ru_stime, proc.returncode)


class EgressMeter:
    """Bytes the controller's TCP sockets sent, from ``ss -ti`` polled every 20 ms while it
    runs (the largest ``bytes_sent`` seen per socket, summed). Only the last 20 ms of a
    socket's life can be missed, so this is a slight under-count, never an over-count."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> EgressMeter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        owner = f'(("{self.program}",'
        while not self._stop.wait(0.02):
            text = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True,
                                  check=False).stdout
            lines = text.split("\n")
            for head, info in itertools.pairwise(lines):
                if owner not in head:
                    continue
                match = re.search(r"bytes_sent:(\d+)", info)
                if match:
                    key = " ".join(head.split()[3:5])  # State Recv-Q Send-Q Local Peer
                    self.seen[key] = max(self.seen.get(key, 0), int(match[1]))

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def put_runs(work: Path, inventory: Path, relays: Fleet, targets: Fleet, count: int,
             size_mb: int) -> list[str]:
    """The put benchmark: bytes the controller sent, direct and through the relays."""
    source = work / "payload.bin"
    with open(source, "wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(1024 * 1024))
    remote = Path("/tmp/hostbatch-bench-relay")
    remote.mkdir(mode=0o777, exist_ok=True)
    remote.chmod(0o777)
    lines = ["", f"## batch_scp put of {size_mb} MiB to {count} hosts", "",
             "| mode | wall (s) | controller CPU (s) | bytes the controller sent | copies |",
             "|---|---:|---:|---:|---:|"]
    for mode in ("direct put", "put through relays"):
        with EgressMeter("batch_scp") as meter:
            run = run_once(mode, inventory, 1, count, work, program="batch_scp",
                           group="puttargets", action=("-action", "put", "-local",
                                                       str(source), "-remote", f"{remote}/"))
        sent = meter.total
        print(f"{mode}: {run.wall:.2f}s, exit {run.status}, controller sent {sent} bytes")
        lines.append(f"| {mode} | {run.wall:.2f} | {run.cpu:.2f} | {sent:,} | "
                     f"{sent / (size_mb * 1024 * 1024):.2f} |")
    shutil.rmtree(remote, ignore_errors=True)
    return lines


def report(runs: Sequence[Run], hosts: int) -> list[str]:
    lines = [f"# batch_run through 2 relays vs direct ({hosts} hosts, -cmd true)", "",
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the end; medians of "
             f"{max(r.rep for r in runs)} runs (after an untimed warm-up). Controller CPU: "
             "user + system of batch_run and its worker processes.", "",
             "| mode | wall (s) | controller CPU (s) | CPU per host (ms) "
             "| beyond start-up (ms) | exit |",
             "|---|---:|---:|---:|---:|---|"]
    base = statistics.median(r.cpu for r in runs if r.mode == "list")
    medians = {}
    for mode in ("list", "direct", "relays", "relays-100"):
        mine = [r for r in runs if r.mode == mode]
        count = 100 if mode == "relays-100" else hosts
        cpu = medians[mode] = statistics.median(r.cpu for r in mine)
        lines.append(f"| {mode} | {statistics.median(r.wall for r in mine):.2f} | {cpu:.2f} | "
                     f"{cpu / count * 1000:.2f} | {(cpu - base) / count * 1000:.2f} | "
                     f"{','.join(sorted({str(r.status) for r in mine}))} |")
    marginal = (medians["relays"] - medians["relays-100"]) / (hosts - 100) * 1000
    lines += ["", f"Marginal controller CPU per relayed host (relays - relays-100, over "
              f"{hosts - 100} hosts): {marginal:.2f} ms."]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--put-hosts", type=int, default=100)
    parser.add_argument("--put-mb", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / "work" / "relay")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results-relay.md")
    args = parser.parse_args(argv)
    ensure_test_user(USER, PASSWORD)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)
    work: Path = args.workdir
    (work / "targets").mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir(exist_ok=True)
    work.chmod(0o755)
    relays = Fleet(work / "relays", 2, names=["relay1", "relay2"], first_address="127.0.36.1",
                   user=USER, extra_sshd_config="LogLevel VERBOSE")
    for suffix in ("", ".pub"):  # one client key for both fleets
        shutil.copy(f"{relays.client_key}{suffix}", work / "targets" / f"client_key{suffix}")
    key = work / "relay_key"  # the relays' own copy, readable by the relay user
    shutil.copy(relays.client_key, key)
    shutil.chown(key, USER, USER)
    key.chmod(0o600)
    targets = Fleet(work / "targets", args.hosts, first_address="127.0.34.10", user=USER,
                    extra_sshd_config="LogLevel VERBOSE")
    runs: list[Run] = []
    with relays, targets:
        inventory = write_inventory(work, relays, targets, key, max(1, args.put_hosts))
        for mode in ("direct", "relays"):  # warm-up, untimed
            run_once(mode, inventory, 0, args.hosts, work)
        for rep in range(1, args.repeat + 1):
            for mode in (("list", "direct", "relays", "relays-100") if rep % 2
                         else ("relays-100", "relays", "direct", "list")):
                run = run_once(mode, inventory, rep, args.hosts, work)
                print(f"rep {rep} {mode}: {run.wall:.2f}s, controller CPU {run.cpu:.2f}s, "
                      f"exit {run.status}")
                runs.append(run)
        lines = report(runs, args.hosts)
        if args.put_hosts:
            lines += put_runs(work, inventory, relays, targets, min(args.put_hosts, args.hosts),
                              args.put_mb)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
