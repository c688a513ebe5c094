#!/usr/bin/env python3
"""Quick A/B probe for ``batch_scp`` puts of one big file: several ``batch_scp`` programs
(patched copies, other options) beside ``clush --copy`` and ``scp``, on one fleet, in one run.

``bench_scp.py`` is the benchmark of record; this script reuses its fleet, payload, tools and
per-run measurement (:func:`bench_scp.run_once`: wall, client CPU, server CPU, verification of
every host's copy) but runs only the ``file`` scenario at one host count and prints a compact
table of medians, for trying changes quickly (a run of 3 variants x 3 repetitions on 10 hosts
takes about a minute). Optionally records one extra run per tool with ``perf record -a`` and
prints where the servers' (``sshd``) and the client's CPU went.

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
                        help="comma list from hostbatch, clush, scp (scp: --hosts 1)")
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
    payload = bench_scp.make_file_payload(args.workdir / "payload", args.file_mb)
    tools = make_tools(args)
    count = args.hosts
    results: dict[str, list[bench_scp.RunResult]] = {tool.name: [] for tool in tools}
    with bench_scp.started_fleet(count, args.workdir, bench_scp.CURVE25519) as target:
        target.python_env["PYTHONPYCACHEPREFIX"] = str(args.workdir / "pycache")
        names = tuple(target.fleet.names[:count])
        scenario = bench_scp.Scenario("file" if count > 1 else "single", payload, names)
        warm = bench_scp.Scenario("warmup", bench_scp.make_warmup_payload(
            args.workdir / "payload"), names[:1])
        for tool in tools:
            bench_scp.run_once(tool, target, warm, -1, timeout=120)
        for rep in range(args.repeat):
            order = tools[rep % len(tools):] + tools[:rep % len(tools)]
            for tool in order:
                result = bench_scp.run_once(tool, target, scenario, rep, timeout=300,
                                            idle_wait=args.idle_wait)
                results[tool.name].append(result)
                log(f"{tool.name} rep {rep}: {result.wall:.2f}s client {result.cpu:.2f}s "
                    f"server {result.server_cpu:.2f}s noise {result.noise:.0%} "
                    f"{'ok' if result.ok else result.problem}")
        if args.perf:
            for tool in tools:
                perf_profile(tool, target, scenario, args.workdir)
    print(f"\n{count} hosts x {args.file_mb} MiB, medians of {args.repeat} "
          f"(load at start {os.getloadavg()[0]:.1f})\n")
    print("| tool | wall s | MiB/s | vs first | client CPU s | server CPU s | noise | ok |")
    print("|---|---|---|---|---|---|---|---|")
    first = None
    for tool in tools:
        runs = [r for r in results[tool.name] if r.ok]
        if not runs:
            print(f"| {tool.name} | - | - | - | - | - | - | 0/{len(results[tool.name])} |")
            continue
        wall = median([r.wall for r in runs])
        rate = count * args.file_mb / wall
        first = first or rate
        print(f"| {tool.name} | {wall:.2f} | {rate:.0f} | {rate / first:.2f}x | "
              f"{median([r.cpu for r in runs]):.2f} | {median([r.server_cpu for r in runs]):.2f}"
              f" | {median([r.noise for r in runs]):.0%} | {len(runs)}/"
              f"{len(results[tool.name])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
