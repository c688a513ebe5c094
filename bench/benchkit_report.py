"""The benchmark reports' common parts: the facts about the run (:class:`Meta`) and the header
they make, the machine's description, medians per cell and picking cells, and the Markdown
sections every batch benchmark writes (tables, targets, failures, notes, every run).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bench.benchkit import first_line, median, read_bytes


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


def now() -> str:
    """The report's date: local time with its zone."""
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def command_line(script: str) -> str:
    """How this benchmark was started, as the report quotes it."""
    return " ".join(["python", script, *sys.argv[1:]])


def machine_description() -> str:
    """CPU count and model, RAM, kernel and Python of this machine."""
    cpu_model = "unknown CPU"
    for line in (read_bytes("/proc/cpuinfo") or b"").decode(errors="replace").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    return (f"nproc {os.cpu_count()} ({cpu_model}), {mem_gib:.1f} GiB RAM, "
            f"Linux {platform.release()}, {platform.python_implementation()} "
            f"{platform.python_version()}")


def sshd_version() -> str:
    """The fleet's OpenSSH server version line."""
    sshd = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "sshd"
    return first_line([sshd, "-V"], "OpenSSH")


class Run(Protocol):
    """What the summaries read from one run."""

    rep: int
    ok: bool
    problem: str
    wall: float


def wall_spread(valid: Sequence[Run]) -> tuple[float, float, float]:
    """Median, fastest and slowest wall time of the valid runs (NaN for none)."""
    walls = [r.wall for r in valid]
    return (median(walls), min(walls, default=float("nan")), max(walls, default=float("nan")))


def failed_runs(runs: Iterable[Run]) -> list[str]:
    """``rep N: problem`` for every run that failed verification."""
    return [f"rep {r.rep + 1}: {r.problem}" for r in runs if not r.ok]


class Cell(Protocol):
    """What picking a cell reads: how many of its runs are valid, and whose they are."""

    valid: int
    tool: str


C = TypeVar("C", bound=Cell)


def find_cell(cells: Sequence[C], **key: Any) -> C | None:
    """The valid cell whose attributes equal ``key`` (e.g. ``hosts=100, tool="pssh"``)."""
    for cell in cells:
        if cell.valid and all(getattr(cell, k) == v for k, v in key.items()):
            return cell
    return None


def best_cell(cells: Sequence[C], tools: Sequence[str], attr: str, **key: Any) -> C | None:
    """Of the valid cells of ``tools`` matching ``key``, the one with the lowest ``attr``
    (NaN left out): the best peer a tool is compared with."""
    peers = [c for c in cells if c.valid and c.tool in tools
             and all(getattr(c, k) == v for k, v in key.items())
             and getattr(c, attr) == getattr(c, attr)]
    return min(peers, key=lambda c: float(getattr(c, attr)), default=None)


def table(header: str) -> list[str]:
    """A Markdown table's header row and its separator."""
    return [header, "|" + "|".join(["---"] * (header.count("|") - 1)) + "|"]


def targets_section(title: str, rows: Iterable[tuple[str, str, str]]) -> list[str]:
    """``## title`` with the (target, measured, verdict) table (no blank line before)."""
    out = [f"## {title}", "", *table("| target | measured | verdict |")]
    return out + [f"| {t} | {m} | {v} |" for t, m, v in rows]


def bullets(title: str, items: Sequence[str]) -> list[str]:
    """``## title`` with one bullet per item; nothing when there are none."""
    return ["", f"## {title}", ""] + [f"- {item}" for item in items] if items else []


def failures_section(items: Sequence[str]) -> list[str]:
    """The runs that failed verification, when there are any."""
    return bullets("Runs that failed verification (excluded from the medians)", items)


def every_run(header: str, rows: Iterable[str]) -> list[str]:
    """The folded per-run table at the end of a report."""
    return ["", "## Every run", "", "<details><summary>per-run figures</summary>", "",
            *table(header), *rows, "", "</details>", ""]


def write_results(out: Path, text: str, raw: Path, data: dict[str, Any]) -> None:
    """Write the Markdown report and the raw JSON (every run, for ``--render-only``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(data, indent=1))
