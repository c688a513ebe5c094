#!/usr/bin/env python3
"""Benchmark ``hostbatch console`` against fresh ``batch_run`` runs and clush's interactive mode.

For each fleet size N (default 100 and 500) this starts N real OpenSSH ``sshd`` hosts
(``tests/support/fleet.py``) and, for each command (``true``, then ``uname -r``), times:

* ``console``: one ``hostbatch console -g all`` on a pseudo-terminal, fed the command 10
  times; each command is timed from the Enter key to the next prompt (the summary printed);
  the session's start (connecting to every host) is reported apart;
* ``batch_run``: 10 fresh ``batch_run -g all -cmd CMD`` runs, each timed from spawn to exit;
* ``clush``: one interactive ``clush`` (no command) on a pseudo-terminal, fed the same 10
  lines, each timed from Enter to its next ``clush>`` prompt;
* with ``--baseline REV``, also the console as of git revision REV (a snapshot of its
  sources, started as ``batch_run`` without a command), in the same run, for a before/after
  table.

Every command is checked: ``batch_run`` and the console must report N ok; for ``uname -r``
every tool must print one line per host. The target (issue 13): each console command after
the first takes at most 0.1x the median wall of a fresh ``batch_run`` of the same command.

Needs root (the fleet binds 127.0.0.x and creates the login user ``hbbench``). Run it under
the integration lock, from the repository root::

    flock /tmp/hostbatch-integration.lock .venv/bin/python bench/bench_console.py
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import os
import platform
import pty
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bench_run import snapshot_batch_run  # noqa: E402
from bench.benchkit import (  # noqa: E402
    CLK_TCK,
    children_of,
    first_line,
    fleet_listeners,
    log,
    median,
    raise_interrupted,
    stat_fields,
)
from bench.benchkit_proc import BENCH_USER, ensure_bench_user  # noqa: E402
from tests.support.fleet import Fleet  # noqa: E402

BIN = Path(sys.executable).parent
COMMANDS = ("true", "uname -r")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|[\x01\x02\r]")
HOSTBATCH_PROMPT = re.compile(rb"\(\d+\)> $")
CLUSH_PROMPT = re.compile(rb"clush> $")
SUMMARY = re.compile(rb"hostbatch: (\d+) hosts? in [0-9.]+s: (\d+) ok")
DEFAULT_OUT = REPO / "bench" / "results-console.md"
#: Longest wait for one clush command; clush's interactive mode was seen to hang on 500 hosts.
CLUSH_LIMIT = 180.0
DEFAULT_WORKDIR = REPO / "bench" / "work"


def tree_cpu(roots: Sequence[int]) -> float:
    """CPU seconds of ``roots`` and their live descendants, with what they reaped."""
    seen, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid in children_of(frontier) if pid not in seen}
        seen |= frontier
    total = 0
    for pid in seen:
        fields = stat_fields(pid)
        if fields is not None and len(fields) > 15:
            total += sum(int(fields[n]) for n in (11, 12, 13, 14))
    return total / CLK_TCK


class CpuMeter:
    """Client and server CPU seconds spent between :meth:`start` and :meth:`stop`."""

    def __init__(self, client: Sequence[int], server: Sequence[int]) -> None:
        self.client, self.server = list(client), list(server)
        self._before = (0.0, 0.0)

    def start(self) -> None:
        """Take the starting readings."""
        self._before = (tree_cpu(self.client), tree_cpu(self.server))

    def stop(self) -> tuple[float, float]:
        """Client and server CPU seconds since :meth:`start`."""
        return (tree_cpu(self.client) - self._before[0],
                tree_cpu(self.server) - self._before[1])


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Interactive:
    """A program on a pseudo-terminal: send a line, wait for its prompt, time it."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], prompt: re.Pattern[bytes]
                 ) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.prompt = prompt
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, preexec_fn=_take_terminal)
        os.close(slave)

    def wait_prompt(self, timeout: float) -> bytes:
        """What was shown (escape sequences removed) until the prompt."""
        shown = b""
        deadline = time.monotonic() + timeout
        while not self.prompt.search(ANSI.sub(b"", shown)):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"no prompt; last shown: {ANSI.sub(b'', shown)[-600:]!r}")
            if select.select([self.master], [], [], min(left, 1.0))[0]:
                try:
                    shown += os.read(self.master, 1 << 16)
                except OSError:
                    continue
        return ANSI.sub(b"", shown)

    def timed(self, line: str, timeout: float) -> tuple[float, bytes]:
        """Send ``line``; seconds until the next prompt, and what was shown."""
        start = time.perf_counter()
        os.write(self.master, line.encode() + b"\r")
        shown = self.wait_prompt(timeout)
        return time.perf_counter() - start, shown

    def close(self) -> None:
        """Ctrl-D, then the process group is killed if it is still there."""
        with contextlib.suppress(OSError):
            os.write(self.master, b"\x04")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.master)


@dataclass
class Series:
    """The walls of one (hosts, command, tool): ``first`` and ``rest`` for interactive tools,
    ``runs`` for batch_run; ``start`` the interactive session's start-up."""

    hosts: int
    command: str
    tool: str
    runs: list[float] = field(default_factory=list)
    #: CPU seconds per command, of the tool (with its workers or ssh children) and of the fleet.
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    start: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def after_first(self) -> list[float]:
        """The walls that count for the target (an interactive tool's first one does not)."""
        return self.runs[1:] if self.tool != "batch_run" else self.runs


def lines_per_host(shown: bytes, count: int) -> bool:
    """Whether ``uname -r`` printed one prefixed line per host."""
    return len(re.findall(rb"(?m)^\S+: \S", shown)) >= count


def bench_console(fleet: Fleet, inventory: Path, env: dict[str, str], command: str,
                  repeat: int, baseline: str | None = None) -> Series:
    """One console session on the whole fleet, fed ``command`` ``repeat`` times; with
    ``baseline`` (a snapshot's ``batch_run``), the console of that snapshot."""
    series = Series(len(fleet.names), command, "console" if baseline is None else "baseline")
    program = [str(BIN / "hostbatch"), "console"] if baseline is None else [baseline]
    console = Interactive([*program, "-i", str(inventory), "-g", "all", "--no-history"], env,
                          HOSTBATCH_PROMPT)
    try:
        shown = console.wait_prompt(600)
        series.start = time.perf_counter() - console.started
        if f"connected to {len(fleet.names)} of".encode() not in shown:
            series.problems.append("not every host connected")
        meter = CpuMeter([console.proc.pid], fleet_listeners(fleet))
        for _ in range(repeat):
            meter.start()
            wall, shown = console.timed(command, 600)
            series.runs.append(wall)
            client, server = meter.stop()
            series.client_cpu.append(client)
            series.server_cpu.append(server)
            match = SUMMARY.search(shown)
            if not match or int(match.group(2)) != len(fleet.names):
                series.problems.append(f"summary: {shown[-300:]!r}")
            elif command != "true" and not lines_per_host(shown, len(fleet.names)):
                series.problems.append("missing output lines")
    finally:
        console.close()
    return series


def bench_batch_run(fleet: Fleet, inventory: Path, env: dict[str, str], command: str,
                    repeat: int) -> Series:
    """``repeat`` fresh ``batch_run`` runs of ``command`` on the whole fleet."""
    series = Series(len(fleet.names), command, "batch_run")
    listeners = fleet_listeners(fleet)
    for _ in range(repeat):
        server = tree_cpu(listeners)
        client = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run([str(BIN / "batch_run"), "-i", str(inventory), "-g", "all",
                               "--no-history", "-cmd", command], capture_output=True, env=env,
                              timeout=600, check=False, stdin=subprocess.DEVNULL)
        series.runs.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        series.client_cpu.append(after.ru_utime + after.ru_stime
                                 - client.ru_utime - client.ru_stime)
        series.server_cpu.append(tree_cpu(listeners) - server)
        match = SUMMARY.search(proc.stderr)
        if proc.returncode != 0 or not match or int(match.group(2)) != len(fleet.names):
            series.problems.append(f"exit {proc.returncode}: {proc.stderr[-300:]!r}")
    return series


def bench_clush(fleet: Fleet, hostfile: Path, env: dict[str, str], command: str,
                repeat: int) -> Series:
    """One interactive clush on the whole fleet, fed ``command`` ``repeat`` times."""
    series = Series(len(fleet.names), command, "clush")
    clush = Interactive(["clush", "-f", "64", "-l", fleet.user, "--color=never",
                         "-o", f"-F {fleet.ssh_config}", "--hostfile", str(hostfile)],
                        env, CLUSH_PROMPT)
    meter = CpuMeter([clush.proc.pid], fleet_listeners(fleet))
    try:
        clush.wait_prompt(120)
        series.start = time.perf_counter() - clush.started
        for _ in range(repeat):
            meter.start()
            wall, shown = clush.timed(command, CLUSH_LIMIT)
            series.runs.append(wall)
            client, server = meter.stop()
            series.client_cpu.append(client)
            series.server_cpu.append(server)
            if command != "true" and not lines_per_host(shown, len(fleet.names)):
                series.problems.append(f"missing output lines: {shown[-300:]!r}")
    except RuntimeError as exc:  # clush hung or died: what it did so far still counts
        series.problems.append(f"abandoned after {len(series.runs)} commands: "
                               f"{str(exc)[:200]}")
    finally:
        clush.close()
    return series


@contextlib.contextmanager
def started_fleet(count: int, workdir: Path) -> Iterator[tuple[Fleet, Path, Path]]:
    """A running fleet with its inventory and clush host list; always stopped."""
    directory = workdir / f"console-fleet-{count}"
    fleet = Fleet(directory, count, user=BENCH_USER)
    try:
        fleet.start(timeout=max(60.0, count * 0.3))
        inventory = fleet.write_inventory(directory / "hosts.ini")
        hostfile = directory / "hostlist"
        hostfile.write_text("".join(f"{address}\n" for address in fleet.addresses))
        yield fleet, inventory, hostfile
    finally:
        fleet.stop()


def _cpu(series: Series | None) -> str:
    """``client / server`` CPU seconds per command (medians over commands 2+)."""
    if series is None or len(series.client_cpu) < 2:
        return "-"
    skip = 0 if series.tool == "batch_run" else 1
    return (f"{median(series.client_cpu[skip:]):.2f} / "
            f"{median(series.server_cpu[skip:]):.2f}")


def render_baseline(results: Sequence[Series], revision: str | None) -> list[str]:
    """The before/after table (``--baseline REV``): the console now and at REV, same run."""
    rows = []
    for hosts in sorted({s.hosts for s in results}):
        for command in COMMANDS:
            found = {s.tool: s for s in results if (s.hosts, s.command) == (hosts, command)}
            run, now, then = (found.get(t) for t in ("batch_run", "console", "baseline"))
            if run is None or now is None or then is None or len(now.runs) < 2 \
                    or len(then.runs) < 2:
                continue
            base = median(run.runs)
            rows.append(
                f"| {hosts} | `{command}` | {base:.3f} | {median(now.after_first):.3f} / "
                f"{max(now.after_first):.3f} | {max(now.after_first) / base:.3f} | "
                f"{median(then.after_first):.3f} / {max(then.after_first):.3f} | "
                f"{max(then.after_first) / base:.3f} | {_cpu(now)} | {_cpu(then)} |")
    if not rows:
        return []
    return ["", f"Same run, the console now and as of `{revision}` (commands after the first: "
            "median / slowest; ratio: slowest over the median fresh batch_run; CPU: client / "
            "fleet per command):", "",
            f"| hosts | command | batch_run | console now | ratio now | console @{revision} "
            "| ratio then | CPU now | CPU then |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|", *rows]


def render(results: Sequence[Series], argv: Sequence[str], revision: str | None = None) -> str:
    """The Markdown report: one row per (hosts, command), medians, and the target's verdict."""
    def cell(tool: str, hosts: int, command: str) -> Series | None:
        return next((s for s in results if (s.tool, s.hosts, s.command) == (tool, hosts,
                                                                           command)), None)

    out = ["# `hostbatch console` vs fresh `batch_run` vs clush interactive", "",
           f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
           f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.release()} "
           "(shared: other work may run beside the benchmark)",
           f"- clush: {first_line(['clush', '--version'])}",
           f"- Command: `{' '.join(argv)}`", "",
           "Walls in seconds, medians. *console 2+*: the console's commands after the first "
           "(median / slowest); *start*: from launch to the first prompt (the console connects "
           "to every host then, clush connects nothing). *ratio*: the slowest console command "
           "after the first over the median fresh batch_run; the target is <= 0.10. *CPU*: "
           "seconds per command of the client (the tool with its workers or ssh children) and "
           "of the fleet's sshd processes with what they ran.", "",
           "| hosts | command | batch_run | console 1st | console 2+ | console start "
           "| clush 1st | clush 2+ | ratio | target | CPU batch_run | CPU console | CPU clush |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for hosts in sorted({s.hosts for s in results}):
        for command in COMMANDS:
            run, console, clush = (cell(tool, hosts, command)
                                   for tool in ("batch_run", "console", "clush"))
            if run is None or console is None or len(console.runs) < 2:
                continue
            base = median(run.runs)
            worst = max(console.after_first)
            clush_first = f"{clush.runs[0]:.3f}" if clush and clush.runs else "-"
            clush_rest = (f"{median(clush.after_first):.3f}"
                          if clush and clush.after_first else "-")
            out.append(
                f"| {hosts} | `{command}` | {base:.3f} | {console.runs[0]:.3f} | "
                f"{median(console.after_first):.3f} / {worst:.3f} | {console.start or 0:.2f} | "
                f"{clush_first} | {clush_rest} | {worst / base:.3f} | "
                f"{'met' if worst <= 0.1 * base else 'MISSED'} | {_cpu(run)} | "
                f"{_cpu(console)} | {_cpu(clush)} |")
    out += render_baseline(results, revision)
    problems = [f"- {s.tool} {s.hosts} `{s.command}`: {p}" for s in results for p in s.problems]
    out += ["", "Problems (a run with a problem still counts above):" if problems
            else "Every command of every tool was verified (summary, output lines).", *problems]
    return "\n".join(out) + "\n"


def run_tool(tool: str, fleet: Fleet, inventory: Path, hostfile: Path, env: dict[str, str],
             command: str, repeat: int, baseline: str | None = None) -> Series:
    """One tool's series of ``repeat`` commands."""
    if tool == "console":
        return bench_console(fleet, inventory, env, command, repeat)
    if tool == "baseline":
        return bench_console(fleet, inventory, env, command, repeat, baseline)
    if tool == "batch_run":
        return bench_batch_run(fleet, inventory, env, command, repeat)
    return bench_clush(fleet, hostfile, env, command, repeat)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every tool on every fleet size and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="100,500", help="fleet sizes (default 100,500)")
    parser.add_argument("--repeat", type=int, default=10, help="commands per tool (10)")
    parser.add_argument("--tools", default="console,batch_run,clush")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="also time the console as of git revision REV, same run")
    args = parser.parse_args(argv)
    tools = args.tools.split(",")
    baseline = None
    if args.baseline is not None:
        baseline, _ = snapshot_batch_run(args.workdir, args.baseline, folder="console-baseline")
        tools.append("baseline")
    if "clush" in tools and shutil.which("clush") is None:
        parser.error("clush is not installed (apt-get install -y clustershell)")
    ensure_bench_user()
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "NO_COLOR")}
    env["TERM"] = "xterm"
    env["INPUTRC"] = "/dev/null"
    env["HOME"] = str(args.workdir / "console-home")
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    results: list[Series] = []
    signal.signal(signal.SIGTERM, raise_interrupted)  # stop the fleet, write what was measured
    try:
        for count in (int(n) for n in args.hosts.split(",")):
            with started_fleet(count, args.workdir) as (fleet, inventory, hostfile):
                for command in COMMANDS:
                    for tool in tools:
                        log(f"{count} hosts, {command!r}: {tool}")
                        results.append(run_tool(tool, fleet, inventory, hostfile, env, command,
                                                args.repeat, baseline))
                        log(f"  walls: {[round(w, 3) for w in results[-1].runs]}")
    finally:
        args.out.write_text(render(results, ["bench/bench_console.py",
                                             *(argv or sys.argv[1:])], args.baseline))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
