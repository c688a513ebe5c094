#!/usr/bin/env python3
"""Benchmark ``batch_run`` against parallel-ssh (pssh), clush and pdsh on a local sshd fleet.

For each fleet size N this starts N real OpenSSH ``sshd`` hosts on 127.0.0.x (one process,
config and host key each; ``tests/support/fleet.py``), then times every tool on the same hosts
with the same fan-out, interleaving the tools inside each repetition (their order rotates from
one repetition to the next, so no tool always runs right after the same neighbour).

Per run it measures:

* wall time, from spawning the tool until it has been reaped;
* client CPU time: user + system time of the tool and of every descendant it waited for
  (``os.wait4`` on the tool's pid; ssh children of pssh/clush/pdsh and hostbatch's worker
  processes are all waited for, so they are included);
* peak memory: the sum of RSS over the tool's whole process tree, sampled from /proc every
  ``--sample-ms`` (default 20 ms); optionally also the sum of PSS, which does not count pages
  shared between processes (forked workers, shared libraries) more than once;
* server CPU (user + system of every sshd process of the fleet and what they run, through a
  cgroup holding the listeners) and whole-machine busy CPU time, to show what bounds the wall
  time on a box where client and servers share the cores.

Every run is verified: exit status 0, and every host produced exactly the expected output
(line count and bytes per host; pssh's ``-P`` prefixes read chunks rather than lines, so for
pssh the exact byte count per host and one ``[SUCCESS]`` line per host are checked instead).
A run that fails verification is reported as such and never counts towards a median.

hostbatch runs from a copy of ``src/`` taken at the start (``--no-snapshot`` to run the
installed ``batch_run``), so edits made while the benchmark runs cannot mix versions. The
machine may be shared: each run waits for it to be idle, and a run during which other work
used more than ``--noise-limit`` of the CPU is run again.

Needs root (the fleet binds 127.0.0.x and creates the login user ``hbbench``: tools log in as a
plain user, so root's shell start-up files do not distort the numbers).

Example::

    /tmp/venv0/bin/python bench/bench_run.py --hosts 10,100,500 --repeat 3

See bench/README.md for how to read the results.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.benchkit import (  # noqa: E402
    Interrupted,
    Meta,
    Spawned,
    check_hosts_and_tools,
    comma_list,
    first_line,
    fleet_listeners,
    fmt,
    log,
    machine_busy_seconds,
    median,
    package_version,
    raise_interrupted,
    ratio,
    read_bytes,
    report_header,
    stat_fields,
    summary_says_all_ok,
    tail,
    verdict,
    wait_idle,
    wait_quiet,
)
from tests.support.fleet import Fleet, ensure_test_user  # noqa: E402

ALL_TOOLS = ("hostbatch", "plain", "pssh", "clush", "pdsh")
#: The plain paramiko-threads driver (``plain`` in --tools): hostbatch's CPU yardstick.
PLAIN_DRIVER = Path(__file__).resolve().parent / "plain_ssh.py"
PEERS = ("pssh", "clush")
BENCH_USER = "hbbench"
DEFAULT_OUT = REPO / "bench" / "results-run.md"
DEFAULT_WORKDIR = REPO / "bench" / "work"
#: ``seq 1 160000`` prints 1,008,895 bytes (160,000 lines): about 1 MB per host.
BIG_COMMAND = "seq 1 160000"
#: Issue 10's 1 MB: 1,333,336 bytes in 17,544 lines of 76 characters (base64 of zeros).
B64_COMMAND = "head -c 1000000 /dev/zero | base64"
BIG_WORKLOADS = ("1mb", "b64")
#: Key exchange the fleet's servers offer by default (see --kex).
CURVE25519 = "curve25519-sha256,curve25519-sha256@libssh.org"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


# ------------------------------------------------------------------------------ workloads


@dataclass(frozen=True)
class Workload:
    """A command and the exact output every host must produce for it."""

    key: str
    command: str
    lines: int
    content_bytes: int  # bytes per host, newlines excluded

    @property
    def total_bytes(self) -> int:
        return self.content_bytes + self.lines

    def describe(self) -> str:
        if not self.lines:
            return f"`{self.command}` (no output)"
        return (f"`{self.command}` ({self.total_bytes:,} bytes, {self.lines:,} lines "
                "per host)")


def make_workload(key: str, command: str) -> Workload:
    """Run ``command`` locally once to learn the output every host must reproduce."""
    proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, check=True)
    data = proc.stdout
    lines = data.count(b"\n")
    if data and not data.endswith(b"\n"):
        raise SystemExit(f"workload {command!r} must end its output with a newline")
    return Workload(key, command, lines, len(data) - lines)


# ------------------------------------------------------------------------- /proc helpers





class CpuAccounting:
    """CPU time of a set of processes and of everything they ever fork, through a cgroup.

    sshd does not roll its session processes' CPU up into the listener's ``cutime`` (the
    per-connection processes are not all waited for by their parents), so server CPU is
    measured by moving the fleet's listeners into a cpuacct cgroup (v1) or a cgroup v2 group:
    their children inherit it and are charged while they run. When neither can be created
    (no permission, no controller) the server CPU is reported as n/a.
    """

    _CANDIDATES = (("/sys/fs/cgroup/cpuacct", "cpuacct.usage"),
                   ("/sys/fs/cgroup/unified", "cpu.stat"),
                   ("/sys/fs/cgroup", "cpu.stat"))

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        self.counter = ""
        for root, counter in self._CANDIDATES:
            base = Path(root)
            if not (base / "cgroup.procs").exists() or not (base / counter).exists():
                continue
            path = base / name
            try:
                path.mkdir(exist_ok=True)
            except OSError:
                continue
            if (path / counter).exists():
                self.path, self.counter = path, counter
                return
            with contextlib.suppress(OSError):
                path.rmdir()

    def add(self, pids: Sequence[int]) -> bool:
        """Move ``pids`` in; False (and accounting off) if the kernel refuses."""
        if self.path is None:
            return False
        try:
            for pid in pids:
                (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except OSError:
            self.close()
            return False
        return True

    def seconds(self) -> float:
        """CPU seconds used so far by every process that was ever in the group (NaN if off)."""
        if self.path is None:
            return float("nan")
        data = (self.path / self.counter).read_text()
        if self.counter == "cpuacct.usage":
            return int(data) / 1e9
        match = re.search(r"^usage_usec (\d+)", data, re.M)
        return int(match.group(1)) / 1e6 if match else float("nan")

    def close(self) -> None:
        """Move any process left back to the root group and remove the group."""
        if self.path is None:
            return
        path, self.path = self.path, None
        with contextlib.suppress(OSError):
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (path.parent / "cgroup.procs").write_text(f"{pid}\n")
            path.rmdir()


class TreeSampler:
    """Samples the summed RSS (and PSS) of a process tree from /proc on a background thread.

    Cheap enough to run beside the measured tool on two cores (well under 1 ms of CPU per
    sample): the tree is maintained incrementally, reading a process's parent once, when its
    pid first shows up in /proc (a pid cannot be reused within one sampling interval), so a
    sample lists /proc and reads ``statm`` of the tree's members only. PSS needs
    ``smaps_rollup``, which costs more, so it is read only when the RSS sum reaches a new peak
    and on every ``pss_every``-th sample.
    """

    def __init__(self, root: int, interval: float, *, pss: bool, pss_every: int = 10) -> None:
        self.root = root
        self.interval = interval
        self.pss = pss
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.samples = 0
        self.cpu_seconds = 0.0  # the sampler's own CPU time, for transparency
        self._seen: set[int] = set()
        self._members: set[int] = {root}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        started = time.thread_time()
        try:
            while True:
                self.sample()
                if self._stop.wait(self.interval):
                    return
        finally:
            self.cpu_seconds = time.thread_time() - started

    def _update_members(self) -> None:
        live = {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}
        self._seen &= live
        self._members &= live
        orphans: list[tuple[int, int]] = []
        for pid in sorted(live - self._seen):
            self._seen.add(pid)
            fields = stat_fields(pid)
            if fields is None or len(fields) < 2:
                continue
            ppid = int(fields[1])
            if ppid in self._members:
                self._members.add(pid)
            else:
                orphans.append((pid, ppid))
        changed = True
        while changed:  # a child listed before its parent (pid numbers wrapped around)
            changed = False
            for pid, ppid in orphans:
                if ppid in self._members and pid not in self._members:
                    self._members.add(pid)
                    changed = True

    def sample(self) -> None:
        self._update_members()
        rss = 0
        for pid in self._members:
            statm = read_bytes(f"/proc/{pid}/statm")
            if statm is not None:
                rss += int(statm.split()[1]) * PAGE_SIZE
        if self.pss and (rss > self.peak_rss or self.samples % self.pss_every == 0):
            pss = 0
            for pid in self._members:
                rollup = read_bytes(f"/proc/{pid}/smaps_rollup") or b""
                match = re.search(rb"^Pss:\s+(\d+) kB", rollup, re.M)
                pss += int(match.group(1)) * 1024 if match else 0
            self.peak_pss = max(self.peak_pss, pss)
        self.samples += 1
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_procs = max(self.peak_procs, len(self._members))


# -------------------------------------------------------------------------------- tools


@dataclass
class Target:
    """One started fleet, as every tool needs to see it."""

    fleet: Fleet
    inventory: Path
    hostfile: Path
    out: Path
    err: Path
    listeners: list[int]
    server_cpu: CpuAccounting

    @property
    def count(self) -> int:
        return len(self.fleet.names)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problem: str = ""


class Tool:
    """How to run one tool, and how to check that every host really did its work."""

    name = ""
    label_by_address = True

    def __init__(self, fanout: int) -> None:
        self.fanout = fanout

    def argv(self, target: Target, command: str) -> list[str]:
        raise NotImplementedError

    def env(self, target: Target) -> dict[str, str]:
        return {}

    def version(self) -> str:
        raise NotImplementedError

    def labels(self, target: Target) -> list[bytes]:
        names = target.fleet.addresses if self.label_by_address else target.fleet.names
        return [name.encode() for name in names]

    def verify(self, target: Target, workload: Workload, status: int) -> Verdict:
        if status != 0:
            return Verdict(False, f"exit status {status}: {tail(target.err)}")
        lines, content, stray = count_prefixed_lines(target.out, self.labels(target))
        problem = compare_counts(lines, content, stray, workload, exact_lines=True)
        if problem:
            return Verdict(False, problem)
        return self.verify_stderr(target)

    def verify_stderr(self, target: Target) -> Verdict:
        text = target.err.read_bytes().strip()
        return Verdict(not text, f"unexpected stderr: {tail(target.err)}" if text else "")




class Hostbatch(Tool):
    name = "hostbatch"
    label_by_address = False

    def __init__(self, fanout: int, program: str, name: str = "hostbatch") -> None:
        super().__init__(fanout)
        self.program = program
        self.name = name

    def argv(self, target: Target, command: str) -> list[str]:
        return [self.program, "-i", str(target.inventory), "-g", "all", "-f", str(self.fanout),
                "-cmd", command]

    def env(self, target: Target) -> dict[str, str]:
        # A history database of this tool's own (history stays on, as by default), made by
        # the version measured, instead of the shared one in the caller's HOME.
        state = target.fleet.workdir / f"state-{self.name}"
        if not state.exists():
            state.mkdir(parents=True)
        return {"NO_COLOR": "1", "XDG_STATE_HOME": str(state)}

    def version(self) -> str:
        paramiko = package_version("paramiko")
        return f"{first_line([self.program, '--version'])} (paramiko {paramiko})"

    def verify_stderr(self, target: Target) -> Verdict:
        if not summary_says_all_ok(target.err.read_bytes(), target.count):
            return Verdict(False, f"summary does not say all {target.count} ok: "
                           f"{tail(target.err)}")
        return Verdict(True)


class Plain(Tool):
    """``bench/plain_ssh.py``: connect, exec, read, print ``HOST: LINE``, nothing else."""

    name = "plain"
    label_by_address = False

    def argv(self, target: Target, command: str) -> list[str]:
        hosts = target.fleet.workdir / "plain-hosts"
        hosts.write_text("".join(f"{h.name} {h.address} {h.port}\n"
                                 for h in target.fleet.hosts))
        fleet = target.fleet
        return [sys.executable, str(PLAIN_DRIVER), "--hosts", str(hosts), "--user", fleet.user,
                "--key", str(fleet.client_key), "--known-hosts", str(fleet.known_hosts),
                "--fanout", str(self.fanout), command]

    def version(self) -> str:
        return f"bench/plain_ssh.py (paramiko {package_version('paramiko')}, one process, " \
               "a thread per host)"


class Pssh(Tool):
    name = "pssh"
    _status = re.compile(rb"^\[\d+\] \d\d:\d\d:\d\d \[(SUCCESS|FAILURE)\] (\S+)")

    def argv(self, target: Target, command: str) -> list[str]:
        return ["parallel-ssh", "-h", str(target.hostfile), "-p", str(self.fanout), "-t", "0",
                "-P", "-l", target.fleet.user, "-x", f"-F {target.fleet.ssh_config}", command]

    def version(self) -> str:
        return "parallel-ssh " + first_line(["parallel-ssh", "--version"])

    def verify(self, target: Target, workload: Workload, status: int) -> Verdict:
        """``-P`` writes ``HOST: `` + each chunk read (a newline added if the chunk did not end
        with one), so chunks may split lines: count bytes per host, not lines."""
        if status != 0:
            return Verdict(False, f"exit status {status}: {tail(target.err)}")
        labels = set(self.labels(target))
        content = dict.fromkeys(labels, 0)
        lines = dict.fromkeys(labels, 0)
        succeeded: set[bytes] = set()
        current: bytes | None = None
        stray = 0
        with open(target.out, "rb") as handle:
            for line in handle:
                if line.startswith(b"["):
                    match = self._status.match(line)
                    if match and match.group(1) == b"SUCCESS":
                        succeeded.add(match.group(2))
                        continue
                label, sep, rest = line.partition(b": ")
                if sep and label in labels:
                    current = label
                elif current is not None:
                    rest = line
                else:
                    stray += 1
                    continue
                content[current] += len(rest.rstrip(b"\n"))
                lines[current] += 1
        missing = labels - succeeded
        if missing:
            return Verdict(False, f"{len(missing)} hosts without [SUCCESS], e.g. "
                           f"{sorted(missing)[0].decode()}")
        problem = compare_counts(lines, content, stray, workload, exact_lines=False)
        return Verdict(not problem, problem)

    def verify_stderr(self, target: Target) -> Verdict:
        return Verdict(True)


class Clush(Tool):
    name = "clush"

    def argv(self, target: Target, command: str) -> list[str]:
        return ["clush", "-n", "-S", "--color=never", "-f", str(self.fanout),
                "-l", target.fleet.user, "-o", f"-F {target.fleet.ssh_config}",
                "--hostfile", str(target.hostfile), command]

    def version(self) -> str:
        return first_line(["clush", "--version"])


class Pdsh(Tool):
    name = "pdsh"

    def argv(self, target: Target, command: str) -> list[str]:
        return ["pdsh", "-S", "-R", "ssh", "-f", str(self.fanout), "-l", target.fleet.user,
                "-w", f"^{target.hostfile}", command]

    def env(self, target: Target) -> dict[str, str]:
        return {"PDSH_SSH_ARGS_APPEND": f"-F {target.fleet.ssh_config}"}

    def version(self) -> str:
        return first_line(["pdsh", "-V"], r"pdsh-")


def count_prefixed_lines(path: Path, labels: Sequence[bytes]
                         ) -> tuple[dict[bytes, int], dict[bytes, int], int]:
    """Lines and content bytes (prefix and newline excluded) per ``LABEL: `` prefix."""
    lines = dict.fromkeys(labels, 0)
    sizes = dict.fromkeys(labels, 0)
    stray = 0
    with open(path, "rb") as handle:
        for line in handle:
            label, sep, _ = line.partition(b": ")
            if sep and label in lines:
                lines[label] += 1
                sizes[label] += len(line)
            else:
                stray += 1
    content = {label: sizes[label] - lines[label] * (len(label) + 3) for label in labels}
    return lines, content, stray


def compare_counts(lines: dict[bytes, int], content: dict[bytes, int], stray: int,
                   workload: Workload, *, exact_lines: bool) -> str:
    """A problem description, or "" when every host printed exactly the workload's output."""
    if stray:
        return f"{stray} output lines without a known host prefix"
    wrong = [label for label in lines if content[label] != workload.content_bytes
             or (lines[label] != workload.lines if exact_lines else
                 lines[label] < workload.lines)]
    if wrong:
        label = wrong[0]
        return (f"{len(wrong)} of {len(lines)} hosts with wrong output, e.g. {label.decode()}: "
                f"{lines[label]} lines / {content[label]} bytes, expected {workload.lines} / "
                f"{workload.content_bytes}")
    return ""


# --------------------------------------------------------------------------------- runs


@dataclass
class RunResult:
    hosts: int
    workload: str
    tool: str
    rep: int
    ok: bool
    problem: str
    status: int
    wall: float
    cpu_user: float
    cpu_sys: float
    peak_rss: int
    peak_pss: int
    max_rss_single: int
    peak_procs: int
    server_cpu: float
    machine_busy: float
    samples: int
    sampler_cpu: float
    nproc: int = 0
    #: Other work used more than --noise-limit of the machine during the run.
    noisy: bool = False
    #: Noisy, so run again: left out of the medians (the repeat counts instead).
    redone: bool = False

    @property
    def noise(self) -> float:
        """Share of the machine's CPU capacity used by other work during the run."""
        capacity = (self.nproc or os.cpu_count() or 1) * self.wall
        return self.other_cpu / capacity if capacity > 0 else 0.0

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    @property
    def other_cpu(self) -> float:
        """Machine CPU during the run used by neither the tool, the servers nor the sampler:
        other work on the machine (noise)."""
        return max(0.0, self.machine_busy - self.cpu - self.server_cpu - self.sampler_cpu)





def run_once(tool: Tool, target: Target, workload: Workload, rep: int, *,
             timeout: float, sample_interval: float, pss: bool,
             idle_wait: float = 0.0) -> RunResult:
    """Run ``tool`` once and measure it; the tool's process group is killed on any exit."""
    env = {**os.environ, **tool.env(target)}
    argv = tool.argv(target, workload.command)
    wait_quiet(target.listeners, settle=0.2)
    if idle_wait > 0:
        wait_idle(idle_wait)
    server_before = target.server_cpu.seconds()
    busy_before = machine_busy_seconds()
    with Spawned(argv, env, target.out, target.err, timeout) as tool_process:
        sampler = TreeSampler(tool_process.pid, sample_interval, pss=pss).start()
        try:
            reaped = tool_process.reap()
        finally:
            sampler.stop()
    status, wall, usage = reaped.status, reaped.wall, reaped.usage
    busy = machine_busy_seconds() - busy_before
    wait_quiet(target.listeners, settle=0.2)
    server = target.server_cpu.seconds() - server_before
    if wall >= timeout:
        verdict = Verdict(False, f"killed after the {timeout:g}s timeout")
    else:
        verdict = tool.verify(target, workload, status)
    return RunResult(
        hosts=target.count, workload=workload.key, tool=tool.name, rep=rep, ok=verdict.ok,
        problem=verdict.problem, status=status, wall=wall, cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime, peak_rss=sampler.peak_rss, peak_pss=sampler.peak_pss,
        max_rss_single=usage.ru_maxrss * 1024, peak_procs=sampler.peak_procs,
        server_cpu=server, machine_busy=busy, samples=sampler.samples,
        sampler_cpu=sampler.cpu_seconds, nproc=os.cpu_count() or 1,
    )



@contextlib.contextmanager
def started_fleet(count: int, workdir: Path, kex: str) -> Iterator[Target]:
    """A running fleet of ``count`` hosts with its inventory and host list; always stopped."""
    directory = workdir / f"fleet-{count}"
    extra = "" if kex == "default" else f"KexAlgorithms {kex}"
    fleet = Fleet(directory, count, user=BENCH_USER, extra_sshd_config=extra)
    accounting = CpuAccounting(f"hostbatch-bench-{os.getpid()}-{count}")
    try:
        fleet.start(timeout=max(60.0, count * 0.3))
        inventory = fleet.write_inventory(directory / "hosts.ini")
        hostfile = directory / "hostlist"
        hostfile.write_text("".join(f"{address}\n" for address in fleet.addresses))
        listeners = fleet_listeners(fleet)
        accounting.add(listeners)
        yield Target(fleet, inventory, hostfile, directory / "stdout.txt",
                     directory / "stderr.txt", listeners, accounting)
    finally:
        fleet.stop()
        accounting.close()


# ------------------------------------------------------------------------------ results



@dataclass
class Cell:
    """The median of one (hosts, workload, tool) over its valid runs."""

    hosts: int
    workload: str
    tool: str
    runs: int
    valid: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    peak_rss: float
    peak_pss: float
    server_cpu: float
    machine_busy: float
    other_cpu: float
    problems: list[str] = field(default_factory=list)
    noisy: int = 0

    @property
    def cpu_ms_per_host(self) -> float:
        return self.cpu * 1000 / self.hosts


def summarize(results: Sequence[RunResult]) -> list[Cell]:
    keys: dict[tuple[int, str, str], list[RunResult]] = {}
    for result in results:
        if not result.redone:
            keys.setdefault((result.hosts, result.workload, result.tool), []).append(result)
    cells = []
    for (hosts, workload, tool), runs in keys.items():
        valid = [r for r in runs if r.ok]
        walls = [r.wall for r in valid]
        cells.append(Cell(
            hosts, workload, tool, len(runs), len(valid), median(walls),
            min(walls, default=float("nan")), max(walls, default=float("nan")),
            median([r.cpu for r in valid]), median([r.peak_rss for r in valid]),
            median([r.peak_pss for r in valid]), median([r.server_cpu for r in valid]),
            median([r.machine_busy for r in valid]), median([r.other_cpu for r in valid]),
            [f"rep {r.rep + 1}: {r.problem}" for r in runs if not r.ok],
            sum(1 for r in valid if r.noisy)))
    return cells




def best_peer(cells: Sequence[Cell], hosts: int, workload: str, attr: str) -> Cell | None:
    """The pssh/clush cell with the lowest ``attr`` for this (hosts, workload)."""
    peers = [c for c in cells if c.hosts == hosts and c.workload == workload
             and c.tool in PEERS and c.valid and getattr(c, attr) == getattr(c, attr)]
    return min(peers, key=lambda c: float(getattr(c, attr)), default=None)


def find(cells: Sequence[Cell], hosts: int, workload: str, tool: str) -> Cell | None:
    for cell in cells:
        if (cell.hosts, cell.workload, cell.tool) == (hosts, workload, tool) and cell.valid:
            return cell
    return None


def targets(cells: Sequence[Cell]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for the issue's targets, from this run only."""
    rows: list[tuple[str, str, str]] = []

    hb = find(cells, 500, "true", "hostbatch")
    peer = best_peer(cells, 500, "true", "wall")
    if hb and peer:
        ratio = hb.wall / peer.wall
        rows.append(("500 hosts `true`: wall <= 0.7x the faster of pssh and clush",
                     f"{hb.wall:.2f} s vs {peer.tool} {peer.wall:.2f} s = {ratio:.2f}x",
                     verdict(ratio <= 0.7)))
    else:
        rows.append(("500 hosts `true`: wall <= 0.7x the faster of pssh and clush", "n/a",
                     verdict(None)))
    if hb:
        rows.append(("500 hosts `true`: client CPU <= 5 ms per host",
                     f"{hb.cpu_ms_per_host:.1f} ms per host ({hb.cpu:.2f} s)",
                     verdict(hb.cpu_ms_per_host <= 5.0)))
    else:
        rows.append(("500 hosts `true`: client CPU <= 5 ms per host", "n/a", verdict(None)))
    hb_big = find(cells, 100, "1mb", "hostbatch")
    pssh_big = find(cells, 100, "1mb", "pssh")
    label = "100 hosts, 1 MB output each: wall <= 0.6x pssh"
    if hb_big and pssh_big:
        ratio = hb_big.wall / pssh_big.wall
        rows.append((label, f"{hb_big.wall:.2f} s vs pssh {pssh_big.wall:.2f} s = {ratio:.2f}x",
                     verdict(ratio <= 0.6)))
    else:
        rows.append((label, "n/a", verdict(None)))
    rows += issue10_targets(cells)
    mem_cells = [c for c in cells if c.hosts == 500 and c.tool == "hostbatch" and c.valid]
    if mem_cells:
        worst = max(mem_cells, key=lambda c: c.peak_rss)
        text = f"{worst.peak_rss / MB:.0f} MB summed RSS (`{worst.workload}`)"
        if worst.peak_pss:
            text += f"; {worst.peak_pss / MB:.0f} MB summed PSS"
        rows.append(("500 hosts: peak memory < 150 MB", text, verdict(worst.peak_rss < 150 * MB)))
    else:
        rows.append(("500 hosts: peak memory < 150 MB", "n/a", verdict(None)))
    return rows


def issue10_targets(cells: Sequence[Cell]) -> list[tuple[str, str, str]]:
    """Issue 10's rows: client CPU against the plain driver at 100 hosts, PSS at 500 hosts,
    for each output-heavy workload that was run."""
    rows: list[tuple[str, str, str]] = []
    for workload in BIG_WORKLOADS:
        hb, plain = find(cells, 100, workload, "hostbatch"), find(cells, 100, workload, "plain")
        if hb and plain:
            share = hb.cpu / plain.cpu
            rows.append((f"100 hosts `{workload}`: client CPU <= 1.15x the plain driver",
                         f"{hb.cpu:.2f} s vs {plain.cpu:.2f} s = {share:.2f}x",
                         verdict(share <= 1.15)))
        big = find(cells, 500, workload, "hostbatch")
        if big and big.peak_pss:
            rows.append((f"500 hosts `{workload}`: peak PSS of the process tree < 150 MB",
                         f"{big.peak_pss / MB:.0f} MB", verdict(big.peak_pss < 150 * MB)))
    return rows


def source_revision() -> str:
    """The repository's commit, marked when ``src/`` has uncommitted changes."""
    head = first_line(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"])
    try:
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        dirty = ""
    return f"commit {head}" + (" (with uncommitted changes in src/)" if dirty.strip() else "")


def collect_meta(args: argparse.Namespace, tools: Sequence[Tool],
                 workloads: dict[str, Workload]) -> Meta:
    cpu_model = "unknown CPU"
    for line in (read_bytes("/proc/cpuinfo") or b"").decode(errors="replace").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    match = re.search(rb"MemTotal:\s+(\d+) kB", read_bytes("/proc/meminfo") or b"")
    if match:
        mem_kb = int(match.group(1))
    machine = (f"nproc {os.cpu_count()} ({cpu_model}), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
               f"Linux {platform.release()}, {platform.python_implementation()} "
               f"{platform.python_version()}")
    sshd = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "sshd"
    software = [f"server: {first_line([sshd, '-V'], 'OpenSSH')} (`sshd -D`, one per host)",
                f"client ssh (used by pssh, clush, pdsh): {first_line(['ssh', '-V'])}"]
    software += [f"{tool.name}: {tool.version()}" for tool in tools]
    source = f"hostbatch source: {source_revision()}"
    if getattr(args, "source_digest", None) and args.source == "head":
        head = first_line(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"])
        source = (f"hostbatch source: commit {head}, exactly (src/ from `git archive HEAD`, "
                  f"sha256 of its *.py: {args.source_digest})")
    elif getattr(args, "source_digest", None):
        source += (f"; measured from a copy of src/ taken at the start (sha256 of its *.py: "
                   f"{args.source_digest})")
    elif args.batch_run:
        source = f"hostbatch: `{args.batch_run}` (given with --batch-run)"
    software.append(source)
    kex = ("OpenSSH defaults (sntrup761x25519-sha512 for the ssh-based tools)"
           if args.kex == "default" else args.kex)
    settings = [
        f"fan-out {args.fanout} for every tool (`batch_run -f`, `parallel-ssh -p`, `clush -f`, "
        "`pdsh -f`); login user `hbbench` (plain user, key auth, known_hosts pre-filled)",
        f"servers offer key exchange: {kex}",
        f"repetitions: {args.repeat} per cell, tools interleaved in each repetition with the "
        "order rotated; one untimed warm-up run per tool per fleet" if args.warmup else
        f"repetitions: {args.repeat} per cell, tools interleaved, order rotated",
        f"memory sampled every {args.sample_ms:g} ms from /proc over the tool's process tree "
        "(RSS every sample; PSS at every new RSS peak and every 10th sample)" if args.pss else
        f"memory sampled every {args.sample_ms:g} ms from /proc over the tool's process tree",
        "workloads: " + "; ".join(f"{w.key} = {w.describe()}" for w in workloads.values()),
        f"noise control (the machine is shared): before each run, wait up to {args.idle_wait:g} s "
        f"for it to be idle; a run during which other processes used more than "
        f"{args.noise_limit:.0%} of its CPU is run again (at most {args.noise_retries} times; "
        "redone runs are listed but left out of the medians; runs longer than "
        f"{args.redo_max_wall:g} s are not redone)",
    ]
    return Meta(datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                " ".join(["python", "bench/bench_run.py", *sys.argv[1:]]), machine, software,
                settings, [])


def speed_gauge(cells: Sequence[Cell]) -> list[str]:
    """Server CPU per `true` connection: the same sshd work for every tool, so it gauges how
    fast the machine was during the run (contention from other work inflates all CPU times)."""
    per_fleet = []
    for hosts in sorted({c.hosts for c in cells}):
        values = [c.server_cpu / hosts for c in cells
                  if c.hosts == hosts and c.workload == "true" and c.valid
                  and c.server_cpu == c.server_cpu]
        if values:
            per_fleet.append(f"{median(values) * 1000:.1f} ms at {hosts} hosts")
    if not per_fleet:
        return []
    return ["Machine speed gauge: sshd CPU per `true` connection (median over the tools) was "
            + ", ".join(per_fleet) + ". It is the same work whatever the client, so when it "
            "is higher than usual (about 14 ms on a quiet 2-core machine of this kind) every "
            "CPU time in this run is inflated by contention, client CPU included."]


def _run_state(run: RunResult) -> str:
    if not run.ok:
        return "FAILED"
    if run.redone:
        return f"noisy ({run.noise:.0%}), redone"
    return f"yes, noisy ({run.noise:.0%})" if run.noisy else "yes"


def before_after(cells: Sequence[Any]) -> list[str]:
    """With ``--baseline REV``: hostbatch now against hostbatch at REV, cell by cell."""
    base = {(c.hosts, c.workload): c for c in cells if c.tool.startswith("hostbatch@")}
    if not base:
        return []
    out = ["", "## Before / after (same run)", "",
           "| hosts | workload | baseline | wall now / before | CPU now / before "
           "| PSS now / before |", "|---|---|---|---|---|---|"]
    for c in cells:
        before = base.get((c.hosts, c.workload))
        if c.tool != "hostbatch" or before is None:
            continue
        out.append(f"| {c.hosts} | {c.workload} | {before.tool} | {ratio(c.wall, before.wall)} "
                   f"| {ratio(c.cpu, before.cpu)} | {ratio(c.peak_pss, before.peak_pss)} |")
    return out


def render(results: Sequence[RunResult], meta: Meta, workloads: dict[str, Workload]) -> str:
    cells = summarize(results)
    order = {name: index for index, name in enumerate(ALL_TOOLS)}
    cells.sort(key=lambda c: (c.hosts, list(workloads).index(c.workload)
                              if c.workload in workloads else 99, order.get(c.tool, 99)))
    out = report_header("batch_run benchmark: hostbatch vs pssh, clush, pdsh", meta)
    out += ["Medians over the valid runs. *vs best peer*: this tool's median divided by the "
            "faster (for wall) or thriftier (for CPU) of pssh and clush in the same cell. Client "
            "CPU includes every process the tool waited for (ssh children, hostbatch's workers); "
            "server CPU is what the sshd connections on the same cores cost; machine busy is the "
            "whole machine's CPU time during the run (at most nproc x wall); other CPU is the "
            "part of it used by none of those (other work on the machine: noise).", ""]
    header = ("| hosts | workload | tool | wall s | (min-max) | vs best peer | client CPU s "
              "| CPU ms/host | CPU vs best peer | peak RSS MB | peak PSS MB | server CPU s "
              "| machine busy s | other CPU s | valid |")
    out += [header, "|" + "|".join(["---"] * (header.count("|") - 1)) + "|"]
    for c in cells:
        wall_peer = best_peer(cells, c.hosts, c.workload, "wall")
        cpu_peer = best_peer(cells, c.hosts, c.workload, "cpu")
        name = f"**{c.tool}**" if c.tool == "hostbatch" else c.tool
        out.append(
            f"| {c.hosts} | {c.workload} | {name} "
            f"| {fmt(c.wall, '.2f')} | ({fmt(c.wall_min, '.2f')}-{fmt(c.wall_max, '.2f')}) "
            f"| {ratio(c.wall, wall_peer.wall if wall_peer else None)} | {fmt(c.cpu, '.2f')} "
            f"| {fmt(c.cpu_ms_per_host, '.1f')} "
            f"| {ratio(c.cpu, cpu_peer.cpu if cpu_peer else None)} "
            f"| {fmt(c.peak_rss / MB, '.0f')} "
            f"| {fmt(c.peak_pss / MB, '.0f') if c.peak_pss else 'n/a'} "
            f"| {fmt(c.server_cpu, '.2f')} | {fmt(c.machine_busy, '.2f')} "
            f"| {fmt(c.other_cpu, '.2f')} | {c.valid}/{c.runs}"
            f"{f' ({c.noisy} noisy)' if c.noisy else ''} |")
    out += ["", "## Targets (issues 2 and 10), from this run", "",
            "| target | measured | verdict |", "|---|---|---|"]
    out += [f"| {t} | {m} | {v} |" for t, m, v in targets(cells)]
    out += before_after(cells)
    failures = [(c, p) for c in cells for p in c.problems]
    if failures:
        out += ["", "## Runs that failed verification (excluded from the medians)", ""]
        out += [f"- {c.hosts} hosts, {c.workload}, {c.tool}: {p}" for c, p in failures]
    notes = [*meta.notes, *speed_gauge(cells)]
    if notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    out += ["", "## Every run", "", "<details><summary>per-run figures</summary>", "",
            "| hosts | workload | rep | tool | ok | wall s | user s | sys s | peak RSS MB "
            "| peak PSS MB | largest process MB | procs | server CPU s | busy s | other CPU s "
            "| samples | sampler CPU s |",
            "|" + "|".join(["---"] * 17) + "|"]
    for r in results:
        out.append(
            f"| {r.hosts} | {r.workload} | {r.rep + 1} | {r.tool} | {_run_state(r)} "
            f"| {r.wall:.2f} | {r.cpu_user:.2f} | {r.cpu_sys:.2f} | {r.peak_rss / MB:.0f} "
            f"| {r.peak_pss / MB:.0f} | {r.max_rss_single / MB:.0f} | {r.peak_procs} "
            f"| {r.server_cpu:.2f} | {r.machine_busy:.2f} | {r.other_cpu:.2f} | {r.samples} "
            f"| {r.sampler_cpu:.2f} |")
    out += ["", "</details>", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------- main


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows "(default: X)" for options that have a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, True, argparse.SUPPRESS):
            return text
        if action.option_strings:
            text += " (default: %(default)s)"
        return text


EPILOG = """\
examples:
  python bench/bench_run.py --hosts 10,100,500 --repeat 3          # the committed table
  python bench/bench_run.py --hosts 100 --repeat 1 --tools hostbatch,pssh --workloads 1mb
  python bench/bench_run.py --render-only bench/work/raw-results-run.json  # re-render

output: a Markdown table (--out) with, per (hosts, workload, tool), the median wall time,
client CPU (tool + every process it waited for), CPU per host, peak memory (RSS and PSS
summed over the tool's process tree), server and machine CPU, and ratios to the faster of
pssh and clush; then the issue's targets, met or missed. Every run is verified (exit 0 and
every host's exact output); failed runs are listed and left out of the medians.
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_run.py",
        description="Time `batch_run` beside parallel-ssh, clush and pdsh on fleets of real "
        "local sshd hosts (same hosts, same fan-out, same run), verify every run's output, and "
        "write a Markdown results table. Needs root. See bench/README.md.",
        formatter_class=_HelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--hosts", default="10,100,500",
                        help="comma list of fleet sizes; a fleet is started for each")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per (fleet size, workload, tool); medians are quoted")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS),
                        help=f"comma list, from {', '.join(ALL_TOOLS)}")
    parser.add_argument("--workloads", default="true,1mb",
                        help="comma list: true (no output), 1mb (`seq 1 160000`, about "
                        "1 MB per host in short lines) and/or b64 (issue 10's `head -c 1000000 "
                        "/dev/zero | base64`, 1.3 MB in 76-character lines)")
    parser.add_argument("--big-max-hosts", type=int, default=100, metavar="N",
                        help="run the 1mb workload only on fleets of at most N hosts (it is "
                        "slow with 500: 500 MB of output per run)")
    parser.add_argument("--fanout", type=int, default=64, help="hosts in flight, every tool")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown results file (rewritten after every fleet size)")
    parser.add_argument("--raw", type=Path, default=None,
                        help="also write every run as JSON here (default "
                        "WORKDIR/raw-OUTNAME.json, e.g. raw-results-run.json)")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="add a note to the results (repeatable; also with --render-only)")
    parser.add_argument("--render-only", type=Path, metavar="RAW_JSON",
                        help="do not run anything: re-render --out from a --raw file")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="fleet keys, configs, logs and captured output (git-ignored)")
    parser.add_argument("--batch-run", default=None,
                        help="batch_run program (default: next to this Python, else on PATH)")
    parser.add_argument("--kex", default=CURVE25519,
                        help="KexAlgorithms the servers offer; 'default' keeps OpenSSH's, whose "
                        "post-quantum sntrup761 costs the ssh-based tools ~60 ms of client CPU "
                        "per host (paramiko cannot use it)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a single run is killed and marked failed")
    parser.add_argument("--sample-ms", type=float, default=20.0,
                        help="memory sampling interval in milliseconds")
    parser.add_argument("--no-pss", dest="pss", action="store_false",
                        help="do not sample PSS (smaps_rollup), only RSS")
    parser.add_argument("--idle-wait", type=float, default=30.0, metavar="S",
                        help="before each run, wait up to S seconds for the machine to be idle "
                        "(other processes under 0.3 cores); 0 disables")
    parser.add_argument("--noise-limit", type=float, default=0.15, metavar="FRACTION",
                        help="a run during which other processes used more than this share of "
                        "the machine's CPU is noisy and is run again")
    parser.add_argument("--noise-retries", type=int, default=3, metavar="N",
                        help="run a noisy run again at most N times; the last attempt counts "
                        "(flagged noisy)")
    parser.add_argument("--redo-max-wall", type=float, default=60.0, metavar="S",
                        help="never run again a noisy run that took longer than S seconds (it "
                        "counts, flagged noisy): long runs are rarely free of noise")
    parser.add_argument("--source", choices=("worktree", "head"), default="worktree",
                        help="which hostbatch to copy and measure: src/ as it is, or as of the "
                        "last commit (uncommitted edits left out)")
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="also time hostbatch as of git revision REV (e.g. main~3), as a "
                        "tool of its own in the same run: before/after comparisons")
    parser.add_argument("--no-snapshot", dest="snapshot", action="store_false",
                        help="run the installed batch_run instead of a copy of src/ taken at "
                        "the start (the copy keeps the whole run on one version of the code)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up run of each tool on each new fleet")
    args = parser.parse_args(argv)
    check_hosts_and_tools(parser, args, ALL_TOOLS)
    args.workload_keys = comma_list(args.workloads)
    if set(args.workload_keys) - {"true", *BIG_WORKLOADS} or not args.workload_keys:
        parser.error("--workloads takes true, 1mb and/or b64")
    if args.repeat < 1 or args.fanout < 1:
        parser.error("--repeat and --fanout must be >= 1")
    if args.raw is None:
        args.raw = args.workdir / f"raw-{args.out.stem}.json"
    return args


def snapshot_batch_run(workdir: Path, source: str, *,
                       folder: str = "snapshot") -> tuple[str, str]:
    """Copy ``src/hostbatch`` to WORKDIR/FOLDER and write a ``batch_run`` that runs the copy.

    The working tree may change while a long benchmark runs; the copy keeps every run on the
    code as it was at the start. ``source`` is ``worktree`` (the files as they are), ``head``
    (the last commit, through ``git archive``, so uncommitted edits are left out) or any other
    git revision (``--baseline REV``). Returns (program, digest of the copied sources).
    """
    target = workdir / folder
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if source != "worktree":
        revision = "HEAD" if source == "head" else source
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src/hostbatch",
                                  "pyproject.toml"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        pyproject = (target / "pyproject.toml").read_text()
    else:
        shutil.copytree(REPO / "src" / "hostbatch", target / "src" / "hostbatch",
                        ignore=shutil.ignore_patterns("__pycache__"))
        pyproject = (REPO / "pyproject.toml").read_text()
    # The console script's entry point as pyproject.toml declares it (e.g.
    # "hostbatch.cli.scripts:batch_run"): it moves when the CLI is reorganised.
    module, _, function = tomllib.loads(pyproject)["project"]["scripts"]["batch_run"].partition(":")
    program = target / "batch_run"
    program.write_text(
        f"#!{sys.executable}\n"
        "# batch_run from a snapshot of src/ taken by bench/bench_run.py\n"
        "import sys\n"
        f"sys.path.insert(0, {str(target / 'src')!r})\n"
        f"from {module} import {function}\n"
        f"sys.exit({function}())\n")
    program.chmod(0o755)
    return str(program), source_digest(target / "src" / "hostbatch")


def source_digest(root: Path) -> str:
    """Short sha256 over the names and contents of the ``*.py`` files under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def build_tools(args: argparse.Namespace) -> list[Tool]:
    program = args.batch_run
    if program is None and args.snapshot:
        program, args.source_digest = snapshot_batch_run(args.workdir, args.source)
    if program is None:
        sibling = Path(sys.executable).parent / "batch_run"
        program = str(sibling) if sibling.exists() else shutil.which("batch_run")
    if program is None:
        raise SystemExit("batch_run not found: install hostbatch or pass --batch-run")
    baseline = None
    if args.baseline is not None:
        baseline, _ = snapshot_batch_run(args.workdir, args.baseline, folder="baseline")
    makers: dict[str, Callable[[], Tool]] = {
        "hostbatch": lambda: Hostbatch(args.fanout, program),
        "baseline": lambda: Hostbatch(args.fanout, str(baseline), f"hostbatch@{args.baseline}"),
        "plain": lambda: Plain(args.fanout),
        "pssh": lambda: Pssh(args.fanout),
        "clush": lambda: Clush(args.fanout),
        "pdsh": lambda: Pdsh(args.fanout),
    }
    needed = {"pssh": "parallel-ssh", "clush": "clush", "pdsh": "pdsh"}
    for name in args.tool_names:
        if name in needed and shutil.which(needed[name]) is None:
            raise SystemExit(f"{needed[name]} not found (apt-get install {name}) or drop it "
                             "from --tools")
    names = [*args.tool_names, *(["baseline"] if baseline is not None else [])]
    return [makers[name]() for name in names]


def save(results: Sequence[RunResult], meta: Meta, workloads: dict[str, Workload],
         args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, meta, workloads))
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps({"meta": asdict(meta),
                                    "workloads": {k: asdict(w) for k, w in workloads.items()},
                                    "results": [asdict(r) for r in results]}, indent=1))


def measure(tool: Tool, target: Target, workload: Workload, rep: int,
            args: argparse.Namespace) -> list[RunResult]:
    """One timed run, repeated while other work on the machine spoils it (see --noise-limit)."""
    runs: list[RunResult] = []
    while True:
        result = run_once(tool, target, workload, rep, timeout=args.timeout,
                          sample_interval=args.sample_ms / 1000, pss=args.pss,
                          idle_wait=args.idle_wait)
        runs.append(result)
        result.noisy = result.noise > args.noise_limit
        result.redone = (result.noisy and result.ok and len(runs) <= args.noise_retries
                         and result.wall <= args.redo_max_wall)
        state = "ok" if result.ok else "FAILED: " + result.problem
        if result.noisy:
            state += f", noisy: other work took {result.noise:.0%} of the machine"
            state += ", running it again" if result.redone else ""
        log(f"{target.count:>4} hosts {workload.key:>4} rep {rep + 1} {tool.name:<9} "
            f"wall {result.wall:6.2f}s cpu {result.cpu:6.2f}s "
            f"({result.cpu * 1000 / target.count:5.1f} ms/host) "
            f"rss {result.peak_rss / MB:5.0f} MB server {result.server_cpu:6.2f}s {state}")
        if not result.redone:
            return runs



def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        raw: dict[str, Any] = json.loads(args.render_only.read_text())
        loaded = [RunResult(**r) for r in raw["results"]]
        loaded_workloads = {k: Workload(**w) for k, w in raw["workloads"].items()}
        loaded_meta = Meta(**raw["meta"])
        loaded_meta.notes += [n for n in args.note if n not in loaded_meta.notes]
        args.out.write_text(render(loaded, loaded_meta, loaded_workloads))
        print(args.out)
        return 0
    if os.geteuid() != 0:
        print("bench_run.py must run as root (it starts sshd servers and a login user)",
              file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    # One benchmark per work directory: two would share fleet directories and output files.
    lock = os.open(args.workdir / ".bench_run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the process exits
    except BlockingIOError:
        print(f"another bench_run.py is running with --workdir {args.workdir} (its fleets, "
              "captured output and snapshot live there); wait for it or pass another "
              "--workdir", file=sys.stderr)
        return 2
    tools = build_tools(args)
    known = {"true": make_workload("true", "true"), "1mb": make_workload("1mb", BIG_COMMAND),
             "b64": make_workload("b64", B64_COMMAND)}
    workloads = {key: known[key] for key in args.workload_keys}
    # Ctrl-C even when started with SIGINT ignored (e.g. as a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_interrupted)
    ensure_test_user(BENCH_USER, secrets.token_urlsafe(18))
    meta = collect_meta(args, tools, workloads)
    meta.notes += args.note
    skipped = [n for n in args.host_counts if n > args.big_max_hosts]
    if set(BIG_WORKLOADS) & set(workloads) and skipped:
        meta.notes.append(f"The 1mb/b64 workloads was not run on the {', '.join(map(str, skipped))}"
                          f"-host fleet(s) (`--big-max-hosts {args.big_max_hosts}`): "
                          f"{max(skipped)} MB of output per run, slowest peers minutes per run.")
    results: list[RunResult] = []
    loads: list[str] = []

    def note_load(label: str) -> None:
        """Keep one note with the machine's load average at each fleet's start."""
        loads.append(f"{label} {os.getloadavg()[0]:.1f}")
        meta.notes[:] = [n for n in meta.notes if not n.startswith("Load average")]
        meta.notes.append("Load average (1 min) of the machine, all users: "
                          + ", ".join(loads) + " (2 cores: above ~2, other work was running)")

    try:
        for count in args.host_counts:
            note_load(f"at the start of the {count}-host fleet")
            log(f"starting a fleet of {count} sshd hosts")
            with started_fleet(count, args.workdir, args.kex) as target:
                mine = [w for w in workloads.values()
                        if w.key not in BIG_WORKLOADS or count <= args.big_max_hosts]
                if args.warmup:
                    for tool in tools:
                        warm = run_once(tool, target, workloads.get("true", mine[0]), -1,
                                        timeout=args.timeout, sample_interval=0.2, pss=False)
                        log(f"warm-up {tool.name}: {warm.wall:.2f}s "
                            f"{'ok' if warm.ok else 'FAILED: ' + warm.problem}")
                for rep in range(args.repeat):
                    for workload in mine:
                        shift = rep % len(tools)
                        for tool in tools[shift:] + tools[:shift]:
                            results += measure(tool, target, workload, rep, args)
            digest = getattr(args, "source_digest", None)
            note = ("src/ changed while the benchmark ran; every hostbatch run used the copy "
                    "taken at the start")
            if (digest and args.source == "worktree" and note not in meta.notes
                    and source_digest(REPO / "src" / "hostbatch") != digest):
                meta.notes.append(note)
            if count == args.host_counts[-1]:
                note_load("at the end")
            save(results, meta, workloads, args)
            log(f"wrote {args.out}")
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({str(exc) or 'Ctrl-C'}); fleet stopped")
        if results:
            meta.notes.append("INCOMPLETE: the run was interrupted")
            save(results, meta, workloads, args)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
