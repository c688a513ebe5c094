"""Small pieces shared by the benchmark scripts: /proc CPU readings, process clean-up,
signal handling, medians and table formatting.

The scripts run from a checkout (``python bench/bench_run.py``), so they import this module
by path, next to them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

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
