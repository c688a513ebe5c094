"""bench_run.py's results: one run's figures, the medians per (hosts, workload, tool), the
issues' targets, the facts about the run, and the Markdown report.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.benchkit import first_line, fmt, median, ratio, verdict
from bench.benchkit_proc import BENCH_USER
from bench.benchkit_report import (
    Meta,
    best_cell,
    bullets,
    command_line,
    every_run,
    failed_runs,
    failures_section,
    find_cell,
    machine_description,
    now,
    report_header,
    sshd_version,
    table,
    targets_section,
    wall_spread,
)
from bench.benchkit_source import REPO, src_is_dirty
from bench.run_tools import ALL_TOOLS, BIG_WORKLOADS, PEERS, Tool, Workload

MB = 1024 * 1024


@dataclass
class RunResult:
    """One timed run of one tool: its verdict and every figure measured."""

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
    """One cell per (hosts, workload, tool), redone runs left out."""
    keys: dict[tuple[int, str, str], list[RunResult]] = {}
    for result in results:
        if not result.redone:
            keys.setdefault((result.hosts, result.workload, result.tool), []).append(result)
    cells = []
    for (hosts, workload, tool), runs in keys.items():
        valid = [r for r in runs if r.ok]
        cells.append(Cell(
            hosts, workload, tool, len(runs), len(valid), *wall_spread(valid),
            median([r.cpu for r in valid]), median([r.peak_rss for r in valid]),
            median([r.peak_pss for r in valid]), median([r.server_cpu for r in valid]),
            median([r.machine_busy for r in valid]), median([r.other_cpu for r in valid]),
            failed_runs(runs), sum(1 for r in valid if r.noisy)))
    return cells


def best_peer(cells: Sequence[Cell], hosts: int, workload: str, attr: str) -> Cell | None:
    """The pssh/clush cell with the lowest ``attr`` for this (hosts, workload)."""
    return best_cell(cells, PEERS, attr, hosts=hosts, workload=workload)


def find(cells: Sequence[Cell], hosts: int, workload: str, tool: str) -> Cell | None:
    """The valid cell of (hosts, workload, tool), if any."""
    return find_cell(cells, hosts=hosts, workload=workload, tool=tool)


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
    return f"commit {head}" + (" (with uncommitted changes in src/)" if src_is_dirty() else "")


def _software(args: argparse.Namespace, tools: Sequence[Tool]) -> list[str]:
    """The report's software lines: servers, ssh client, every tool, which hostbatch."""
    software = [f"server: {sshd_version()} (`sshd -D`, one per host)",
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
    return [*software, source]


def collect_meta(args: argparse.Namespace, tools: Sequence[Tool],
                 workloads: dict[str, Workload]) -> Meta:
    """The facts about this run that the report's header lists."""
    kex = ("OpenSSH defaults (sntrup761x25519-sha512 for the ssh-based tools)"
           if args.kex == "default" else args.kex)
    settings = [
        f"fan-out {args.fanout} for every tool (`batch_run -f`, `parallel-ssh -p`, `clush -f`, "
        f"`pdsh -f`); login user `{BENCH_USER}` (plain user, key auth, known_hosts pre-filled)",
        f"servers offer key exchange: {kex}",
        f"repetitions: {args.repeat} per cell, tools interleaved in each repetition with the "
        "order rotated; one untimed warm-up run per tool per fleet" if args.warmup else
        f"repetitions: {args.repeat} per cell, tools interleaved, order rotated",
        f"memory sampled every {args.sample_ms:g} ms from /proc over the tool's process tree "
        "(RSS every sample; PSS at every new RSS peak and every 10th sample)" if args.pss else
        f"memory sampled every {args.sample_ms:g} ms from /proc over the tool's process tree",
        "Python tools get a byte-code cache (`PYTHONPYCACHEPREFIX`, `PYTHONDONTWRITEBYTECODE` "
        "dropped), as an installed copy has",
        "workloads: " + "; ".join(f"{w.key} = {w.describe()}" for w in workloads.values()),
        f"noise control (the machine is shared): before each run, wait up to {args.idle_wait:g} s "
        f"for it to be idle; a run during which other processes used more than "
        f"{args.noise_limit:.0%} of its CPU is run again (at most {args.noise_retries} times; "
        "redone runs are listed but left out of the medians; runs longer than "
        f"{args.redo_max_wall:g} s are not redone)",
    ]
    return Meta(now(), command_line("bench/bench_run.py"), machine_description(),
                _software(args, tools), settings, [])


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
    """The per-run table's *ok* cell."""
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
           *table("| hosts | workload | baseline | wall now / before | CPU now / before "
                  "| PSS now / before |")]
    for c in cells:
        before = base.get((c.hosts, c.workload))
        if c.tool != "hostbatch" or before is None:
            continue
        out.append(f"| {c.hosts} | {c.workload} | {before.tool} | {ratio(c.wall, before.wall)} "
                   f"| {ratio(c.cpu, before.cpu)} | {ratio(c.peak_pss, before.peak_pss)} |")
    return out


def _cell_row(c: Cell, cells: Sequence[Cell]) -> str:
    """The medians table's row of one cell."""
    wall_peer = best_peer(cells, c.hosts, c.workload, "wall")
    cpu_peer = best_peer(cells, c.hosts, c.workload, "cpu")
    name = f"**{c.tool}**" if c.tool == "hostbatch" else c.tool
    return (f"| {c.hosts} | {c.workload} | {name} "
            f"| {fmt(c.wall, '.2f')} | ({fmt(c.wall_min, '.2f')}-{fmt(c.wall_max, '.2f')}) "
            f"| {ratio(c.wall, wall_peer.wall if wall_peer else None)} | {fmt(c.cpu, '.2f')} "
            f"| {fmt(c.cpu_ms_per_host, '.1f')} "
            f"| {ratio(c.cpu, cpu_peer.cpu if cpu_peer else None)} "
            f"| {fmt(c.peak_rss / MB, '.0f')} "
            f"| {fmt(c.peak_pss / MB, '.0f') if c.peak_pss else 'n/a'} "
            f"| {fmt(c.server_cpu, '.2f')} | {fmt(c.machine_busy, '.2f')} "
            f"| {fmt(c.other_cpu, '.2f')} | {c.valid}/{c.runs}"
            f"{f' ({c.noisy} noisy)' if c.noisy else ''} |")


def _run_row(r: RunResult) -> str:
    """The per-run table's row of one run."""
    return (f"| {r.hosts} | {r.workload} | {r.rep + 1} | {r.tool} | {_run_state(r)} "
            f"| {r.wall:.2f} | {r.cpu_user:.2f} | {r.cpu_sys:.2f} | {r.peak_rss / MB:.0f} "
            f"| {r.peak_pss / MB:.0f} | {r.max_rss_single / MB:.0f} | {r.peak_procs} "
            f"| {r.server_cpu:.2f} | {r.machine_busy:.2f} | {r.other_cpu:.2f} | {r.samples} "
            f"| {r.sampler_cpu:.2f} |")


def render(results: Sequence[RunResult], meta: Meta, workloads: dict[str, Workload]) -> str:
    """The whole Markdown report."""
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
    out += table("| hosts | workload | tool | wall s | (min-max) | vs best peer | client CPU s "
                 "| CPU ms/host | CPU vs best peer | peak RSS MB | peak PSS MB | server CPU s "
                 "| machine busy s | other CPU s | valid |")
    out += [_cell_row(c, cells) for c in cells]
    out += ["", *targets_section("Targets (issues 2 and 10), from this run", targets(cells))]
    out += before_after(cells)
    out += failures_section([f"{c.hosts} hosts, {c.workload}, {c.tool}: {p}"
                             for c in cells for p in c.problems])
    out += bullets("Notes", [*meta.notes, *speed_gauge(cells)])
    out += every_run("| hosts | workload | rep | tool | ok | wall s | user s | sys s | peak RSS MB "
                     "| peak PSS MB | largest process MB | procs | server CPU s | busy s "
                     "| other CPU s | samples | sampler CPU s |", map(_run_row, results))
    return "\n".join(out)


class LoadNotes:
    """One note with the machine's load average at each fleet's start (and at the end)."""

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.loads: list[str] = []

    def add(self, label: str) -> None:
        """Record the load average now, under ``label``, and rewrite the note."""
        self.loads.append(f"{label} {os.getloadavg()[0]:.1f}")
        self.meta.notes[:] = [n for n in self.meta.notes if not n.startswith("Load average")]
        self.meta.notes.append("Load average (1 min) of the machine, all users: "
                               + ", ".join(self.loads)
                               + " (2 cores: above ~2, other work was running)")
