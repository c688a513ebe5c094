"""bench_scp.py's results: one run's figures, the medians per (scenario, hosts, tool), issue
11's targets, the facts about the run, and the Markdown report (whose hand-written analysis,
after a marker, is kept when it is rewritten).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import benchkit_report, scp_more
from bench.benchkit import first_line, fmt, median, ratio, verdict
from bench.benchkit_proc import BENCH_USER
from bench.benchkit_report import (
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
    write_results,
)
from bench.scp_fleet import MIB, Payload
from bench.scp_tools import ALL_TOOLS, PEERS, Tool

SCENARIOS = ("file", "tree", "sync-same", "sync-one", "get", "single")
#: Marker in results-scp.md: everything after it is hand-written and kept when re-rendering.
ANALYSIS_MARKER = "<!-- analysis: hand-written below, kept when this file is rewritten -->"
#: Quiet runs here leave 0-8% of the machine's CPU to kernel threads (loopback networking,
#: softirq) and the benchmark itself; above this share something else was running.
NOISE_LIMIT_SHOWN = 0.15


@dataclass
class RunResult:
    """One timed run of one tool: its verdict and every figure measured."""

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
        """The machine's busy CPU used by neither the tool nor the servers."""
        return self.machine_busy - self.cpu - self.server_cpu


def summarize(results: Sequence[RunResult], noise_limit: float = NOISE_LIMIT_SHOWN
              ) -> list[Cell]:
    """One cell per (scenario, hosts, tool), in report order; redone runs do not count."""
    groups: dict[tuple[str, int, str], list[RunResult]] = {}
    for result in results:
        groups.setdefault((result.scenario, result.hosts, result.tool), []).append(result)
    cells = []
    for (scenario, hosts, tool), runs in groups.items():
        valid = [r for r in runs if r.ok and not r.redone]
        cells.append(Cell(
            scenario, hosts, tool, len(runs), len(valid), *wall_spread(valid),
            median([r.cpu for r in valid]), median([r.server_cpu for r in valid]),
            median([r.machine_busy for r in valid]), runs[0].total_bytes,
            failed_runs(runs), sum(1 for r in valid if r.noise > noise_limit)))
    order = {name: n for n, name in enumerate(ALL_TOOLS)}
    cells.sort(key=lambda c: (SCENARIOS.index(c.scenario), c.hosts,
                              order.get(c.tool.partition("@")[0], 99), c.tool))
    return cells


def find(cells: Sequence[Cell], scenario: str, hosts: int, tool: str) -> Cell | None:
    """The valid cell of (scenario, hosts, tool), if any."""
    return find_cell(cells, scenario=scenario, hosts=hosts, tool=tool)


def best_peer(cells: Sequence[Cell], scenario: str, hosts: int) -> Cell | None:
    """The pssh/clush cell with the highest throughput (lowest median wall)."""
    return best_cell(cells, PEERS, "wall", scenario=scenario, hosts=hosts)


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
    """paramiko's first cipher preference (it is imported here only, to read it)."""
    try:
        import paramiko
    except ImportError:
        return "unknown"
    preferred: Sequence[str] = getattr(paramiko.Transport, "_preferred_ciphers", ())
    return preferred[0] if preferred else "unknown"


def collect_meta(args: argparse.Namespace, tools: Sequence[Tool],
                 payloads: dict[str, Payload]) -> Meta:
    """The facts about this run that the report's header lists."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    machine = f"{machine_description()}; load average at start {load}"
    software = [f"server: {sshd_version()} (`sshd -D`, one per host, "
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
    return Meta(now(), command_line("bench/bench_scp.py"), machine, software, settings, [],
                args.noise_limit)


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


def _scenario_section(scenario: str, cells: Sequence[Cell]) -> list[str]:
    """One scenario's medians table (nothing when the scenario was not run)."""
    mine = [c for c in cells if c.scenario == scenario]
    if not mine:
        return []
    against = "vs scp (wall)" if scenario == "single" else "vs best peer (MiB/s)"
    out = [f"## {TITLES[scenario]}", "",
           *table(f"| hosts | tool | wall s | (min-max) | MiB/s | {against} | client CPU s "
                  "| server CPU s | other CPU s | machine busy | valid |")]
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
    return [*out, ""]


def _notes(results: Sequence[RunResult], meta: Meta) -> list[str]:
    """The given notes, and those the runs call for (noise, versions of hostbatch)."""
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
    return notes


def _run_row(r: RunResult) -> str:
    """The per-run table's row of one run."""
    return (f"| {r.scenario} | {r.hosts} | {r.rep + 1} | {r.tool} "
            f"| {'redone (noisy)' if r.redone else 'yes' if r.ok else 'NO'} "
            f"| {r.wall:.2f} | {r.total_bytes / MIB / r.wall:.0f} | {r.cpu_user:.2f} "
            f"| {r.cpu_sys:.2f} | {fmt(r.client_tree_cpu, '.2f')} | {r.server_cpu:.2f} "
            f"| {r.machine_busy:.2f} | {r.noise:.0%} | {fmt(r.load_before, '.2f')} |")


def render(results: Sequence[RunResult], meta: Meta, analysis: str = "") -> str:
    """The whole Markdown report, ``analysis`` (the hand-written part) kept at its end."""
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
        out += _scenario_section(scenario, cells)
    out += targets_section("Targets (issue 11, Speed), from this run", targets(cells))
    out += failures_section([f"{c.scenario}, {c.hosts} hosts, {c.tool}: {p}"
                             for c in cells for p in c.problems])
    out += bullets("Notes", _notes(results, meta))
    out += every_run("| scenario | hosts | rep | tool | ok | wall s | MiB/s | user s | sys s "
                     "| client cgroup CPU s | server CPU s | busy s | other share "
                     "| busy cores before |", map(_run_row, results))
    text = "\n".join([*out, ANALYSIS_MARKER, ""])
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
    """Write the report (--out, keeping its hand-written analysis) and every run as JSON."""
    write_results(args.out, render(results, meta, kept_analysis(args.out)), args.raw,
                  {"meta": asdict(meta), "results": [asdict(r) for r in results]})


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

