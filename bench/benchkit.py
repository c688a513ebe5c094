"""Pieces shared by the benchmark scripts: /proc readings, waiting for a quiet fleet and
machine, spawning and reaping the measured tool, signal handling, the hostbatch summary check,
medians and the report's common parts.

The scripts run from a checkout (``python bench/bench_run.py``), so they import this module
by path, next to them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import re
import resource
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
from typing import Any

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


@dataclass
class Meta:
    """What the report says about the run itself."""

    date: str
    command_line: str
    machine: str
    software: list[str]
    settings: list[str]
    notes: list[str]


def report_header(title: str, meta: Meta) -> list[str]:
    """The report's first lines: title, date, machine, software, settings, command line."""
    out = [f"# {title}", "", f"- Date: {meta.date}", f"- Machine: {meta.machine}"]
    out += [f"- {line}" for line in meta.software]
    out += [f"- {line}" for line in meta.settings]
    out += [f"- Command: `{meta.command_line}`", ""]
    return out


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
