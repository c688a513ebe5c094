#!/usr/bin/env python3
"""Benchmark ``batch_scp`` puts against parallel-scp (pssh), ``clush --copy`` and OpenSSH ``scp``.

One fleet of real OpenSSH ``sshd`` hosts is started on 127.0.x.y (``tests/support/fleet.py``),
each host with its own private, initially empty tmpfs at ``/srv/hostbatch-fleet`` (so hosts
never overwrite each other's files: the machine looks like many). The login user is the plain
user ``hbbench`` (root's shell start-up files would distort every ssh-based tool). Then, for
every scenario, every tool puts the same payload into ``/srv/hostbatch-fleet/dst/`` on the same
hosts with the same fan-out:

* ``file``: one file of ``--file-mb`` MiB of random bytes (default 64) to N hosts;
* ``tree``: ``--tree-files`` small files (default 1,000; 1-8 KiB of random bytes each) in
  ``--tree-dirs`` subdirectories (default 10) to N hosts (``-r``);
* ``single``: the ``file`` payload to one host, where OpenSSH ``scp`` joins in.

Tools are interleaved within each repetition, their order rotated from one repetition to the
next. Before every run the destination is emptied on every host of the scenario; after every
run each host reports its copy (one ``ssh`` per host, not timed): the sorted list of names,
types and file sizes, the number of files and the SHA-256 of all file contents concatenated in
name order. A run counts only when the tool exited 0, reported success for every host, and every
host's report equals the one computed locally from the source: a run that silently fails
(missing host, truncated or corrupt file, stray temporary file) is shown as failed and excluded
from the medians.

Measured per run: wall time (spawn to reap), client CPU (user + system of the tool and every
descendant it waited for: ``os.wait4`` rusage; includes pssh's and clush's ``scp``/``ssh``
children and hostbatch's worker processes), server CPU (a cgroup-v1 ``cpuacct`` group holding
every sshd, so every connection, session and ``internal-sftp`` process counts, exited or not),
and the whole machine's busy CPU time (``/proc/stat``). Busy minus client minus server is CPU
nobody in the run accounts for (kernel threads, foreign load): before each run the script waits
for a quiet machine, and a run where that share is too high is redone.

The Python tools get a byte-code cache (``PYTHONPYCACHEPREFIX``) and an untimed warm-up put, so
an environment with ``PYTHONDONTWRITEBYTECODE=1`` does not make an editable install recompile
its modules on every run.

Needs root (sshd on 127.0.x.y, a login user, per-host mount namespaces). Example::

    /tmp/venv0/bin/python bench/bench_scp.py --hosts 10,50 --repeat 3 \\
        --tools hostbatch,pssh,clush,scp

See the "batch_scp benchmark" section of bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import scp_more  # noqa: E402
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
    CpuAccounting,
    accounted_fleet,
    ensure_bench_user,
)
from bench.benchkit_source import (  # noqa: E402
    describe_checkout,
    installed_program,
    snapshot_commit,
)
from bench.scp_fleet import (  # noqa: E402
    MIB,
    Payload,
    Scenario,
    Target,
    check_space,
    clear_destination,
    make_file_payload,
    make_tree_payload,
    make_warmup_payload,
    prepare_hosts,
    verify_copies,
)
from bench.scp_report import (  # noqa: E402
    NOISE_LIMIT_SHOWN,
    SCENARIOS,
    Meta,
    RunResult,
    collect_meta,
    kept_analysis,
    merge_raw,
    render,
    save,
)
from bench.scp_tools import ALL_TOOLS, Clush, Hostbatch, Prsync, Pssh, Scp, Tool  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "results-scp.md"
DEFAULT_WORKDIR = Path("/tmp/hostbatch-bench-scp")
#: Distinct from the fleets of the other benchmarks and tests (127.0.0.10 up).
FIRST_ADDRESS = "127.0.3.10"


def run_once(tool: Tool, target: Target, scenario: Scenario, rep: int, *,
             timeout: float, idle_wait: float = 0.0, idle_cores: float = 0.3) -> RunResult:
    """Clear the destination, run ``tool`` once, measure it, verify every host's copy.

    With ``idle_wait``, first wait up to that many seconds for the machine to be quiet (busy
    below ``idle_cores`` cores), so foreign load disturbs the run as little as possible.
    """
    prepare_hosts(target, scenario)
    if scenario.key == "get":
        scp_more.clear_get_dir(target.workdir)
    env = {**os.environ, **tool.env(), **target.python_env}
    if "PYTHONPYCACHEPREFIX" in target.python_env:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv = tool.argv(target, scenario)
    wait_quiet(target.listeners, poll=0.05)
    load_before = wait_idle(idle_wait, idle_cores, 0.5) if idle_wait > 0 else float("nan")
    clients = target.clients
    setup = clients.join if clients is not None and clients.active else None
    server_before = target.server_cpu_seconds()
    client_before = clients.seconds() if clients is not None else float("nan")
    busy_before = machine_busy_seconds()
    with Spawned(argv, env, target.out, target.err, timeout, setup) as tool_process:
        reaped = tool_process.reap()
    wall, usage = reaped.wall, reaped.usage
    busy = machine_busy_seconds() - busy_before
    wait_quiet(target.listeners, poll=0.05)
    server = target.server_cpu_seconds() - server_before
    client_tree = clients.seconds() - client_before if clients is not None else float("nan")
    status = reaped.status
    if wall >= timeout:
        problem = f"killed after the {timeout:g}s timeout"
    else:
        problem = tool.check(target, scenario, status) or verify_copies(target, scenario,
                                                                              tool.name)
    source = tool.source() if isinstance(tool, Hostbatch) else ""
    return RunResult(scenario.key, scenario.hosts, tool.name, rep, not problem, problem, status,
                     wall, usage.ru_utime, usage.ru_stime, client_tree, server, busy,
                     load_before, scenario.total_bytes, source=source)


@contextlib.contextmanager
def started_fleet(count: int, workdir: Path, kex: str) -> Iterator[Target]:
    """A running fleet of ``count`` hosts with private tmpfs; always stopped on the way out.
    The servers' CPU is counted by a cgroup holding the sshd listeners (unshare and sh exec
    into sshd), else by the listeners' cutime/cstime (every reaped connection)."""
    directory = workdir / f"fleet-{count}"
    clients = CpuAccounting(f"hostbatch-bench-scp-clients-{os.getpid()}")
    try:
        with accounted_fleet(directory, count, kex, f"hostbatch-bench-scp-servers-{os.getpid()}",
                             private_tmp=True, first_address=FIRST_ADDRESS
                             ) as (fleet, listeners, servers):
            assert fleet.private_dir is not None
            inventory = fleet.write_inventory(directory / "hosts.ini")
            yield Target(fleet, inventory, directory, str(fleet.private_dir / "dst"), listeners,
                         servers, clients)
    finally:
        clients.close()


def _add_file_flags(parser: argparse.ArgumentParser) -> None:
    """Where the results, the raw runs and the work files go."""
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown results file (rewritten after every repetition; the "
                        "hand-written part after the analysis marker is kept)")
    parser.add_argument("--raw", type=Path, default=None,
                        help="every run as JSON (default WORKDIR/raw-scp.json)")
    parser.add_argument("--render-only", type=Path, nargs="+", metavar="RAW_JSON",
                        help="do not run anything: re-render --out from --raw files; with "
                        "several, a later file's cells (scenario, hosts, tool) replace the "
                        "earlier files' (e.g. a noisy scenario measured again)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="payloads, fleet keys, configs, logs and captured output")


def _add_hostbatch_flags(parser: argparse.ArgumentParser) -> None:
    """Which hostbatch programs are measured: revisions, variants, the installed one."""
    parser.add_argument("--hostbatch-rev", metavar="REV[,REV...]",
                        help="measure hostbatch at this git revision of the repository (e.g. "
                        "HEAD): src/hostbatch is exported to WORKDIR and run from there, so "
                        "edits to the checkout during the benchmark do not leak in; more "
                        "revisions join as tools `hostbatch@COMMIT`, in the same run")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PROGRAM",
                        help="also measure another batch_scp program (e.g. a patched copy) as "
                        "tool `hostbatch@NAME`, in the same run (repeatable)")
    parser.add_argument("--batch-scp", default=None,
                        help="batch_scp program (default: next to this Python, else on PATH)")


def _add_measuring_flags(parser: argparse.ArgumentParser) -> None:
    """Noise control on a shared machine, the byte-code cache and the warm-up."""
    parser.add_argument("--idle-wait", type=float, default=60.0, metavar="S",
                        help="before each run, wait up to S seconds for the machine to be quiet "
                        "(0: do not wait); runs that started on a busy machine are flagged")
    parser.add_argument("--idle-cores", type=float, default=0.3, metavar="CORES",
                        help="'quiet' means fewer than this many cores busy over 0.5 s")
    parser.add_argument("--noise-limit", type=float, default=NOISE_LIMIT_SHOWN, metavar="SHARE",
                        help="a run during which CPU used by neither the tool nor the servers "
                        "exceeds this share of the machine is run again")
    parser.add_argument("--no-pycache", dest="pycache", action="store_false",
                        help="do not give the tools a byte-code cache (PYTHONPYCACHEPREFIX under "
                        "WORKDIR, PYTHONDONTWRITEBYTECODE dropped): without it, an environment "
                        "with PYTHONDONTWRITEBYTECODE=1 recompiles an editable install's modules "
                        "on every run")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up put (a one-line file to one host) of each "
                        "tool, which also fills the byte-code cache")
    parser.add_argument("--noise-retries", type=int, default=2, metavar="N",
                        help="at most N extra attempts per noisy run; the last one counts")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, checked (a bad value is a usage error, exit 2)."""
    parser = argparse.ArgumentParser(
        prog="bench_scp.py",
        description="Time `batch_scp` puts beside parallel-scp, clush --copy and scp on a fleet "
        "of real local sshd hosts (each with its own tmpfs), verify every host's copy after "
        "every run, and write a Markdown results table. Needs root. See bench/README.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--hosts", default="10,50",
                        help="comma list of host counts for the file and tree scenarios (one "
                        "fleet of the largest size is started; smaller counts use its first "
                        "hosts)")
    add_shared_flags(parser, all_tools=ALL_TOOLS, cell="scenario, hosts",
                     default_kex=CURVE25519, tools_note=" (scp: single host only)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma list: file (one file to N hosts), tree (small files to N "
                        "hosts), sync-same (the tree again, unchanged, --sync), sync-one (one "
                        "file changed, --sync), get (the tree from N hosts), single (one file "
                        "to one host)")
    parser.add_argument("--file-mb", type=int, default=64, help="size of the file, in MiB")
    parser.add_argument("--tree-files", type=int, default=1000, help="files in the tree")
    parser.add_argument("--tree-dirs", type=int, default=10, help="subdirectories of the tree")
    parser.add_argument("--hostbatch-args", default="",
                        help="extra batch_scp options (e.g. '--verify'), shell-quoted")
    _add_file_flags(parser)
    _add_hostbatch_flags(parser)
    _add_measuring_flags(parser)
    args = parser.parse_args(argv)
    check_hosts_and_tools(parser, args, ALL_TOOLS)
    args.host_counts = sorted(set(args.host_counts))  # each fleet size once, smallest first
    args.scenario_keys = comma_list(args.scenarios)
    if set(args.scenario_keys) - set(SCENARIOS) or not args.scenario_keys:
        parser.error(f"--scenarios takes {', '.join(SCENARIOS)}")
    if args.noise_retries < 0:
        parser.error("--noise-retries must be >= 0")
    if min(args.repeat, args.fanout, args.file_mb, args.tree_files, args.tree_dirs) < 1:
        parser.error("--repeat, --fanout, --file-mb, --tree-files and --tree-dirs must be >= 1")
    if args.raw is None:
        args.raw = args.workdir / "raw-scp.json"
    return args


def hostbatch_tools(args: argparse.Namespace) -> tuple[Hostbatch, list[Tool]]:
    """hostbatch as measured (--batch-scp, the first --hostbatch-rev, else the installed one),
    and the other revisions and --variant programs, measured as tools of their own."""
    program = args.batch_scp
    package: Path | None = None
    described = ""
    extra = shlex.split(args.hostbatch_args)
    others: list[Tool] = []
    revisions = [rev.strip() for rev in (args.hostbatch_rev or "").split(",") if rev.strip()]
    for n, rev in enumerate(revisions):
        commit, launcher, snapshot = snapshot_commit(rev, args.workdir, "batch_scp")
        what = f"commit {commit[:10]} (`--hostbatch-rev {rev}`, a snapshot)"
        if n == 0:
            program, package, described = str(launcher), snapshot, what
        else:
            others.append(Hostbatch(args.fanout, str(launcher), extra, package=snapshot,
                                    described=what, name=f"hostbatch@{commit[:7]}"))
    for spec in args.variant:
        label, sep, variant = spec.partition("=")
        if not sep or not label or not variant:
            raise SystemExit(f"--variant expects NAME=PROGRAM, not {spec!r}")
        others.append(Hostbatch(args.fanout, variant, extra, described=f"variant `{variant}`",
                                name=f"hostbatch@{label}"))
    if not revisions and program is None:
        program = installed_program("batch_scp")
        spec = importlib.util.find_spec("hostbatch")
        if spec is not None and spec.origin is not None:
            package = Path(spec.origin).parent
            described = describe_checkout(package)
    if program is None:
        raise SystemExit("batch_scp not found: install hostbatch or pass --batch-scp")
    return Hostbatch(args.fanout, program, extra, package=package, described=described), others


def build_tools(args: argparse.Namespace) -> list[Tool]:
    """The tools to time, in --tools order, hostbatch's other revisions and variants right
    after hostbatch."""
    hostbatch, others = hostbatch_tools(args)
    makers: dict[str, Callable[[], Tool]] = {
        "hostbatch": lambda: hostbatch,
        "pssh": lambda: Pssh(args.fanout),
        "clush": lambda: Clush(args.fanout),
        "prsync": lambda: Prsync(args.fanout),
        "scp": lambda: Scp(args.fanout),
    }
    require_programs({"pssh": "parallel-scp", "clush": "clush", "scp": "scp",
                      "prsync": "parallel-rsync"}, args.tool_names)
    tools = [makers[name]() for name in args.tool_names]
    if "hostbatch" not in args.tool_names:
        return tools
    at = args.tool_names.index("hostbatch")
    return tools[:at + 1] + others + tools[at + 1:]


def build_scenarios(args: argparse.Namespace, target: Target,
                    payloads: dict[str, Payload]) -> list[Scenario]:
    """Every (scenario, host count) to time, in report order."""
    scenarios: list[Scenario] = []
    for key in SCENARIOS:
        if key not in args.scenario_keys:
            continue
        if key == "single":
            scenarios.append(Scenario(key, payloads["file"], (target.fleet.names[0],)))
            continue
        payload = payloads["tree" if key in scp_more.SEEDED else key]
        for count in args.host_counts:
            scenarios.append(Scenario(key, payload, tuple(target.fleet.names[:count])))
    return scenarios


def make_payloads(args: argparse.Namespace) -> dict[str, Payload]:
    """The file and/or the tree the chosen scenarios copy (reused from the work directory)."""
    log("preparing payloads")
    payloads: dict[str, Payload] = {}
    if {"file", "single"} & set(args.scenario_keys):
        payloads["file"] = make_file_payload(args.workdir / "payload", args.file_mb)
    if {"tree", *scp_more.SEEDED} & set(args.scenario_keys):
        payloads["tree"] = make_tree_payload(args.workdir / "payload", args.tree_files,
                                             args.tree_dirs)
    return payloads


def measure(tool: Tool, target: Target, scenario: Scenario, rep: int,
            args: argparse.Namespace) -> list[RunResult]:
    """One timed run, repeated while other work on the machine spoils it (see --noise-limit)."""
    runs: list[RunResult] = []
    for result, _ in attempts(
            lambda: run_once(tool, target, scenario, rep, timeout=args.timeout,
                             idle_wait=args.idle_wait, idle_cores=args.idle_cores),
            noise_limit=args.noise_limit, retries=args.noise_retries):
        runs.append(result)
        rate = result.total_bytes / MIB / result.wall
        log(f"{scenario.key} x{scenario.hosts} rep {rep + 1} {tool.name}: "
            f"{result.wall:.2f}s {rate:.0f} MiB/s cpu {result.cpu:.2f}s "
            f"server {result.server_cpu:.2f}s noise {result.noise:.0%} "
            + ("ok" if result.ok else f"FAILED: {result.problem}")
            + (" (noisy: again)" if result.redone else ""))
    return runs


def run_fleet(count: int, tools: Sequence[Tool], payloads: dict[str, Payload], meta: Meta,
              args: argparse.Namespace, results: list[RunResult]) -> None:
    """Start the fleet, warm every tool up, then time every repetition of every (scenario,
    tool), the tools' order rotated; the runs are added to ``results`` (saved after each
    repetition)."""
    log(f"starting a fleet of {count} sshd hosts with private tmpfs")
    with started_fleet(count, args.workdir, args.kex) as target:
        for payload in payloads.values():
            check_space(target, payload)
        if args.pycache:
            target.python_env["PYTHONPYCACHEPREFIX"] = str(args.workdir / "pycache")
        if args.warmup:
            warm = Scenario("warmup", make_warmup_payload(args.workdir / "payload"),
                            (target.fleet.names[0],))
            for tool in tools:
                log_warmup(tool.name, run_once(tool, target, warm, -1, timeout=args.timeout))
        servers = target.servers
        meta.settings.append(
            "server CPU: " + (f"a {servers.kind} holding every sshd (so every connection, "
                              "session and sftp process, exited or not)"
                              if servers is not None and servers.active else
                              "cutime + cstime of the sshd listeners (reaped connections "
                              "only: an undercount)"))
        scenarios = build_scenarios(args, target, payloads)
        for rep in range(args.repeat):
            for scenario in scenarios:
                for tool in rotated([t for t in tools if t.applies(scenario)], rep):
                    results.extend(measure(tool, target, scenario, rep, args))
            save(results, meta, args)
        with contextlib.suppress(Exception):
            clear_destination(target, target.fleet.names)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        loaded, meta = merge_raw(args.render_only)
        args.out.write_text(render(loaded, meta, kept_analysis(args.out)))
        print(args.out)
        return 0
    if not require_root("bench_scp.py"):
        return 2
    tools = build_tools(args)
    handle_signals()
    args.workdir.mkdir(parents=True, exist_ok=True)
    payloads = make_payloads(args)
    ensure_bench_user()
    meta = collect_meta(args, tools, payloads)
    count = max(args.host_counts) if set(args.scenario_keys) - {"single"} else 1
    results: list[RunResult] = []
    try:
        run_fleet(count, tools, payloads, meta, args, results)
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({type(exc).__name__}); fleet stopped")
        if results:
            meta.notes.append("The run was interrupted: this table is incomplete.")
            save(results, meta, args)
        return 130
    save(results, meta, args)
    log(f"wrote {args.out} and {args.raw}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
