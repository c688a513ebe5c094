#!/usr/bin/env python3
"""Quick A/B probe for ``batch_scp`` puts: several ``batch_scp`` programs (patched copies,
other options) beside ``clush --copy``, ``scp`` and ``batch_run -cmd true`` (the connect
floor), on one fleet, in one run.

``bench_scp.py`` is the benchmark of record; this script reuses its fleet, payload, tools and
per-run measurement (:func:`bench_scp.run_once`: wall, client CPU, server CPU, verification of
every host's copy) at one host count and prints a compact table of medians, for trying
changes quickly (3 variants x 3 repetitions of a 64 MiB file to 10 hosts: about a minute).
Optionally records one extra run per tool with ``perf record -a`` and prints where the
servers' (``sshd``) and the client's CPU went.

Example (as root, under the integration lock)::

    flock /tmp/hostbatch-integration.lock .venv/bin/python bench/scp_probe.py --hosts 10 \\
        --repeat 3 --variant gcm=/tmp/hbvar/gcm/batch_scp --tools hostbatch,clush
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import bench_scp  # noqa: E402
from bench.benchkit import log, median  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10, help="hosts to put the file on")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool")
    parser.add_argument("--file-mb", type=int, default=64, help="size of the file, MiB")
    parser.add_argument("--tools", default="hostbatch,clush",
                        help="comma list from hostbatch, clush, scp (scp: --hosts 1), "
                             "batch_run (batch_run -cmd true: runs in sync-same only), prsync "
                             "(parallel-rsync: sync scenarios)")
    parser.add_argument("--scenarios", default="file",
                        help="comma list from file, tree, sync-same, sync-one (see "
                             "bench_scp.py)")
    parser.add_argument("--tree-files", type=int, default=1000)
    parser.add_argument("--tree-dirs", type=int, default=10)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PROGRAM",
                        help="another batch_scp program, as tool hostbatch@NAME (repeatable)")
    parser.add_argument("--hostbatch-args", default="",
                        help="extra batch_scp options for every hostbatch tool")
    parser.add_argument("--fanout", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hostbatch-scp-probe"))
    parser.add_argument("--idle-wait", type=float, default=10.0,
                        help="wait up to S s for a quiet machine before each run")
    parser.add_argument("--perf", action="store_true",
                        help="one more run per tool under perf record -a; print the top "
                             "symbols of sshd and of the tool")
    return parser.parse_args(argv)


class BatchRunTrue(bench_scp.Tool):
    """``batch_run -cmd true`` on the same hosts: what connecting and one command cost, the
    floor under any ``--sync`` (run on the seeded ``sync-same`` hosts, whose copies it leaves
    as they are, so the usual check of every host's copy passes)."""

    name = "batch_run"

    def applies(self, scenario: bench_scp.Scenario) -> bool:
        return scenario.key == "sync-same"

    def argv(self, target: bench_scp.Target, scenario: bench_scp.Scenario) -> list[str]:
        program = str(Path(sys.executable).with_name("batch_run"))
        return [program, "-i", str(target.inventory), "-h", ",".join(scenario.names), "-f",
                str(self.fanout), "-cmd", "true"]

    def env(self) -> dict[str, str]:
        return {"NO_COLOR": "1"}


def make_tools(args: argparse.Namespace) -> list[bench_scp.Tool]:
    extra = shlex.split(args.hostbatch_args)
    program = str(Path(sys.executable).with_name("batch_scp"))
    tools: list[bench_scp.Tool] = []
    for name in args.tools.split(","):
        if name == "hostbatch":
            tools.append(bench_scp.Hostbatch(args.fanout, program, extra))
        elif name == "clush":
            tools.append(bench_scp.Clush(args.fanout))
        elif name == "scp":
            tools.append(bench_scp.Scp(args.fanout))
        elif name == "batch_run":
            tools.append(BatchRunTrue(args.fanout))
        elif name == "prsync":
            tools.append(bench_scp.Prsync(args.fanout))
        else:
            raise SystemExit(f"unknown tool {name}")
    for spec in args.variant:
        name, _, variant = spec.partition("=")
        tools.append(bench_scp.Hostbatch(args.fanout, variant, extra, name=f"hostbatch@{name}"))
    return tools


def perf_profile(tool: bench_scp.Tool, target: bench_scp.Target,
                 scenario: bench_scp.Scenario, workdir: Path) -> None:
    """One run under ``perf record -a -g``; print the top symbols of sshd and of the tool."""
    data = workdir / f"perf-{tool.name}.data"
    recorder = subprocess.Popen(["perf", "record", "-a", "-q", "-o", str(data), "-F", "499"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench_scp.run_once(tool, target, scenario, 99, timeout=300)
    finally:
        recorder.send_signal(2)
        recorder.wait()
    for comms in ("sshd", "python3,python,batch_scp,ssh,scp"):
        report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                                 "--comms", comms, "--sort", "dso,sym", "--percent-limit",
                                 "1.5"], capture_output=True, text=True, check=False)
        lines = [line for line in report.stdout.splitlines()
                 if line.strip() and not line.startswith("#")]
        print(f"\n## perf {tool.name}, comm {comms} (share of all samples)")
        print("\n".join(lines[:25]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    tools = make_tools(args)
    count = args.hosts
    results: dict[tuple[str, str], list[bench_scp.RunResult]] = {}
    with bench_scp.started_fleet(count, args.workdir, bench_scp.CURVE25519) as target:
        target.python_env["PYTHONPYCACHEPREFIX"] = str(args.workdir / "pycache")
        names = tuple(target.fleet.names[:count])
        scenarios = [scenario_of(key, args, names) for key in args.scenarios.split(",")]
        warm = bench_scp.Scenario("warmup", bench_scp.make_warmup_payload(
            args.workdir / "payload"), names[:1])
        for tool in tools:
            if tool.name != "batch_run":
                bench_scp.run_once(tool, target, warm, -1, timeout=120)
        for rep in range(args.repeat):
            for scenario in scenarios:
                runners = [tool for tool in tools if tool.applies(scenario)]
                shift = rep % max(1, len(runners))
                for tool in runners[shift:] + runners[:shift]:
                    result = bench_scp.run_once(tool, target, scenario, rep, timeout=300,
                                                idle_wait=args.idle_wait)
                    results.setdefault((scenario.key, tool.name), []).append(result)
                    log(f"{scenario.key} {tool.name} rep {rep}: {result.wall:.2f}s client "
                        f"{result.cpu:.2f}s server {result.server_cpu:.2f}s noise "
                        f"{result.noise:.0%} {'ok' if result.ok else result.problem}")
        if args.perf:
            for tool in tools:
                if tool.applies(scenarios[0]):
                    perf_profile(tool, target, scenarios[0], args.workdir)
    print_table(results, count, args)
    return 0


def scenario_of(key: str, args: argparse.Namespace, names: tuple[str, ...]
                ) -> bench_scp.Scenario:
    """The scenario ``key`` (``file`` is ``single`` on one host) with its payload."""
    root = args.workdir / "payload"
    if key == "file":
        return bench_scp.Scenario("file" if len(names) > 1 else "single",
                                  bench_scp.make_file_payload(root, args.file_mb), names)
    return bench_scp.Scenario(key, bench_scp.make_tree_payload(root, args.tree_files,
                                                               args.tree_dirs), names)


def print_table(results: dict[tuple[str, str], list[bench_scp.RunResult]], count: int,
                args: argparse.Namespace) -> None:
    """Medians per (scenario, tool); ``vs first`` compares walls with the scenario's first
    tool (above 1.00x: faster than it)."""
    print(f"\n{count} hosts, medians of {args.repeat} (load at end "
          f"{os.getloadavg()[0]:.1f})\n")
    print("| scenario | tool | wall s | vs first (wall) | client CPU s | server CPU s | noise "
          "| ok |")
    print("|---|---|---|---|---|---|---|---|")
    first: dict[str, float] = {}
    for (scenario, tool), runs in results.items():
        good = [r for r in runs if r.ok]
        if not good:
            print(f"| {scenario} | {tool} | - | - | - | - | - | 0/{len(runs)} |")
            continue
        wall = median([r.wall for r in good])
        base = first.setdefault(scenario, wall)
        print(f"| {scenario} | {tool} | {wall:.2f} | {base / wall:.2f}x | "
              f"{median([r.cpu for r in good]):.2f} | {median([r.server_cpu for r in good]):.2f}"
              f" | {median([r.noise for r in good]):.0%} | {len(good)}/{len(runs)} |")


if __name__ == "__main__":
    sys.exit(main())
