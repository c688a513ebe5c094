"""What the batch benchmarks measure around the tool, and the fleet they measure it on: CPU
accounting through a cgroup, the process-tree memory sampler, and a started fleet of real sshd
hosts whose CPU is accounted.

Imported by path like :mod:`bench.benchkit` (the scripts put the repository on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.benchkit import CLK_TCK, fleet_listeners, read_bytes, stat_fields
from tests.support.fleet import Fleet, ensure_test_user

#: The plain login user every batch benchmark's tools use (root's shell start-up files would
#: distort the numbers of every ssh-based tool).
BENCH_USER = "hbbench"
#: Key exchange the fleets offer by default (``--kex``): OpenSSH's default post-quantum
#: sntrup761 costs the ssh-based tools tens of ms of client CPU per connection and paramiko
#: cannot use it; curve25519 keeps the comparison about the tools.
CURVE25519 = "curve25519-sha256,curve25519-sha256@libssh.org"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def ensure_bench_user() -> None:
    """Create (or refresh) :data:`BENCH_USER` with a throw-away password (key logins only)."""
    ensure_test_user(BENCH_USER, secrets.token_urlsafe(18))


class CpuAccounting:
    """CPU time of a set of processes and of everything they ever fork, through a cgroup.

    sshd does not roll its session processes' CPU up into the listener's ``cutime`` (the
    per-connection processes are not all waited for by their parents), so server CPU is
    measured by moving the fleet's listeners into a cpuacct cgroup (v1) or a cgroup v2 group:
    their children inherit it and are charged while they run, exited or not. When neither can
    be created (no permission, no controller) :attr:`active` is false and the CPU is NaN.
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

    @property
    def active(self) -> bool:
        """Whether the group exists and counts."""
        return self.path is not None

    @property
    def kind(self) -> str:
        """Which kind of group counts, for the report."""
        return "cgroup-v1 cpuacct group" if self.counter == "cpuacct.usage" else "cgroup-v2 group"

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

    def join(self) -> None:
        """``preexec_fn`` of a measured tool: account the calling process (and all it forks)."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(f"{os.getpid()}\n")

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
        """Move any process left back to the parent group and remove the group (retried for
        up to 5 s: processes that are still exiting keep it busy)."""
        if self.path is None:
            return
        path, self.path = self.path, None
        for _ in range(50):
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (path.parent / "cgroup.procs").write_text(f"{pid}\n")
                path.rmdir()
                return
            time.sleep(0.1)


def children_cpu_seconds(pids: Sequence[int]) -> float:
    """Sum of ``cutime + cstime`` (CPU of reaped children) of ``pids``, in seconds: the server
    CPU when no cgroup can count it (an undercount)."""
    ticks = 0
    for pid in pids:
        fields = stat_fields(pid)
        if fields is not None and len(fields) > 14:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


@contextlib.contextmanager
def accounted_fleet(directory: Path, count: int, kex: str, group: str,
                    **options: Any) -> Iterator[tuple[Fleet, list[int], CpuAccounting]]:
    """A started fleet of ``count`` hosts for :data:`BENCH_USER`, offering the key exchange
    ``kex`` (``default``: OpenSSH's), with its sshd listeners and a CPU accounting group
    ``group`` holding them. Always stopped, and the group removed, on the way out."""
    extra = "" if kex == "default" else f"KexAlgorithms {kex}"
    fleet = Fleet(directory, count, user=BENCH_USER, extra_sshd_config=extra, **options)
    servers = CpuAccounting(group)
    try:
        fleet.start(timeout=max(60.0, count * 0.3))
        listeners = fleet_listeners(fleet)
        servers.add(listeners)
        yield fleet, listeners, servers
    finally:
        fleet.stop()
        servers.close()


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
