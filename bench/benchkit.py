"""Pieces shared by the benchmark scripts: /proc readings, waiting for a quiet fleet and
machine, spawning and reaping the measured tool, runs repeated while the machine is noisy, the
tools' rotating order, signal handling, the hostbatch summary check, medians and the common
command-line flags. :mod:`bench.benchkit_proc` (CPU accounting, memory sampling, the fleet),
:mod:`bench.benchkit_source` (which hostbatch is measured) and :mod:`bench.benchkit_report`
(the report's common parts) hold the rest.

The scripts run from a checkout (``python bench/bench_run.py``), so they import this module
by path, next to them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import itertools
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """A timestamped progress line on stderr (the results go to a file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_bytes(path: str) -> bytes | None:
    """The contents of a /proc file, or ``None`` if the process or file has gone."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat after the command name (field 3, state, is index 0)."""
    data = read_bytes(f"/proc/{pid}/stat")
    if data is None:
        return None
    return data[data.rfind(b")") + 2:].split()


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores, from /proc/stat)."""
    data = read_bytes("/proc/stat") or b"cpu 0 0 0 0"
    values = [int(v) for v in data.split(b"\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK  # guest time is already inside user


def tail(path: Path, limit: int = 400) -> str:
    """The last few lines of a log file, on one line, for an error message."""
    text = path.read_bytes()[-limit:].decode(errors="replace").strip()
    return " | ".join(text.splitlines()[-4:]) or "(nothing on stderr)"


def first_line(argv: Sequence[str], pattern: str = r"\S") -> str:
    """The first line a command prints that matches ``pattern`` (a version string), or
    ``unknown``."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (proc.stdout + proc.stderr).splitlines():
        if re.search(pattern, line):
            return line.strip()
    return "unknown"


def kill_group(pid: int) -> None:
    """SIGKILL a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class Interrupted(Exception):
    """SIGTERM or SIGHUP: leave through the same clean-up path as Ctrl-C."""


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """Signal handler turning SIGTERM/SIGHUP into :class:`Interrupted`."""
    raise Interrupted(signal.Signals(signum).name)


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values (shown as n/a)."""
    return statistics.median(values) if values else float("nan")


def fmt(value: float, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``n/a`` for NaN."""
    return "n/a" if value != value else format(value, spec)


def ratio(value: float, base: float | None) -> str:
    """``value / base`` as ``1.23x``, or ``n/a`` when either is missing."""
    if base is None or base != base or base == 0 or value != value:
        return "n/a"
    return f"{value / base:.2f}x"


def _parents() -> Iterator[tuple[int, int]]:
    """``(pid, parent pid)`` of every live process (a full /proc scan: not for hot loops)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and len(fields) > 1:
                yield int(entry), int(fields[1])


def children_of(parents: set[int]) -> list[int]:
    """Live processes whose parent is in ``parents``."""
    return [pid for pid, parent in _parents() if parent in parents]


def has_children(parents: set[int]) -> bool:
    """Whether any live process has its parent in ``parents`` (stops at the first)."""
    return any(parent in parents for _, parent in _parents())


def wait_quiet(listeners: Sequence[int], limit: float = 15.0, *, poll: float = 0.1,
               settle: float = 0.0) -> None:
    """Wait (at most ``limit`` s) until no sshd connection of the fleet is left, so the next
    run starts clean and CPU counts are complete; then ``settle`` seconds more."""
    parents = set(listeners)
    deadline = time.monotonic() + limit
    while has_children(parents) and time.monotonic() < deadline:
        time.sleep(poll)
    if settle:
        time.sleep(settle)


def wait_idle(limit: float, threshold: float = 0.3, window: float = 0.3) -> float:
    """Wait (at most ``limit`` s) until the machine's busy CPU over ``window`` seconds is
    under ``threshold`` cores: other work on a shared box must not land inside a run.
    Returns the busy rate (in cores) seen last."""
    deadline = time.monotonic() + limit
    while True:
        before = machine_busy_seconds()
        time.sleep(window)
        rate = (machine_busy_seconds() - before) / window
        if rate < threshold or time.monotonic() >= deadline:
            return rate


def fleet_listeners(fleet: Any) -> list[int]:
    """The pids of a ``tests.support.fleet.Fleet``'s sshd listeners: every connection process
    is forked from one of them. (The Fleet API does not expose them, hence the private read.)"""
    return [proc.pid for proc in fleet._procs.values()]


@dataclass
class Reaped:
    """How the measured tool ended: exit status, wall time and the rusage of ``wait4`` (the
    tool and every descendant it waited for)."""

    status: int
    wall: float
    usage: resource.struct_rusage


class Spawned:
    """The measured tool, started in its own session with stdout and stderr to files.

    Use as a context manager around :meth:`reap`: leaving the block kills the tool's process
    group (leftovers, or the tool itself when interrupted or past ``timeout``) and reaps it.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str], out: Path, err: Path,
                 timeout: float, preexec_fn: Callable[[], None] | None = None) -> None:
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                         stderr=stderr, env=env, start_new_session=True,
                                         preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self._timer = threading.Timer(timeout, kill_group, args=(self.pid,))
        self._timer.start()
        self._reaped = False

    def __enter__(self) -> Spawned:
        return self

    def reap(self) -> Reaped:
        """Wait for the tool to exit; the wall time runs from spawn to reap."""
        _, raw_status, usage = os.wait4(self.pid, 0)
        wall = time.perf_counter() - self.started
        self._reaped = True
        return Reaped(os.waitstatus_to_exitcode(raw_status), wall, usage)

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        kill_group(self.pid)
        if not self._reaped:
            with contextlib.suppress(ChildProcessError):
                os.wait4(self.pid, 0)
        self.proc.returncode = -1  # reaped by us: keep Popen from waiting again


#: The summary line ``batch_run``/``batch_scp`` print on stderr.
HOSTBATCH_SUMMARY = re.compile(rb"^hostbatch: (\d+) hosts? in [0-9.]+s: (\d+) ok$", re.M)


def summary_says_all_ok(stderr: bytes, hosts: int) -> bool:
    """Whether hostbatch's summary reports every one of ``hosts`` hosts ok."""
    match = HOSTBATCH_SUMMARY.search(stderr)
    return match is not None and int(match[1]) == hosts and int(match[2]) == hosts


def package_version(name: str) -> str:
    """An installed distribution's version, or ``?``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma list (``--tools a,b``)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def verdict(ok: bool | None) -> str:
    """A target's verdict cell: met, missed or not measured."""
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def check_hosts_and_tools(parser: argparse.ArgumentParser, args: argparse.Namespace,
                          all_tools: Sequence[str]) -> None:
    """Turn ``--hosts`` and ``--tools`` into ``args.host_counts`` and ``args.tool_names``;
    a bad value is a usage error (``parser.error`` exits 2)."""
    try:
        args.host_counts = [int(n) for n in args.hosts.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--hosts must be a comma list of integers, not {args.hosts!r}")
    if not args.host_counts or min(args.host_counts) < 1:
        parser.error("--hosts needs at least one positive fleet size")
    args.tool_names = comma_list(args.tools)
    unknown = set(args.tool_names) - set(all_tools)
    if unknown or not args.tool_names:
        parser.error(f"unknown tools {sorted(unknown)}; choose from {', '.join(all_tools)}")


def add_shared_flags(parser: argparse.ArgumentParser, *, all_tools: Sequence[str], cell: str,
                     default_kex: str, tools_note: str = "", kex_note: str = "") -> None:
    """``--repeat``, ``--tools``, ``--fanout``, ``--kex`` and ``--timeout``, as every batch
    benchmark takes them; ``cell`` names what one median is over."""
    parser.add_argument("--repeat", type=int, default=3,
                        help=f"timed runs per ({cell}, tool); medians are quoted")
    parser.add_argument("--tools", default=",".join(all_tools),
                        help=f"comma list, from {', '.join(all_tools)}{tools_note}")
    parser.add_argument("--fanout", type=int, default=64, help="hosts in flight, every tool")
    parser.add_argument("--kex", default=default_kex, help="KexAlgorithms the servers offer; "
                        f"'default' keeps OpenSSH's{kex_note}")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds before a single run is killed and marked failed")


def require_programs(needed: dict[str, str], names: Sequence[str]) -> None:
    """End the benchmark when a chosen tool's program (``needed``: tool -> program) is not
    installed."""
    for name in names:
        if name in needed and shutil.which(needed[name]) is None:
            raise SystemExit(f"{needed[name]} not found; install it (scripts/setup.sh --bench) "
                             f"or drop {name} from --tools")


def require_root(script: str) -> bool:
    """Whether this runs as root; if not, says why it must (the caller exits 2)."""
    if os.geteuid() == 0:
        return True
    print(f"{script} must run as root (it starts sshd servers and a login user)", file=sys.stderr)
    return False


def handle_signals() -> None:
    """Ctrl-C even when started with SIGINT ignored (e.g. as a background job of a script);
    SIGTERM and SIGHUP leave through the same clean-up path (:class:`Interrupted`)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_interrupted)


T = TypeVar("T")


def rotated(items: Sequence[T], rep: int) -> list[T]:
    """``items`` in the order of repetition ``rep``: rotated by one place per repetition, so
    no tool always runs right after the same neighbour."""
    shift = rep % len(items) if items else 0
    return [*items[shift:], *items[:shift]]


class Attempt(Protocol):
    """What :func:`attempts` reads from, and marks on, one measured run."""

    ok: bool
    wall: float
    problem: str
    redone: bool

    @property
    def noise(self) -> float: ...


A = TypeVar("A", bound=Attempt)


def attempts(run: Callable[[], A], *, noise_limit: float, retries: int,
             may_redo: Callable[[A], bool] = lambda _: True) -> Iterator[tuple[A, bool]]:
    """Run ``run`` and yield ``(result, noisy)``: noisy when other work took more than
    ``noise_limit`` of the machine during it. A noisy valid run is marked ``redone`` (left out
    of the medians) and run again, at most ``retries`` times and only when ``may_redo`` allows
    it; the last attempt counts, flagged noisy."""
    for attempt in itertools.count(1):
        result = run()
        noisy = result.noise > noise_limit
        result.redone = noisy and result.ok and attempt <= retries and may_redo(result)
        yield result, noisy
        if not result.redone:
            return


def log_warmup(name: str, result: Attempt) -> None:
    """The progress line of a tool's untimed warm-up run."""
    log(f"warm-up {name}: {result.wall:.2f}s "
        + ("ok" if result.ok else f"FAILED: {result.problem}"))
