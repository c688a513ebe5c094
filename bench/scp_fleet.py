"""bench_scp.py's fleet side: the payloads, the started fleet as the tools see it, the
scenarios, and what happens on the hosts around each run (emptying or seeding the
destination, checking every host's copy against the source).
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench import scp_more
from bench.benchkit_proc import CpuAccounting, children_cpu_seconds
from tests.support.fleet import Fleet

MIB = 1024 * 1024
#: Remote verification script: types, names and sizes (sorted), file count, content digest.
#: Run with the directory to describe as ``$1``; prints three lines.
MANIFEST_SCRIPT = r"""
cd -- "$1" || exit 3
find . -mindepth 1 \( -type f -printf 'f %P %s\n' \) -o -printf '%y %P\n' \
    | LC_ALL=C sort | sha256sum | cut -d' ' -f1
find . -type f | wc -l
find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r cat | sha256sum | cut -d' ' -f1
"""


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
    """:data:`MANIFEST_SCRIPT`'s report of a local directory."""
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


@dataclass
class Target:
    """The running fleet and the files every tool needs to address a subset of it."""

    fleet: Fleet
    inventory: Path
    workdir: Path
    dest: str
    listeners: list[int]
    #: Every sshd of the fleet and what it forks; the measured tool and what it forks.
    servers: CpuAccounting | None = None
    clients: CpuAccounting | None = None
    hostfiles: dict[int, Path] = field(default_factory=dict)
    #: Environment for every tool (a byte-code cache: see --pycache).
    python_env: dict[str, str] = field(default_factory=dict)

    def server_cpu_seconds(self) -> float:
        """CPU time of every server process so far (the cgroup, else reaped connections)."""
        if self.servers is not None and self.servers.active:
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
    """One cell's work: a payload for the first ``names`` hosts of the fleet."""

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
    """Empty the destination on the hosts ``names`` (the last clean-up)."""
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


def verify_copies(target: Target, scenario: Scenario, tool: str) -> str:
    """"" when every copy is exact: the fetched ones for get (by ``tool``), else the hosts'
    ones."""
    if scenario.key == "get":
        return scp_more.verify_fetched(target.workdir, tool, scenario.names,
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

