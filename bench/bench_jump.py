#!/usr/bin/env python3
"""Benchmark ``batch_run`` through one jump host against ``ssh -J``-based peers.

Starts one bastion sshd (127.0.23.1, LogLevel VERBOSE, AllowTcpForwarding yes) and N target
sshd hosts (127.0.24.10 onwards) with ``tests/support/fleet.py``, then runs ``-cmd true`` on
every target through the bastion with each tool, interleaved and rotated per repetition:

* hostbatch: ``batch_run -i hosts.ini -g all -f 64 -cmd true``; every target has
  ``proxy_jump = bastion`` in the inventory, so all share one bastion connection;
* the same with ``--workers 2`` (hidden option): two processes, so two bastion connections;
* pssh: ``parallel-ssh -p 64 -t 0 -x "-F ssh_config"`` and clush: ``clush -f 64 -o "-F
  ssh_config"``, where the generated ssh_config gives the targets ``ProxyJump`` (that is,
  ``ssh -J``: one ssh to the bastion per target).

Per run: wall time, exit status, and the number of authenticated connections the bastion
accepted during the run (its log's ``Accepted publickey`` lines). Medians over the
repetitions go to ``bench/results-jump.md`` with the 1-minute load average seen before each
run (other work may share the machine).

Needs root (binds 127.0.x.y, creates the login user ``hbbench``). Example::

    .venv/bin/python bench/bench_jump.py --hosts 100 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.benchkit import median, rotated  # noqa: E402
from bench.benchkit_proc import BENCH_USER, ensure_bench_user  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

USER = BENCH_USER
FORKS = 64
BIN = Path(sys.executable).parent


@dataclass
class Run:
    tool: str
    rep: int
    wall: float
    status: int
    bastion_auths: int
    load: float


def accepted(log: Path) -> int:
    return log.read_text(errors="replace").count("Accepted publickey") if log.exists() else 0


def write_files(work: Path, bastion: Fleet, targets: Fleet) -> dict[str, Path]:
    """Inventory, host list, ssh_config and combined known_hosts for every tool."""
    b = bastion.hosts[0]
    known = work / "known_hosts"
    known.write_text("".join(h.known_hosts_line + "\n" for h in [*bastion.hosts,
                                                                   *targets.hosts]))
    key = bastion.client_key
    options = [f"User {USER}", f"IdentityFile {key}", f"UserKnownHostsFile {known}",
               "GlobalKnownHostsFile /dev/null", "StrictHostKeyChecking yes", "BatchMode yes",
               "IdentitiesOnly yes", "LogLevel ERROR"]
    ssh_config = work / "ssh_config"
    ssh_config.write_text("\n".join([
        f"Host {b.address}", f"    Port {b.port}", *(f"    {o}" for o in options),
        "Host 127.0.24.*", f"    Port {targets.port}", f"    ProxyJump {b.address}",
        *(f"    {o}" for o in options), ""]))
    lines = ["[defaults]", f"user = {USER}", f"identity_file = {key}", f"known_hosts = {known}",
             "", "[host:bastion]", f"hostname = {b.address}", f"port = {b.port}"]
    for host in targets.hosts:
        lines += ["", f"[host:{host.name}]", f"hostname = {host.address}",
                  f"port = {host.port}", "proxy_jump = bastion"]
    lines += ["", "[group:targets]", "hosts = " + ", ".join(targets.names)]
    inventory = work / "hosts.ini"
    inventory.write_text("\n".join(lines) + "\n")
    inventory.chmod(0o600)
    hostlist = work / "hostlist"
    hostlist.write_text("".join(h.address + "\n" for h in targets.hosts))
    return {"inventory": inventory, "ssh_config": ssh_config, "hostlist": hostlist}


def commands(files: dict[str, Path]) -> dict[str, list[str]]:
    tools = {"hostbatch": [str(BIN / "batch_run"), "-i", str(files["inventory"]), "-F", "none",
                           "-g", "targets", "-f", str(FORKS), "-cmd", "true"]}
    # The same with two worker processes (the hidden --workers), hence two bastion connections:
    # what one process per run costs, or saves.
    tools["hostbatch --workers 2"] = [*tools["hostbatch"][:-2], "--workers", "2", "-cmd", "true"]
    if shutil.which("parallel-ssh"):
        tools["pssh"] = ["parallel-ssh", "-h", str(files["hostlist"]), "-p", str(FORKS), "-t",
                         "0", "-l", USER, "-x", f"-F {files['ssh_config']}", "true"]
    if shutil.which("clush"):
        tools["clush"] = ["clush", "-n", "-S", "--color=never", "-f", str(FORKS), "-l", USER,
                          "-o", f"-F {files['ssh_config']}", "--hostfile",
                          str(files["hostlist"]), "true"]
    return tools


def run_once(tool: str, argv: list[str], rep: int, log: Path, out: Path) -> Run:
    load = os.getloadavg()[0]
    before = accepted(log)
    start = time.monotonic()
    with open(out, "wb") as sink:
        status = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, timeout=600, check=False).returncode
    wall = time.monotonic() - start
    time.sleep(0.5)  # let sshd flush its log lines
    return Run(tool, rep, wall, status, accepted(log) - before, load)


def render(runs: Sequence[Run], hosts: int, repeat: int) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# batch_run through one jump host", "",
        f"{hosts} target sshd hosts behind one bastion sshd, `-cmd true`, fan-out {FORKS}, "
        f"{repeat} repetitions (tool order rotated), {os.cpu_count()} cores, measured {stamp} "
        "by `bench/bench_jump.py`. \"bastion auths\" counts the bastion's `Accepted publickey` "
        "log lines per run. Load is the 1-minute load average before each run: the machine "
        "is shared with other work, and the average also counts the benchmark's own earlier runs "
        "(pssh and clush start 200 ssh processes each).", "",
        "| tool | wall median (s) | wall per run (s) | bastion auths per run | all exit 0 "
        "| load before runs |",
        "|---|---|---|---|---|---|",
    ]
    for tool in dict.fromkeys(run.tool for run in runs):
        mine = [run for run in runs if run.tool == tool]
        walls = [run.wall for run in mine]
        lines.append(
            f"| {tool} | {median(walls):.2f} | "
            f"{', '.join(f'{w:.2f}' for w in walls)} | "
            f"{', '.join(str(run.bastion_auths) for run in mine)} | "
            f"{'yes' if all(run.status == 0 for run in mine) else 'NO'} | "
            f"{', '.join(f'{run.load:.1f}' for run in mine)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / "work" / "jump")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results-jump.md")
    args = parser.parse_args(argv)
    ensure_bench_user()
    work: Path = args.workdir
    (work / "targets").mkdir(parents=True, exist_ok=True)
    bastion = Fleet(work / "bastion", 1, names=["bastion"], first_address="127.0.23.1",
                    user=USER, extra_sshd_config="LogLevel VERBOSE\nAllowTcpForwarding yes")
    for suffix in ("", ".pub"):  # one client key for both fleets
        shutil.copy(f"{bastion.client_key}{suffix}", work / "targets" / f"client_key{suffix}")
    targets = Fleet(work / "targets", args.hosts, first_address="127.0.24.10", user=USER)
    runs: list[Run] = []
    with bastion, targets:
        files = write_files(work, bastion, targets)
        tools = commands(files)
        log = bastion.log_path("bastion")
        for name, argv_ in tools.items():  # warm-up, untimed: page cache, first connections
            run_once(name, argv_, 0, log, work / f"{name.replace(' ', '_')}.out")
        for rep in range(1, args.repeat + 1):
            for name in rotated(list(tools), rep):
                out = work / f"{name.replace(' ', '_')}-{rep}.out"
                run = run_once(name, tools[name], rep, log, out)
                print(f"rep {rep} {name}: {run.wall:.2f}s status {run.status} "
                      f"bastion auths {run.bastion_auths} load {run.load:.1f}", flush=True)
                runs.append(run)
    args.out.write_text(render(runs, args.hosts, args.repeat))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
