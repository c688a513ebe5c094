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
import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.benchkit import (  # noqa: E402
    Interrupted,
    Spawned,
    add_shared_flags,
    attempts,
    check_hosts_and_tools,
    comma_list,
    handle_signals,
    log,
    log_warmup,
    machine_busy_seconds,
    require_programs,
    require_root,
    rotated,
    wait_idle,
    wait_quiet,
)
from bench.benchkit_proc import (  # noqa: E402
    CURVE25519,
    TreeSampler,
    accounted_fleet,
    ensure_bench_user,
)
from bench.benchkit_report import Meta, write_results  # noqa: E402
from bench.benchkit_source import (  # noqa: E402
    export_source,
    installed_program,
    source_digest,
    write_launcher,
)
from bench.run_report import MB, LoadNotes, RunResult, collect_meta, render  # noqa: E402
from bench.run_tools import (  # noqa: E402
    ALL_TOOLS,
    B64_COMMAND,
    BIG_COMMAND,
    BIG_WORKLOADS,
    Clush,
    Hostbatch,
    Pdsh,
    Plain,
    Pssh,
    Target,
    Tool,
    Verdict,
    Workload,
    make_workload,
)

DEFAULT_OUT = REPO / "bench" / "results-run.md"
DEFAULT_WORKDIR = REPO / "bench" / "work"


def run_once(tool: Tool, target: Target, workload: Workload, rep: int, *,
             timeout: float, sample_interval: float, pss: bool,
             idle_wait: float = 0.0) -> RunResult:
    """Run ``tool`` once and measure it; the tool's process group is killed on any exit."""
    # A byte-code cache, as an installed copy has: under PYTHONDONTWRITEBYTECODE=1 an editable
    # install would recompile its modules on every run (~0.1 s, charged to the tool alone).
    env = {**os.environ, **tool.env(target),
           "PYTHONPYCACHEPREFIX": str(target.fleet.workdir / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
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
    with accounted_fleet(directory, count, kex, f"hostbatch-bench-{os.getpid()}-{count}"
                         ) as (fleet, listeners, accounting):
        inventory = fleet.write_inventory(directory / "hosts.ini")
        hostfile = directory / "hostlist"
        hostfile.write_text("".join(f"{address}\n" for address in fleet.addresses))
        yield Target(fleet, inventory, hostfile, directory / "stdout.txt",
                     directory / "stderr.txt", listeners, accounting)



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


def _add_file_flags(parser: argparse.ArgumentParser) -> None:
    """Where the results, the raw runs and the work files go; which batch_run."""
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


def _add_measuring_flags(parser: argparse.ArgumentParser) -> None:
    """How runs are sampled, and how noise on a shared machine is kept out."""
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


def _add_source_flags(parser: argparse.ArgumentParser) -> None:
    """Which hostbatch is measured (a snapshot, a baseline), and the warm-up."""
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, checked (a bad value is a usage error, exit 2)."""
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
    add_shared_flags(parser, all_tools=ALL_TOOLS, cell="fleet size, workload",
                     default_kex=CURVE25519,
                     kex_note=", whose post-quantum sntrup761 costs the ssh-based tools ~60 ms "
                     "of client CPU per host (paramiko cannot use it)")
    parser.add_argument("--workloads", default="true,1mb",
                        help="comma list: true (no output), 1mb (`seq 1 160000`, about "
                        "1 MB per host in short lines) and/or b64 (issue 10's `head -c 1000000 "
                        "/dev/zero | base64`, 1.3 MB in 76-character lines)")
    parser.add_argument("--big-max-hosts", type=int, default=100, metavar="N",
                        help="run the 1mb workload only on fleets of at most N hosts (it is "
                        "slow with 500: 500 MB of output per run)")
    _add_file_flags(parser)
    _add_measuring_flags(parser)
    _add_source_flags(parser)
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
    revision = None if source == "worktree" else "HEAD" if source == "head" else source
    package = export_source(revision, target)
    program = write_launcher(target, "batch_run",
                             "batch_run from a snapshot of src/ taken by bench/bench_run.py")
    return str(program), source_digest(package)


def build_tools(args: argparse.Namespace) -> list[Tool]:
    """The tools to time, in --tools order, and hostbatch at --baseline last."""
    program = args.batch_run
    if program is None and args.snapshot:
        program, args.source_digest = snapshot_batch_run(args.workdir, args.source)
    if program is None:
        program = installed_program("batch_run")
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
    require_programs({"pssh": "parallel-ssh", "clush": "clush", "pdsh": "pdsh"}, args.tool_names)
    names = [*args.tool_names, *(["baseline"] if baseline is not None else [])]
    return [makers[name]() for name in names]


def save(results: Sequence[RunResult], meta: Meta, workloads: dict[str, Workload],
         args: argparse.Namespace) -> None:
    """Write the report (--out) and every run as JSON (--raw)."""
    write_results(args.out, render(results, meta, workloads), args.raw,
                  {"meta": asdict(meta),
                   "workloads": {k: asdict(w) for k, w in workloads.items()},
                   "results": [asdict(r) for r in results]})


def measure(tool: Tool, target: Target, workload: Workload, rep: int,
            args: argparse.Namespace) -> list[RunResult]:
    """One timed run, repeated while other work on the machine spoils it (see --noise-limit)."""
    runs: list[RunResult] = []
    for result, noisy in attempts(
            lambda: run_once(tool, target, workload, rep, timeout=args.timeout,
                             sample_interval=args.sample_ms / 1000, pss=args.pss,
                             idle_wait=args.idle_wait),
            noise_limit=args.noise_limit, retries=args.noise_retries,
            may_redo=lambda r: r.wall <= args.redo_max_wall):
        result.noisy = noisy
        runs.append(result)
        state = "ok" if result.ok else "FAILED: " + result.problem
        if result.noisy:
            state += f", noisy: other work took {result.noise:.0%} of the machine"
            state += ", running it again" if result.redone else ""
        log(f"{target.count:>4} hosts {workload.key:>4} rep {rep + 1} {tool.name:<9} "
            f"wall {result.wall:6.2f}s cpu {result.cpu:6.2f}s "
            f"({result.cpu * 1000 / target.count:5.1f} ms/host) "
            f"rss {result.peak_rss / MB:5.0f} MB server {result.server_cpu:6.2f}s {state}")
    return runs


def render_only(args: argparse.Namespace) -> int:
    """--render-only: the report again from a --raw file, with any new --note."""
    raw: dict[str, Any] = json.loads(args.render_only.read_text())
    loaded = [RunResult(**r) for r in raw["results"]]
    loaded_workloads = {k: Workload(**w) for k, w in raw["workloads"].items()}
    loaded_meta = Meta(**raw["meta"])
    loaded_meta.notes += [n for n in args.note if n not in loaded_meta.notes]
    args.out.write_text(render(loaded, loaded_meta, loaded_workloads))
    print(args.out)
    return 0


def lock_workdir(workdir: Path) -> bool:
    """One benchmark per work directory (two would share fleet directories and output files):
    False, after saying so, when another holds it. The lock lasts until the process exits."""
    workdir.mkdir(parents=True, exist_ok=True)
    lock = os.open(workdir / ".bench_run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another bench_run.py is running with --workdir {workdir} (its fleets, "
              "captured output and snapshot live there); wait for it or pass another "
              "--workdir", file=sys.stderr)
        return False
    return True


def run_fleet(count: int, tools: Sequence[Tool], workloads: dict[str, Workload],
              args: argparse.Namespace, results: list[RunResult]) -> None:
    """Start a fleet of ``count`` hosts, warm every tool up, then time every repetition of
    every (workload, tool), the tools' order rotated; the runs are added to ``results``."""
    log(f"starting a fleet of {count} sshd hosts")
    with started_fleet(count, args.workdir, args.kex) as target:
        mine = [w for w in workloads.values()
                if w.key not in BIG_WORKLOADS or count <= args.big_max_hosts]
        if args.warmup:
            for tool in tools:
                log_warmup(tool.name, run_once(tool, target, workloads.get("true", mine[0]), -1,
                                               timeout=args.timeout, sample_interval=0.2,
                                               pss=False))
        for rep in range(args.repeat):
            for workload in mine:
                for tool in rotated(tools, rep):
                    results.extend(measure(tool, target, workload, rep, args))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        return render_only(args)
    if not require_root("bench_run.py") or not lock_workdir(args.workdir):
        return 2
    tools = build_tools(args)
    known = {"true": make_workload("true", "true"), "1mb": make_workload("1mb", BIG_COMMAND),
             "b64": make_workload("b64", B64_COMMAND)}
    workloads = {key: known[key] for key in args.workload_keys}
    handle_signals()
    ensure_bench_user()
    meta = collect_meta(args, tools, workloads)
    meta.notes += args.note
    skipped = [n for n in args.host_counts if n > args.big_max_hosts]
    if set(BIG_WORKLOADS) & set(workloads) and skipped:
        meta.notes.append(f"The 1mb/b64 workloads was not run on the {', '.join(map(str, skipped))}"
                          f"-host fleet(s) (`--big-max-hosts {args.big_max_hosts}`): "
                          f"{max(skipped)} MB of output per run, slowest peers minutes per run.")
    results: list[RunResult] = []
    loads = LoadNotes(meta)
    try:
        for count in args.host_counts:
            loads.add(f"at the start of the {count}-host fleet")
            run_fleet(count, tools, workloads, args, results)
            digest = getattr(args, "source_digest", None)
            note = ("src/ changed while the benchmark ran; every hostbatch run used the copy "
                    "taken at the start")
            if (digest and args.source == "worktree" and note not in meta.notes
                    and source_digest(REPO / "src" / "hostbatch") != digest):
                meta.notes.append(note)
            if count == args.host_counts[-1]:
                loads.add("at the end")
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
