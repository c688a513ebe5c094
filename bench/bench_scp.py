#!/usr/bin/env python3
"""Benchmark ``batch_scp`` puts against parallel-scp (pssh), ``clush --copy`` and OpenSSH ``scp``.

One fleet of real OpenSSH ``sshd`` hosts is started on 127.0.x.y (``tests/support/fleet.py``),
each host with its own private, initially empty tmpfs at ``/srv/hostbatch-fleet`` (so hosts
never overwrite each other's files: the machine looks like many). The login user is the plain
user ``hbbench`` (root's shell start-up files would distort every ssh-based tool). Then, for
every scenario, every tool puts the same payload into ``/srv/hostbatch-fleet/dst/`` on the same
hosts with the same fan-out:

* ``file``: one file of ``--file-mb`` MiB of random bytes (default 64) to N hosts;
* ``tree``: ``--tree-files`` small files (default 1,000; 1-8 KiB of random bytes each) in
  ``--tree-dirs`` subdirectories (default 10) to N hosts (``-r``);
* ``single``: the ``file`` payload to one host, where OpenSSH ``scp`` joins in.

Tools are interleaved within each repetition, their order rotated from one repetition to the
next. Before every run the destination is emptied on every host of the scenario; after every
run each host reports its copy (one ``ssh`` per host, not timed): the sorted list of names,
types and file sizes, the number of files and the SHA-256 of all file contents concatenated in
name order. A run counts only when the tool exited 0, reported success for every host, and every
host's report equals the one computed locally from the source: a run that silently fails
(missing host, truncated or corrupt file, stray temporary file) is shown as failed and excluded
from the medians.

Measured per run: wall time (spawn to reap), client CPU (user + system of the tool and every
descendant it waited for: ``os.wait4`` rusage; includes pssh's and clush's ``scp``/``ssh``
children and hostbatch's worker processes), server CPU (a cgroup-v1 ``cpuacct`` group holding
every sshd, so every connection, session and ``internal-sftp`` process counts, exited or not),
and the whole machine's busy CPU time (``/proc/stat``). Busy minus client minus server is CPU
nobody in the run accounts for (kernel threads, foreign load): before each run the script waits
for a quiet machine, and a run where that share is too high is redone.

The Python tools get a byte-code cache (``PYTHONPYCACHEPREFIX``) and an untimed warm-up put, so
an environment with ``PYTHONDONTWRITEBYTECODE=1`` does not make an editable install recompile
its modules on every run.

Needs root (sshd on 127.0.x.y, a login user, per-host mount namespaces). Example::

    /tmp/venv0/bin/python bench/bench_scp.py --hosts 10,50 --repeat 3 \\
        --tools hostbatch,pssh,clush,scp

See the "batch_scp benchmark" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import benchkit_report, scp_more  # noqa: E402
from bench.benchkit import (  # noqa: E402
    CLK_TCK,
    Interrupted,
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
    stat_fields,
    summary_says_all_ok,
    tail,
    verdict,
    wait_idle,
    wait_quiet,
)
from bench.benchkit_report import report_header  # noqa: E402
from tests.support.fleet import Fleet, ensure_test_user  # noqa: E402

ALL_TOOLS = ("hostbatch", "pssh", "clush", "prsync", "scp")
PEERS = ("pssh", "clush", "prsync")
SCENARIOS = ("file", "tree", "sync-same", "sync-one", "get", "single")
BENCH_USER = "hbbench"
DEFAULT_OUT = REPO / "bench" / "results-scp.md"
DEFAULT_WORKDIR = Path("/tmp/hostbatch-bench-scp")
#: Distinct from the fleets of the other benchmarks and tests (127.0.0.10 up).
FIRST_ADDRESS = "127.0.3.10"
#: Key exchange the servers offer by default (see --kex): OpenSSH's default post-quantum
#: sntrup761 costs the ssh-based tools ~78 ms of client CPU per connection, paramiko cannot use
#: it; curve25519 keeps the comparison about copying.
CURVE25519 = "curve25519-sha256,curve25519-sha256@libssh.org"
#: Marker in results-scp.md: everything after it is hand-written and kept when re-rendering.
ANALYSIS_MARKER = "<!-- analysis: hand-written below, kept when this file is rewritten -->"
MIB = 1024 * 1024
#: Quiet runs here leave 0-8% of the machine's CPU to kernel threads (loopback networking,
#: softirq) and the benchmark itself; above this share something else was running.
NOISE_LIMIT_SHOWN = 0.15
#: Remote verification script: types, names and sizes (sorted), file count, content digest.
#: Run with the directory to describe as ``$1``; prints three lines.
MANIFEST_SCRIPT = r"""
cd -- "$1" || exit 3
find . -mindepth 1 \( -type f -printf 'f %P %s\n' \) -o -printf '%y %P\n' \
    | LC_ALL=C sort | sha256sum | cut -d' ' -f1
find . -type f | wc -l
find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r cat | sha256sum | cut -d' ' -f1
"""



# -------------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Payload:
    """What is copied: ``source`` (a file or a tree) lives alone in ``holder``.

    A correct put leaves the remote destination directory looking exactly like ``holder``,
    so the same manifest script describes both.
    """

    key: str
    source: Path
    recursive: bool
    files: int
    bytes: int
    manifest: str  # MANIFEST_SCRIPT's output for ``holder``

    @property
    def holder(self) -> Path:
        return self.source.parent

    def describe(self) -> str:
        if self.recursive:
            return (f"a tree of {self.files:,} files ({self.bytes / MIB:.1f} MiB, "
                    f"{self.bytes / self.files / 1024:.1f} KiB per file on average)")
        return f"one file of {self.bytes / MIB:g} MiB"


def manifest_of(directory: Path) -> str:
    proc = subprocess.run(["/bin/sh", "-c", MANIFEST_SCRIPT, "manifest", str(directory)],
                          capture_output=True, text=True, check=True)
    return proc.stdout


def make_file_payload(root: Path, size_mib: int) -> Payload:
    """A file of random bytes (reused when it is already there with the right size)."""
    holder = root / f"file-{size_mib}m"
    holder.mkdir(parents=True, exist_ok=True)
    source = holder / f"payload-{size_mib}m.bin"
    size = size_mib * MIB
    if not source.exists() or source.stat().st_size != size:
        with open(source, "wb") as handle:
            for _ in range(size_mib):
                handle.write(os.urandom(MIB))
    return Payload("file", source, False, 1, size, manifest_of(holder))


def make_warmup_payload(root: Path) -> Payload:
    """A one-line file for the untimed warm-up run of each tool."""
    holder = root / "warmup"
    holder.mkdir(parents=True, exist_ok=True)
    source = holder / "warmup.txt"
    source.write_text("warm-up\n")
    return Payload("warmup", source, False, 1, source.stat().st_size, manifest_of(holder))


def make_tree_payload(root: Path, files: int, dirs: int) -> Payload:
    """``files`` files of 1-8 KiB random bytes spread over ``dirs`` subdirectories."""
    holder = root / f"tree-{files}x{dirs}"
    source = holder / "tree"
    stamp = root / f".tree-{files}x{dirs}.complete"  # outside holder: not part of the copy
    rng = random.Random(20261127)
    sizes = [rng.randint(1024, 8192) for _ in range(files)]
    if not stamp.exists() or not source.is_dir():
        shutil.rmtree(holder, ignore_errors=True)
        source.mkdir(parents=True)
        for n, size in enumerate(sizes):
            directory = source / f"d{n % dirs:02d}"
            directory.mkdir(exist_ok=True)
            (directory / f"f{n:04d}.dat").write_bytes(os.urandom(size))
        stamp.write_text("")
    return Payload("tree", source, True, files, sum(sizes), manifest_of(holder))


# ------------------------------------------------------------------------------ /proc helpers



def children_cpu_seconds(pids: Sequence[int]) -> float:
    """Sum of ``cutime + cstime`` (CPU of reaped children) of ``pids``, in seconds."""
    ticks = 0
    for pid in pids:
        fields = stat_fields(pid)
        if fields is not None and len(fields) > 14:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK



CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")


class CpuGroup:
    """A cgroup-v1 ``cpuacct`` group: the CPU time of every process ever in it, exited ones too.

    Used for the servers: sshd's connection handlers, privilege-separated children and sftp
    sessions do not all wait for each other, so the listeners' ``cutime`` misses some of them.
    Processes forked inside the group stay in it. ``None`` from :meth:`create` when cgroup v1
    cpuacct is not available (then the listeners' ``cutime + cstime`` is used instead).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str) -> CpuGroup | None:
        path = CPUACCT_ROOT / f"{name}-{os.getpid()}"
        try:
            path.mkdir()
        except OSError:
            return None
        return cls(path)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def seconds(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        """Remove the group once it is empty (move leftovers to the root group first)."""
        for _ in range(50):
            with contextlib.suppress(OSError):
                for pid in (self.path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (CPUACCT_ROOT / "cgroup.procs").write_text(f"{pid}\n")
                self.path.rmdir()
                return
            time.sleep(0.1)


# ---------------------------------------------------------------------------------- target


@dataclass
class Target:
    """The running fleet and the files every tool needs to address a subset of it."""

    fleet: Fleet
    inventory: Path
    workdir: Path
    dest: str
    listeners: list[int]
    servers: CpuGroup | None = None
    clients: CpuGroup | None = None
    hostfiles: dict[int, Path] = field(default_factory=dict)
    #: Environment for every tool (a byte-code cache: see --pycache).
    python_env: dict[str, str] = field(default_factory=dict)

    def server_cpu_seconds(self) -> float:
        """CPU time of every server process so far (the cgroup, else reaped connections)."""
        if self.servers is not None:
            return self.servers.seconds()
        return children_cpu_seconds(self.listeners)

    def hostfile(self, names: Sequence[str]) -> Path:
        """A file listing ``names``, one a line (pssh -h, clush --hostfile)."""
        path = self.hostfiles.get(len(names))
        if path is None:
            path = self.workdir / f"hostlist-{len(names)}"
            path.write_text("".join(f"{name}\n" for name in names))
            self.hostfiles[len(names)] = path
        return path

    @property
    def out(self) -> Path:
        return self.workdir / "stdout.txt"

    @property
    def err(self) -> Path:
        return self.workdir / "stderr.txt"


@dataclass(frozen=True)
class Scenario:
    key: str  # one of SCENARIOS (or warmup)
    payload: Payload
    names: tuple[str, ...]

    @property
    def hosts(self) -> int:
        return len(self.names)

    @property
    def total_bytes(self) -> int:
        return self.payload.bytes * self.hosts


def on_hosts(target: Target, names: Sequence[str], command: str,
             timeout: float = 300.0) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run ``command`` on every host of ``names`` with OpenSSH ``ssh``, 16 at a time."""

    def one(name: str) -> subprocess.CompletedProcess[str]:
        return target.fleet.ssh(name, command, timeout=timeout)

    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def clear_destination(target: Target, names: Sequence[str]) -> None:
    dest = shlex.quote(target.dest)
    results = on_hosts(target, names, f"rm -rf -- {dest} && mkdir -- {dest}")
    failed = {n: r for n, r in results.items() if r.returncode != 0}
    if failed:
        name, proc = next(iter(failed.items()))
        raise RuntimeError(f"cannot clear {target.dest} on {len(failed)} hosts, e.g. {name}: "
                           f"{proc.stderr.strip()}")


def prepare_hosts(target: Target, scenario: Scenario) -> None:
    """Empty the destination on every host; seed it with the tree for the sync and get
    scenarios (see bench/scp_more.py)."""
    command = scp_more.seed_command(target.dest, scenario.payload.source, scenario.key)
    results = on_hosts(target, scenario.names, command)
    failed = {n: r for n, r in results.items() if r.returncode != 0}
    if failed:
        name, proc = next(iter(failed.items()))
        raise RuntimeError(f"cannot prepare {target.dest} on {len(failed)} hosts, e.g. "
                           f"{name}: {proc.stderr.strip()}")


def verify_copies(target: Target, scenario: Scenario, tool: Tool) -> str:
    """"" when every copy is exact: the fetched ones for get, else the hosts' ones."""
    if scenario.key == "get":
        return scp_more.verify_fetched(target.workdir, tool.name, scenario.names,
                                       scenario.payload.source, MANIFEST_SCRIPT)
    return verify_hosts(target, scenario)


def verify_hosts(target: Target, scenario: Scenario) -> str:
    """"" if every host holds exactly the payload, else what is wrong (and where)."""
    script = f"sh -c {shlex.quote(MANIFEST_SCRIPT)} manifest {shlex.quote(target.dest)}"
    results = on_hosts(target, scenario.names, script)
    expected = scenario.payload.manifest
    wrong: dict[str, str] = {}
    for name, proc in results.items():
        if proc.returncode != 0:
            wrong[name] = f"check failed ({proc.returncode}): {proc.stderr.strip()[:200]}"
        elif proc.stdout != expected:
            got = proc.stdout.split("\n")
            want = expected.split("\n")
            what = []
            if got[:1] != want[:1]:
                what.append("names/sizes differ")
            if got[1:2] != want[1:2]:
                what.append(f"{got[1] if len(got) > 1 else '?'} files, expected {want[1]}")
            if got[2:3] != want[2:3]:
                what.append("content differs")
            wrong[name] = ", ".join(what) or "unexpected report"
    if not wrong:
        return ""
    name = sorted(wrong)[0]
    return f"{len(wrong)} of {scenario.hosts} hosts hold a wrong copy, e.g. {name}: {wrong[name]}"


# ----------------------------------------------------------------------------------- tools




def package_digest(package: Path) -> str:
    """Short SHA-256 over the names and contents of a package's ``.py`` files."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _git(*args: str) -> str:
    proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


def describe_checkout(package: Path) -> str:
    """``at commit abc1234`` (``+ uncommitted changes`` when src/ differs from it), when the
    package is this repository's ``src/hostbatch`` (an editable install)."""
    if package.resolve() != (REPO / "src" / "hostbatch").resolve():
        return f"installed at {package}"
    try:
        commit = _git("rev-parse", "--short=10", "HEAD").strip()
        dirty = bool(_git("status", "--porcelain", "--", "src").strip())
    except (SystemExit, OSError):
        return f"editable install at {package}"
    return f"this checkout at commit {commit}" + (" + uncommitted changes" if dirty else "")


def snapshot_hostbatch(rev: str, workdir: Path) -> tuple[str, Path, Path]:
    """Export ``src/hostbatch`` at git revision ``rev`` into the workdir and write a
    ``batch_scp`` launcher for it (this Python, the snapshot first on ``sys.path``).

    Returns (full commit, launcher, package directory). The benchmark then measures exactly
    that commit, however the checkout changes while it runs.
    """
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
    root = workdir / f"hostbatch-{commit[:12]}"
    package = root / "hostbatch"
    stamp = root / ".complete"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit,
                                  "src/hostbatch"], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if not member.name.startswith("src/hostbatch") or not (member.isfile()
                                                                       or member.isdir()):
                    continue
                member.name = member.name[len("src/"):]
                tar.extract(member, root, filter="data")
        stamp.write_text(commit + "\n")
    # The console script's entry point as that commit's pyproject.toml declares it.
    project = tomllib.loads(_git("show", f"{commit}:pyproject.toml"))
    module, _, function = project["project"]["scripts"]["batch_scp"].partition(":")
    launcher = root / "batch_scp"
    launcher.write_text(f"#!{sys.executable}\n"
                        f"# batch_scp of hostbatch at commit {commit} (bench_scp.py)\n"
                        f"import sys\n\nsys.path.insert(0, {str(root)!r})\n"
                        f"from {module} import {function}  # noqa: E402\n\n"
                        f"sys.exit({function}())\n")
    launcher.chmod(0o755)
    return commit, launcher, package


class Tool:
    """How to run one copy tool and how to read its own success report."""

    name = ""

    def __init__(self, fanout: int) -> None:
        self.fanout = fanout

    def applies(self, scenario: Scenario) -> bool:
        return True

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def version(self) -> str:
        raise NotImplementedError

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        """"" when the tool itself reports success on every host."""
        if status != 0:
            return f"exit status {status}: {tail(target.err)}"
        return ""


class Hostbatch(Tool):
    name = "hostbatch"

    def __init__(self, fanout: int, program: str, extra: Sequence[str] = (), *,
                 package: Path | None = None, described: str = "",
                 name: str = "hostbatch") -> None:
        super().__init__(fanout)
        self.name = name
        self.program = program
        self.extra = list(extra)
        #: The hostbatch package this program runs, when known: its digest is recorded with
        #: every run, so a source tree edited during the benchmark cannot go unnoticed.
        self.package = package
        self.described = described

    def source(self) -> str:
        return package_digest(self.package) if self.package is not None else ""

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        argv = [self.program, "-i", str(target.inventory), "-h", ",".join(scenario.names),
                "-f", str(self.fanout)]
        source = scenario.payload.source
        if scenario.key == "get":
            argv += ["-action", "get", "-remote", f"{target.dest}/{source.name}",
                     "-local", str(scp_more.get_dir(target.workdir))]
        else:
            argv += ["-action", "put", "-local", str(source), "-remote", target.dest + "/"]
        if scenario.key in scp_more.SYNC:
            argv.append("--sync")
        if scenario.payload.recursive:
            argv.append("-r")
        return [*argv, *self.extra]

    def env(self) -> dict[str, str]:
        return {"NO_COLOR": "1"}

    def version(self) -> str:
        paramiko, cryptography = package_version("paramiko"), package_version("cryptography")
        where = f", {self.described}" if self.described else ""
        return (f"{first_line([self.program, '--version'])} (`batch_scp`{where}; paramiko "
                f"{paramiko}, cryptography {cryptography})")

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        problem = super().check(target, scenario, status)
        if problem:
            return problem
        if not summary_says_all_ok(target.err.read_bytes(), scenario.hosts):
            return f"summary does not say all {scenario.hosts} ok: {tail(target.err)}"
        return scp_more.check_sync_summary(target.err.read_bytes(), scenario.key,
                                           scenario.hosts)


class Pssh(Tool):
    name = "pssh"
    _status = re.compile(rb"^\[\d+\] \d\d:\d\d:\d\d \[SUCCESS\] (\S+)", re.M)

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key in ("file", "tree", "single", "warmup")

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        argv = ["parallel-scp", "-h", str(target.hostfile(scenario.names)),
                "-p", str(self.fanout), "-t", "0", "-x", f"-F {target.fleet.ssh_config}"]
        if scenario.payload.recursive:
            argv.append("-r")
        return [*argv, str(scenario.payload.source), target.dest + "/"]

    def version(self) -> str:
        return ("parallel-scp " + first_line(["parallel-scp", "--version"])
                + " (runs `scp -qC` per host)")


class Prsync(Pssh):
    """``parallel-rsync -a -r`` (Debian's pssh): the peer of ``--sync``."""

    name = "prsync"

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key in scp_more.SYNC

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        return scp_more.prsync_argv(target.hostfile(scenario.names), self.fanout,
                                    target.fleet.ssh_config, scenario.payload.source,
                                    target.dest)

    def version(self) -> str:
        return (f"parallel-rsync {first_line(['parallel-rsync', '--version'])} (runs "
                f"`rsync -a` per host; {first_line(['rsync', '--version'])})")

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        problem = super().check(target, scenario, status)
        if problem:
            return problem
        succeeded = {m.decode() for m in self._status.findall(target.out.read_bytes())}
        missing = set(scenario.names) - succeeded
        if missing:
            return f"{len(missing)} hosts without [SUCCESS], e.g. {sorted(missing)[0]}"
        return ""


class Clush(Tool):
    name = "clush"
    _progress = re.compile(rb"(clush: *\d+/ *\d+[^\r\n]*| +)\r")

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key not in scp_more.SYNC

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        # clush picks -r itself for a directory source.
        argv = ["clush", "-S", "--color=never", "-f", str(self.fanout),
                "-o", f"-F {target.fleet.ssh_config}",
                "--hostfile", str(target.hostfile(scenario.names))]
        if scenario.key == "get":
            return [*argv, "--rcopy", f"{target.dest}/{scenario.payload.source.name}",
                    "--dest", str(scp_more.get_dir(target.workdir))]
        return [*argv, "--copy", str(scenario.payload.source), "--dest", target.dest + "/"]

    def version(self) -> str:
        return first_line(["clush", "--version"]) + " (`clush --copy`, runs `scp` per host)"

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        problem = super().check(target, scenario, status)
        if problem:
            return problem
        # clush's progress meter (``clush: 3/50\r``, erased with spaces) is not a problem.
        text = self._progress.sub(b"", target.err.read_bytes()).strip()
        return f"unexpected stderr: {text[-300:].decode(errors='replace')}" if text else ""


class Scp(Tool):
    name = "scp"

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key in ("single", "warmup")

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        argv = ["scp", "-q", "-F", str(target.fleet.ssh_config)]
        if scenario.payload.recursive:
            argv.append("-r")
        return [*argv, str(scenario.payload.source), f"{scenario.names[0]}:{target.dest}/"]

    def version(self) -> str:
        return first_line(["ssh", "-V"]) + " (`scp`, SFTP protocol, default ciphers)"


# ------------------------------------------------------------------------------------ runs


@dataclass
class RunResult:
    scenario: str
    hosts: int
    tool: str
    rep: int
    ok: bool
    problem: str
    status: int
    wall: float
    cpu_user: float
    cpu_sys: float
    client_tree_cpu: float  # the tool's cgroup: everything it forked, waited for or not
    server_cpu: float
    machine_busy: float
    load_before: float  # busy cores just before the run (nan when not sampled)
    total_bytes: int
    redone: bool = False  # too noisy: run again, and left out of the medians
    source: str = ""  # digest of the hostbatch package that ran (hostbatch runs only)

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    @property
    def noise(self) -> float:
        """Share of the machine's CPU capacity during the run used by neither tool nor servers."""
        capacity = self.wall * (os.cpu_count() or 1)
        return (self.machine_busy - self.cpu - self.server_cpu) / capacity if capacity else 0.0





def run_once(tool: Tool, target: Target, scenario: Scenario, rep: int, *,
             timeout: float, idle_wait: float = 0.0, idle_cores: float = 0.3) -> RunResult:
    """Clear the destination, run ``tool`` once, measure it, verify every host's copy.

    With ``idle_wait``, first wait up to that many seconds for the machine to be quiet (busy
    below ``idle_cores`` cores), so foreign load disturbs the run as little as possible.
    """
    prepare_hosts(target, scenario)
    if scenario.key == "get":
        scp_more.clear_get_dir(target.workdir)
    env = {**os.environ, **tool.env(), **target.python_env}
    if "PYTHONPYCACHEPREFIX" in target.python_env:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv = tool.argv(target, scenario)
    wait_quiet(target.listeners, poll=0.05)
    load_before = wait_idle(idle_wait, idle_cores, 0.5) if idle_wait > 0 else float("nan")
    clients = target.clients
    setup = None if clients is None else functools.partial(_join_group, clients)
    server_before = target.server_cpu_seconds()
    client_before = clients.seconds() if clients is not None else float("nan")
    busy_before = machine_busy_seconds()
    with Spawned(argv, env, target.out, target.err, timeout, setup) as tool_process:
        reaped = tool_process.reap()
    wall, usage = reaped.wall, reaped.usage
    busy = machine_busy_seconds() - busy_before
    wait_quiet(target.listeners, poll=0.05)
    server = target.server_cpu_seconds() - server_before
    client_tree = clients.seconds() - client_before if clients is not None else float("nan")
    status = reaped.status
    if wall >= timeout:
        problem = f"killed after the {timeout:g}s timeout"
    else:
        problem = tool.check(target, scenario, status) or verify_copies(target, scenario, tool)
    source = tool.source() if isinstance(tool, Hostbatch) else ""
    return RunResult(scenario.key, scenario.hosts, tool.name, rep, not problem, problem, status,
                     wall, usage.ru_utime, usage.ru_stime, client_tree, server, busy,
                     load_before, scenario.total_bytes, source=source)


def _join_group(group: CpuGroup) -> None:
    """preexec_fn of the measured tool: account it (and all it forks) to ``group``."""
    group.add(os.getpid())


@contextlib.contextmanager
def started_fleet(count: int, workdir: Path, kex: str) -> Iterator[Target]:
    """A running fleet of ``count`` hosts with private tmpfs; always stopped on the way out."""
    directory = workdir / f"fleet-{count}"
    extra = "" if kex == "default" else f"KexAlgorithms {kex}"
    fleet = Fleet(directory, count, user=BENCH_USER, private_tmp=True,
                  first_address=FIRST_ADDRESS, extra_sshd_config=extra)
    servers = clients = None
    try:
        fleet.start(timeout=max(60.0, count * 0.3))
        assert fleet.private_dir is not None
        inventory = fleet.write_inventory(directory / "hosts.ini")
        # The listeners are the sshd processes themselves (unshare and sh exec into sshd);
        # their cutime/cstime is the CPU of every reaped connection.
        listeners = fleet_listeners(fleet)
        servers = CpuGroup.create("hostbatch-bench-scp-servers")
        clients = CpuGroup.create("hostbatch-bench-scp-clients")
        if servers is not None:
            for pid in listeners:
                servers.add(pid)
        yield Target(fleet, inventory, directory, str(fleet.private_dir / "dst"), listeners,
                     servers, clients)
    finally:
        fleet.stop()
        for group in (servers, clients):
            if group is not None:
                group.remove()


def check_space(target: Target, payload: Payload) -> None:
    """The per-host tmpfs must hold the payload (plus a temporary copy of it)."""
    proc = target.fleet.ssh(target.fleet.names[0],
                            f"df -B1 --output=avail {shlex.quote(target.dest.rsplit('/', 1)[0])}")
    fields = proc.stdout.split()
    if proc.returncode != 0 or not fields or not fields[-1].isdigit():
        raise RuntimeError(f"cannot read the hosts' free space: {proc.stderr.strip()}")
    if int(fields[-1]) < payload.bytes * 2:
        raise SystemExit(f"each host's tmpfs has {int(fields[-1]) / MIB:.0f} MiB free, too "
                         f"little for {payload.bytes / MIB:.0f} MiB (plus a temporary copy)")


# --------------------------------------------------------------------------------- results



@dataclass
class Cell:
    """Medians of one (scenario, hosts, tool) over its valid runs."""

    scenario: str
    hosts: int
    tool: str
    runs: int
    valid: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    server_cpu: float
    machine_busy: float
    total_bytes: int
    problems: list[str] = field(default_factory=list)
    noisy: int = 0  # valid runs kept although foreign load was above the noise limit

    @property
    def throughput(self) -> float:
        """Aggregate MiB/s: hosts x payload / median wall."""
        return self.total_bytes / MIB / self.wall if self.wall == self.wall else float("nan")

    @property
    def unaccounted(self) -> float:
        return self.machine_busy - self.cpu - self.server_cpu


def summarize(results: Sequence[RunResult], noise_limit: float = NOISE_LIMIT_SHOWN
              ) -> list[Cell]:
    groups: dict[tuple[str, int, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((result.scenario, result.hosts, result.tool), []).append(result)
    cells = []
    for (scenario, hosts, tool), runs in groups.items():
        valid = [r for r in runs if r.ok and not r.redone]
        walls = [r.wall for r in valid]
        cells.append(Cell(
            scenario, hosts, tool, len(runs), len(valid), median(walls),
            min(walls, default=float("nan")), max(walls, default=float("nan")),
            median([r.cpu for r in valid]), median([r.server_cpu for r in valid]),
            median([r.machine_busy for r in valid]), runs[0].total_bytes,
            [f"rep {r.rep + 1}: {r.problem}" for r in runs if not r.ok],
            sum(1 for r in valid if r.noise > noise_limit)))
    order = {name: n for n, name in enumerate(ALL_TOOLS)}
    cells.sort(key=lambda c: (SCENARIOS.index(c.scenario), c.hosts,
                              order.get(c.tool.partition("@")[0], 99), c.tool))
    return cells


def find(cells: Sequence[Cell], scenario: str, hosts: int, tool: str) -> Cell | None:
    for cell in cells:
        if (cell.scenario, cell.hosts, cell.tool) == (scenario, hosts, tool) and cell.valid:
            return cell
    return None


def best_peer(cells: Sequence[Cell], scenario: str, hosts: int) -> Cell | None:
    """The pssh/clush cell with the highest throughput (lowest median wall)."""
    peers = [c for c in cells if (c.scenario, c.hosts) == (scenario, hosts)
             and c.tool in PEERS and c.valid]
    return min(peers, key=lambda c: c.wall, default=None)




#: Issue 11's put targets: hostbatch's aggregate throughput over clush --copy's, at least.
PUT_TARGETS = {"tree": 1.5, "file": 1.1}
#: Issue 11: one file to one host, hostbatch's wall over OpenSSH scp's, at most.
SINGLE_TARGET = 1.2


def targets(cells: Sequence[Cell]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for issue 11's speed targets, from this run only."""
    rows: list[tuple[str, str, str]] = []

    multi = sorted({(c.scenario, c.hosts) for c in cells if c.scenario in PUT_TARGETS},
                   key=lambda k: (SCENARIOS.index(k[0]), k[1]))
    for scenario, hosts in multi:
        goal = PUT_TARGETS[scenario]
        label = f"{scenario} to {hosts} hosts: aggregate throughput >= {goal}x clush --copy"
        hb = find(cells, scenario, hosts, "hostbatch")
        peer = find(cells, scenario, hosts, "clush")
        if hb and peer:
            rows.append((label, f"{hb.throughput:.0f} vs {peer.throughput:.0f} "
                         f"MiB/s = {hb.throughput / peer.throughput:.2f}x",
                         verdict(hb.throughput >= goal * peer.throughput)))
        else:
            rows.append((label, "n/a", verdict(None)))

    def wall(scenario: str, hosts: int, tool: str) -> float | None:
        cell = find(cells, scenario, hosts, tool)
        return cell.wall if cell else None

    def rate(scenario: str, hosts: int, tool: str) -> float | None:
        cell = find(cells, scenario, hosts, tool)
        return cell.throughput if cell else None

    if any(c.scenario in scp_more.SEEDED for c in cells):
        rows += scp_more.sync_and_get_targets(wall, rate, verdict)
    label = f"single host, file: wall <= {SINGLE_TARGET}x OpenSSH scp's"
    hb = find(cells, "single", 1, "hostbatch")
    scp = find(cells, "single", 1, "scp")
    if hb and scp:
        rows.append((label, f"{hb.wall:.2f} s vs scp {scp.wall:.2f} s = {hb.wall / scp.wall:.2f}x",
                     verdict(hb.wall <= SINGLE_TARGET * scp.wall)))
    else:
        rows.append((label, "n/a", verdict(None)))
    return rows


@dataclass
class Meta(benchkit_report.Meta):
    """The common report facts, plus the noise limit the run used."""

    noise_limit: float = NOISE_LIMIT_SHOWN


def _ssh_cipher() -> str:
    """The OpenSSH client's first cipher preference (what it negotiates with OpenSSH sshd)."""
    line = first_line(["ssh", "-G", "-F", "/dev/null", "localhost"], r"^ciphers ")
    return line.split()[1].split(",")[0] if line.startswith("ciphers ") else "unknown"


def _paramiko_cipher() -> str:
    try:
        import paramiko
    except ImportError:
        return "unknown"
    preferred: Sequence[str] = getattr(paramiko.Transport, "_preferred_ciphers", ())
    return preferred[0] if preferred else "unknown"


def collect_meta(args: argparse.Namespace, tools: Sequence[Tool],
                 payloads: dict[str, Payload]) -> Meta:
    cpu_model = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    machine = (f"nproc {os.cpu_count()} ({cpu_model}), {mem_gib:.1f} GiB RAM, Linux "
               f"{platform.release()}, {platform.python_implementation()} "
               f"{platform.python_version()}; load average at start {load}")
    sshd = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "sshd"
    software = [f"server: {first_line([sshd, '-V'], 'OpenSSH')} (`sshd -D`, one per host, "
                "`Subsystem sftp internal-sftp`)"]
    software += [f"{tool.name}: {tool.version()}" for tool in tools]
    kex = "OpenSSH defaults" if args.kex == "default" else args.kex
    settings = [
        f"fan-out {args.fanout} for every tool (`batch_scp -f`, `parallel-scp -p`, `clush -f`); "
        f"login user `{BENCH_USER}` (plain user, key auth, known_hosts pre-filled); every tool "
        f"uses its default cipher (first preference: OpenSSH client {_ssh_cipher()}, paramiko "
        f"{_paramiko_cipher()}, unless hostbatch chooses otherwise)",
        "Python tools (hostbatch, pssh, clush) get a byte-code cache (`PYTHONPYCACHEPREFIX`) "
        "and one untimed warm-up put each" if args.pycache and args.warmup else
        f"byte-code cache for the Python tools: {'yes' if args.pycache else 'no'}; "
        f"warm-up run: {'yes' if args.warmup else 'no'}",
        f"servers offer key exchange: {kex}",
        "destination: `/srv/hostbatch-fleet/dst/` on each host, a private tmpfs per host "
        "(a mount namespace per sshd); emptied before every run",
        f"repetitions: {args.repeat} per cell, tools interleaved in each repetition, their "
        "order rotated from one repetition to the next; before each run the script waits up to "
        f"{args.idle_wait:g} s for the machine to be quiet (< {args.idle_cores:g} cores busy), "
        f"and a run during which more than {args.noise_limit:.0%} of the machine's CPU went to "
        f"neither the tool nor the servers is redone (at most {args.noise_retries} times)",
        "payloads: " + "; ".join(f"{key} = {p.describe()}" for key, p in payloads.items()),
    ]
    return Meta(datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                " ".join(["python", "bench/bench_scp.py", *sys.argv[1:]]), machine, software,
                settings, [], args.noise_limit)


TITLES = {
    "file": "Put one file to N hosts",
    "tree": "Put a tree of small files to N hosts (`-r`)",
    "sync-same": "The same tree again, unchanged: `--sync` (hostbatch), `rsync -a` "
                 "(parallel-rsync); MiB/s counts the whole tree",
    "sync-one": "The same tree with one file changed on each host: `--sync`, `rsync -a`; "
                "MiB/s counts the whole tree",
    "get": "Get a tree of small files from N hosts (`-action get -r`, `clush --rcopy`)",
    "single": "Put one file to one host (OpenSSH `scp` joins in)",
}


#: Notes render() derives from the runs (older raw files stored them in their metadata).
_COMPUTED_NOTE = re.compile(r"\d+ (of \d+ )?runs were (redone|still noisy)")


def render(results: Sequence[RunResult], meta: Meta, analysis: str = "") -> str:
    cells = summarize(results, meta.noise_limit)
    out = report_header("batch_scp benchmark: hostbatch vs parallel-scp (pssh), clush --copy, "
                        "scp", meta)
    out += ["Medians over the valid runs (a run is valid when the tool exited 0, reported every "
            "host as done, and every host's copy matched the source: names, sizes, file count "
            "and a SHA-256 of all contents). MiB/s is aggregate: hosts x payload / median wall. "
            "*vs best peer* divides this tool's MiB/s by that of the faster of pssh and clush "
            "(and of parallel-rsync for the sync rows; above 1.00x is faster); *vs scp* "
            "divides the wall time by scp's. Client CPU includes every process the tool waited "
            "for; server CPU is "
            "what the sshd connections (with their sftp sessions) cost on the same cores; "
            "*other* is the machine's busy CPU minus both (kernel threads, foreign load).", ""]
    for scenario in SCENARIOS:
        mine = [c for c in cells if c.scenario == scenario]
        if not mine:
            continue
        against = "vs scp (wall)" if scenario == "single" else "vs best peer (MiB/s)"
        header = (f"| hosts | tool | wall s | (min-max) | MiB/s | {against} | client CPU s "
                  "| server CPU s | other CPU s | machine busy | valid |")
        out += [f"## {TITLES[scenario]}", "", header,
                "|" + "|".join(["---"] * (header.count("|") - 1)) + "|"]
        for c in mine:
            if scenario == "single":
                base = find(cells, "single", 1, "scp")
                shown_ratio = ratio(c.wall, base.wall if base else None)
            else:
                peer = best_peer(cells, scenario, c.hosts)
                shown_ratio = ratio(c.throughput, peer.throughput if peer else None)
            name = f"**{c.tool}**" if c.tool.startswith("hostbatch") else c.tool
            busy_share = c.machine_busy / (c.wall * (os.cpu_count() or 1)) \
                if c.wall == c.wall and c.wall else float("nan")
            out.append(
                f"| {c.hosts} | {name} | {fmt(c.wall, '.2f')} "
                f"| ({fmt(c.wall_min, '.2f')}-{fmt(c.wall_max, '.2f')}) "
                f"| {fmt(c.throughput, '.0f')} | {shown_ratio} | {fmt(c.cpu, '.2f')} "
                f"| {fmt(c.server_cpu, '.2f')} | {fmt(c.unaccounted, '.2f')} "
                f"| {fmt(busy_share * 100, '.0f')}% | {c.valid}/{c.runs}"
                + (f" ({c.noisy} noisy)" if c.noisy else "") + " |")
        out.append("")
    out += ["## Targets (issue 11, Speed), from this run", "",
            "| target | measured | verdict |", "|---|---|---|"]
    out += [f"| {t} | {m} | {v} |" for t, m, v in targets(cells)]
    failures = [(c, p) for c in cells for p in c.problems]
    if failures:
        out += ["", "## Runs that failed verification (excluded from the medians)", ""]
        out += [f"- {c.scenario}, {c.hosts} hosts, {c.tool}: {p}" for c, p in failures]
    notes = [note for note in meta.notes if not _COMPUTED_NOTE.match(note)]
    redone = sum(1 for r in results if r.redone)
    if redone:
        notes.append(f"{redone} of {len(results)} runs were redone because more than "
                     f"{meta.noise_limit:.0%} of the machine's CPU went to neither the tool nor "
                     "the servers (foreign load); they are in the per-run table, not in the "
                     "medians.")
    kept = sum(1 for r in results if r.ok and not r.redone and r.noise > meta.noise_limit)
    if kept:
        notes.append(f"{kept} runs were still noisy after the last retry and count in the "
                     "medians (marked *noisy* in the *valid* column).")
    sources = sorted({r.source for r in results if r.tool == "hostbatch" and r.source
                      and r.ok and not r.redone})
    if any(r.tool.startswith("hostbatch@") for r in results):
        notes.append("`hostbatch@...` rows are other revisions (`--hostbatch-rev A,B`) or "
                     "variants (`--variant`) of hostbatch, measured in the same run for "
                     "comparison; the targets use **hostbatch**.")
    if len(sources) > 1:
        notes.insert(0, f"**hostbatch's source changed during the benchmark** (package digests "
                     f"{', '.join(sources)}): its cells mix versions; measure again with "
                     "`--hostbatch-rev`.")
    if notes:
        out += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    out += ["", "## Every run", "", "<details><summary>per-run figures</summary>", "",
            "| scenario | hosts | rep | tool | ok | wall s | MiB/s | user s | sys s "
            "| client cgroup CPU s | server CPU s | busy s | other share | busy cores before |",
            "|" + "|".join(["---"] * 14) + "|"]
    for r in results:
        out.append(
            f"| {r.scenario} | {r.hosts} | {r.rep + 1} | {r.tool} "
            f"| {'redone (noisy)' if r.redone else 'yes' if r.ok else 'NO'} "
            f"| {r.wall:.2f} | {r.total_bytes / MIB / r.wall:.0f} | {r.cpu_user:.2f} "
            f"| {r.cpu_sys:.2f} | {fmt(r.client_tree_cpu, '.2f')} | {r.server_cpu:.2f} "
            f"| {r.machine_busy:.2f} | {r.noise:.0%} | {fmt(r.load_before, '.2f')} |")
    out += ["", "</details>", "", ANALYSIS_MARKER, ""]
    text = "\n".join(out)
    return text + analysis.lstrip("\n") if analysis else text


def kept_analysis(path: Path) -> str:
    """The hand-written part of an existing results file (after ANALYSIS_MARKER)."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    _, found, rest = text.partition(ANALYSIS_MARKER)
    return rest if found else ""


def save(results: Sequence[RunResult], meta: Meta, args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, meta, kept_analysis(args.out)))
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps({"meta": asdict(meta),
                                    "results": [asdict(r) for r in results]}, indent=1))


# ------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_scp.py",
        description="Time `batch_scp` puts beside parallel-scp, clush --copy and scp on a fleet "
        "of real local sshd hosts (each with its own tmpfs), verify every host's copy after "
        "every run, and write a Markdown results table. Needs root. See bench/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--hosts", default="10,50",
                        help="comma list of host counts for the file and tree scenarios (one "
                        "fleet of the largest size is started; smaller counts use its first "
                        "hosts)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per (scenario, hosts, tool); medians are quoted")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS),
                        help=f"comma list, from {', '.join(ALL_TOOLS)} (scp: single host only)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma list: file (one file to N hosts), tree (small files to N "
                        "hosts), sync-same (the tree again, unchanged, --sync), sync-one (one "
                        "file changed, --sync), get (the tree from N hosts), single (one file "
                        "to one host)")
    parser.add_argument("--file-mb", type=int, default=64, help="size of the file, in MiB")
    parser.add_argument("--tree-files", type=int, default=1000, help="files in the tree")
    parser.add_argument("--tree-dirs", type=int, default=10, help="subdirectories of the tree")
    parser.add_argument("--fanout", type=int, default=64, help="hosts in flight, every tool")
    parser.add_argument("--hostbatch-args", default="",
                        help="extra batch_scp options (e.g. '--verify'), shell-quoted")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown results file (rewritten after every repetition; the "
                        "hand-written part after the analysis marker is kept)")
    parser.add_argument("--raw", type=Path, default=None,
                        help="every run as JSON (default WORKDIR/raw-scp.json)")
    parser.add_argument("--render-only", type=Path, nargs="+", metavar="RAW_JSON",
                        help="do not run anything: re-render --out from --raw files; with "
                        "several, a later file's cells (scenario, hosts, tool) replace the "
                        "earlier files' (e.g. a noisy scenario measured again)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="payloads, fleet keys, configs, logs and captured output")
    parser.add_argument("--hostbatch-rev", metavar="REV[,REV...]",
                        help="measure hostbatch at this git revision of the repository (e.g. "
                        "HEAD): src/hostbatch is exported to WORKDIR and run from there, so "
                        "edits to the checkout during the benchmark do not leak in; more "
                        "revisions join as tools `hostbatch@COMMIT`, in the same run")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PROGRAM",
                        help="also measure another batch_scp program (e.g. a patched copy) as "
                        "tool `hostbatch@NAME`, in the same run (repeatable)")
    parser.add_argument("--batch-scp", default=None,
                        help="batch_scp program (default: next to this Python, else on PATH)")
    parser.add_argument("--kex", default=CURVE25519,
                        help="KexAlgorithms the servers offer; 'default' keeps OpenSSH's")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a single run is killed and marked failed")
    parser.add_argument("--idle-wait", type=float, default=60.0, metavar="S",
                        help="before each run, wait up to S seconds for the machine to be quiet "
                        "(0: do not wait); runs that started on a busy machine are flagged")
    parser.add_argument("--idle-cores", type=float, default=0.3, metavar="CORES",
                        help="'quiet' means fewer than this many cores busy over 0.5 s")
    parser.add_argument("--noise-limit", type=float, default=NOISE_LIMIT_SHOWN, metavar="SHARE",
                        help="a run during which CPU used by neither the tool nor the servers "
                        "exceeds this share of the machine is run again")
    parser.add_argument("--no-pycache", dest="pycache", action="store_false",
                        help="do not give the tools a byte-code cache (PYTHONPYCACHEPREFIX under "
                        "WORKDIR, PYTHONDONTWRITEBYTECODE dropped): without it, an environment "
                        "with PYTHONDONTWRITEBYTECODE=1 recompiles an editable install's modules "
                        "on every run")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up put (a one-line file to one host) of each "
                        "tool, which also fills the byte-code cache")
    parser.add_argument("--noise-retries", type=int, default=2, metavar="N",
                        help="at most N extra attempts per noisy run; the last one counts")
    args = parser.parse_args(argv)
    check_hosts_and_tools(parser, args, ALL_TOOLS)
    args.host_counts = sorted(set(args.host_counts))  # each fleet size once, smallest first
    args.scenario_keys = comma_list(args.scenarios)
    if set(args.scenario_keys) - set(SCENARIOS) or not args.scenario_keys:
        parser.error(f"--scenarios takes {', '.join(SCENARIOS)}")
    if args.noise_retries < 0:
        parser.error("--noise-retries must be >= 0")
    if min(args.repeat, args.fanout, args.file_mb, args.tree_files, args.tree_dirs) < 1:
        parser.error("--repeat, --fanout, --file-mb, --tree-files and --tree-dirs must be >= 1")
    if args.raw is None:
        args.raw = args.workdir / "raw-scp.json"
    return args


def merge_raw(paths: Sequence[Path]) -> tuple[list[RunResult], Meta]:
    """Runs and metadata of one or more --raw files; later files' cells replace earlier ones."""
    results: list[RunResult] = []
    meta: Meta | None = None
    for path in paths:
        raw: dict[str, Any] = json.loads(path.read_text())
        runs = [RunResult(**r) for r in raw["results"]]
        this = Meta(**raw["meta"])
        cells = {(r.scenario, r.hosts, r.tool) for r in runs}
        results = [r for r in results if (r.scenario, r.hosts, r.tool) not in cells] + runs
        if meta is None:
            meta = this
            continue
        names = ", ".join(f"{scenario} x{hosts} {tool}" for scenario, hosts, tool in
                          sorted(cells, key=lambda c: (SCENARIOS.index(c[0]), c[1], c[2])))
        meta.notes.append(f"Measured in a separate run on {this.date} with "
                          f"`{this.command_line}` (replacing any earlier run's): {names}.")
        meta.notes += [note for note in this.notes if note not in meta.notes]
    if meta is None:
        raise SystemExit("--render-only needs at least one raw file")
    return results, meta


def build_tools(args: argparse.Namespace) -> list[Tool]:
    program = args.batch_scp
    package: Path | None = None
    described = ""
    others: list[Tool] = []
    revisions = [rev.strip() for rev in (args.hostbatch_rev or "").split(",") if rev.strip()]
    for n, rev in enumerate(revisions):
        commit, launcher, snapshot = snapshot_hostbatch(rev, args.workdir)
        what = f"commit {commit[:10]} (`--hostbatch-rev {rev}`, a snapshot)"
        if n == 0:
            program, package, described = str(launcher), snapshot, what
        elif "hostbatch" in args.tool_names:
            others.append(Hostbatch(args.fanout, str(launcher), shlex.split(args.hostbatch_args),
                                    package=snapshot, described=what,
                                    name=f"hostbatch@{commit[:7]}"))
    for spec in args.variant:
        label, sep, variant = spec.partition("=")
        if not sep or not label or not variant:
            raise SystemExit(f"--variant expects NAME=PROGRAM, not {spec!r}")
        if "hostbatch" in args.tool_names:
            others.append(Hostbatch(args.fanout, variant, shlex.split(args.hostbatch_args),
                                    described=f"variant `{variant}`", name=f"hostbatch@{label}"))
    if not revisions and program is None:
        sibling = Path(sys.executable).parent / "batch_scp"
        program = str(sibling) if sibling.exists() else shutil.which("batch_scp")
        spec = importlib.util.find_spec("hostbatch")
        if spec is not None and spec.origin is not None:
            package = Path(spec.origin).parent
            described = describe_checkout(package)
    if program is None:
        raise SystemExit("batch_scp not found: install hostbatch or pass --batch-scp")
    makers: dict[str, Callable[[], Tool]] = {
        "hostbatch": lambda: Hostbatch(args.fanout, program, shlex.split(args.hostbatch_args),
                                       package=package, described=described),
        "pssh": lambda: Pssh(args.fanout),
        "clush": lambda: Clush(args.fanout),
        "prsync": lambda: Prsync(args.fanout),
        "scp": lambda: Scp(args.fanout),
    }
    needed = {"pssh": "parallel-scp", "clush": "clush", "scp": "scp",
              "prsync": "parallel-rsync"}
    for name in args.tool_names:
        if name in needed and shutil.which(needed[name]) is None:
            raise SystemExit(f"{needed[name]} not found; install it or drop {name} from --tools")
    tools = [makers[name]() for name in args.tool_names]
    at = next((n for n, tool in enumerate(tools) if tool.name == "hostbatch"), len(tools))
    return tools[:at + 1] + others + tools[at + 1:]


def build_scenarios(args: argparse.Namespace, target: Target,
                    payloads: dict[str, Payload]) -> list[Scenario]:
    scenarios: list[Scenario] = []
    for key in SCENARIOS:
        if key not in args.scenario_keys:
            continue
        if key == "single":
            scenarios.append(Scenario(key, payloads["file"], (target.fleet.names[0],)))
            continue
        payload = payloads["tree" if key in scp_more.SEEDED else key]
        for count in args.host_counts:
            scenarios.append(Scenario(key, payload, tuple(target.fleet.names[:count])))
    return scenarios


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        loaded, meta = merge_raw(args.render_only)
        args.out.write_text(render(loaded, meta, kept_analysis(args.out)))
        print(args.out)
        return 0
    if os.geteuid() != 0:
        print("bench_scp.py must run as root (it starts sshd servers and a login user)",
              file=sys.stderr)
        return 2
    tools = build_tools(args)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_interrupted)
    args.workdir.mkdir(parents=True, exist_ok=True)
    log("preparing payloads")
    payloads: dict[str, Payload] = {}
    if {"file", "single"} & set(args.scenario_keys):
        payloads["file"] = make_file_payload(args.workdir / "payload", args.file_mb)
    if {"tree", *scp_more.SEEDED} & set(args.scenario_keys):
        payloads["tree"] = make_tree_payload(args.workdir / "payload", args.tree_files,
                                             args.tree_dirs)
    ensure_test_user(BENCH_USER, secrets.token_urlsafe(18))
    meta = collect_meta(args, tools, payloads)
    count = max(args.host_counts) if set(args.scenario_keys) - {"single"} else 1
    results: list[RunResult] = []
    try:
        log(f"starting a fleet of {count} sshd hosts with private tmpfs")
        with started_fleet(count, args.workdir, args.kex) as target:
            for payload in payloads.values():
                check_space(target, payload)
            if args.pycache:
                target.python_env["PYTHONPYCACHEPREFIX"] = str(args.workdir / "pycache")
            if args.warmup:
                warm = Scenario("warmup", make_warmup_payload(args.workdir / "payload"),
                                (target.fleet.names[0],))
                for tool in tools:
                    result = run_once(tool, target, warm, -1, timeout=args.timeout)
                    log(f"warm-up {tool.name}: {result.wall:.2f}s "
                        + ("ok" if result.ok else f"FAILED: {result.problem}"))
            meta.settings.append(
                "server CPU: " + ("a cgroup-v1 cpuacct group holding every sshd (so every "
                                  "connection, session and sftp process, exited or not)"
                                  if target.servers is not None else
                                  "cutime + cstime of the sshd listeners (reaped connections "
                                  "only: an undercount)"))
            scenarios = build_scenarios(args, target, payloads)
            for rep in range(args.repeat):
                for scenario in scenarios:
                    mine = [t for t in tools if t.applies(scenario)]
                    shift = rep % len(mine) if mine else 0
                    for tool in mine[shift:] + mine[:shift]:
                        for attempt in range(args.noise_retries + 1):
                            result = run_once(tool, target, scenario, rep, timeout=args.timeout,
                                              idle_wait=args.idle_wait,
                                              idle_cores=args.idle_cores)
                            results.append(result)
                            rate = result.total_bytes / MIB / result.wall
                            noisy = result.ok and result.noise > args.noise_limit
                            log(f"{scenario.key} x{scenario.hosts} rep {rep + 1} {tool.name}: "
                                f"{result.wall:.2f}s {rate:.0f} MiB/s cpu {result.cpu:.2f}s "
                                f"server {result.server_cpu:.2f}s noise {result.noise:.0%} "
                                + ("ok" if result.ok else f"FAILED: {result.problem}")
                                + (" (noisy: again)" if noisy and attempt < args.noise_retries
                                   else ""))
                            if not noisy or attempt == args.noise_retries:
                                break
                            result.redone = True
                save(results, meta, args)
            with contextlib.suppress(Exception):
                clear_destination(target, target.fleet.names)
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({type(exc).__name__}); fleet stopped")
        if results:
            meta.notes.append("The run was interrupted: this table is incomplete.")
            save(results, meta, args)
        return 130
    save(results, meta, args)
    log(f"wrote {args.out} and {args.raw}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
