#!/usr/bin/env python3
"""The fault run: hostbatch beside pssh and clush on a fleet where about 20% of hosts fail.

One fleet of real OpenSSH ``sshd`` hosts (``tests/support/fleet.py``, 127.0.33.x, login user
``hbbench``); each repetition runs every tool once on the same hosts with the same faults,
the tools' order rotating. Faulty host classes (every fifth host, in turn):

* ``refused``: its sshd is stopped (connection refused);
* ``mute``: its listener is frozen (SIGSTOP) before the run: TCP is accepted by the kernel,
  no SSH banner ever comes;
* ``frozen``: the whole host (listener, sessions, command) is frozen mid-command, once the
  command has printed ``started``: a hung machine whose kernel still answers TCP;
* ``killed``: its sshd sessions are SIGKILLed while the command streams a line every 50 ms;
* ``changed key``: the known_hosts file every tool reads holds another key for it;
* ``exit 1``: the command fails.

The frozen and killed faults are injected by a watcher thread that sees the host's command
start (its ``sleep`` process in /proc, under the fleet's per-host environment marker), so
the injection does not depend on how a tool prints.

Equivalent limits for every tool: connect timeout 5 s (``--connect-timeout``, ssh
``ConnectTimeout``, clush ``-t``), keepalives every 5 s, given up after 2 unanswered
(``--keepalive 5 --keepalive-count 2``, ssh ``ServerAliveInterval=5 ServerAliveCountMax=2``),
and a 30 s command deadline (``--timeout 30``, ``pssh -t 30``, ``clush -u 30``). A tool still
running after ``--hard-limit`` seconds is killed and marked as hanging.

Per run it records the wall time and what the tool said about every host: hostbatch's
``--json`` terminal event, pssh's ``[SUCCESS]``/``[FAILURE]`` status line, clush's messages on
stderr. The report gives the median wall time and, for each faulty class, the most common
report (host addresses written ``<host>``) and how many hosts of the class got it.

Needs root (sshd on 127.0.33.x, the login user). Example::

    .venv/bin/python bench/bench_faults.py --hosts 220 --repeat 3
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import re
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.benchkit import (  # noqa: E402
    Interrupted,
    Spawned,
    first_line,
    fleet_listeners,
    log,
    median,
    package_version,
    raise_interrupted,
    read_bytes,
    rotated,
    wait_quiet,
)
from bench.benchkit_proc import BENCH_USER, ensure_bench_user  # noqa: E402
from bench.benchkit_report import Meta, report_header  # noqa: E402
from tests.support.fleet import MARKER_VAR, Fleet  # noqa: E402

FIRST_ADDRESS = "127.0.33.10"
TOOLS = ("hostbatch", "pssh", "clush")
CLASSES = ("refused", "mute", "frozen", "killed", "changed key", "exit 1")
CONNECT_TIMEOUT = 5
KEEPALIVE = 5
KEEPALIVE_COUNT = 2
COMMAND_TIMEOUT = 30
FROZEN_SLEEP = "sleep 3771"
KILLED_SLEEP = "sleep 0.0501"


@dataclass
class Faults:
    """Which host plays which faulty class (the rest are ok)."""

    classes: dict[str, str]

    def hosts(self, name: str) -> list[str]:
        return [host for host, cls in self.classes.items() if cls == name]


@dataclass
class RunResult:
    """One tool's run: wall time, exit status and what it said about each host."""

    tool: str
    wall: float
    status: int
    hung: bool
    reports: dict[str, str] = field(default_factory=dict)


def assign(names: Sequence[str]) -> Faults:
    """Every fifth host is faulty, the classes in turn (20% of the fleet)."""
    classes = {}
    for index, name in enumerate(names):
        classes[name] = CLASSES[(index // 5) % len(CLASSES)] if index % 5 == 4 else "ok"
    return Faults(classes)


def remote_command(fleet: Fleet, faults: Faults) -> str:
    """The same command for every host; its role comes from the address it was reached at."""
    def addresses(cls: str) -> str:
        return "|".join(fleet.host(h).address for h in faults.hosts(cls)) or "none"
    return ("a=$(echo $SSH_CONNECTION | cut -d' ' -f3); case $a in "
            f"{addresses('frozen')}) echo started; {FROZEN_SLEEP}; echo done;; "
            f"{addresses('killed')}) while :; do echo tick; {KILLED_SLEEP}; done;; "
            f"{addresses('exit 1')}) echo failing; exit 1;; "
            "*) echo ok;; esac")


class Injector(threading.Thread):
    """Freezes a frozen-class host, or kills a killed-class host's sessions, as soon as its
    command's ``sleep`` shows in /proc (so the host has printed its first line)."""

    def __init__(self, fleet: Fleet, faults: Faults) -> None:
        super().__init__(name="injector", daemon=True)
        self.fleet = fleet
        self.todo = {h: "freeze" for h in faults.hosts("frozen")}
        self.todo.update({h: "kill" for h in faults.hosts("killed")})
        self.frozen: dict[str, list[int]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        needle = f"{MARKER_VAR}=".encode()
        while self.todo and not self.stop.wait(0.05):
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                cmdline = read_bytes(f"/proc/{entry}/cmdline") or b""
                wanted = {FROZEN_SLEEP: "freeze", KILLED_SLEEP: "kill"}.get(
                    cmdline.replace(b"\0", b" ").decode(errors="replace").strip())
                if wanted is None:
                    continue
                environ = read_bytes(f"/proc/{entry}/environ") or b""
                marker = next((item for item in environ.split(b"\0")
                               if item.startswith(needle)), b"")
                host = marker.decode(errors="replace").rsplit("/", 1)[-1]
                if self.todo.get(host) != wanted:
                    continue
                del self.todo[host]
                if wanted == "freeze":
                    self.frozen[host] = self.fleet.freeze_whole_host(host)
                else:
                    self.fleet.kill_sessions(host)

    def undo(self) -> None:
        """Stop watching; thaw and restart the frozen and killed hosts for the next run."""
        self.stop.set()
        self.join(5)
        for host, pids in self.frozen.items():
            self.fleet.thaw_whole_host(host, pids)
        for host in set(self.frozen) | set(self.todo):
            self.fleet.stop_host(host)
            self.fleet.start_host(host)


# ------------------------------------------------------------------ tools


def tool_argv(tool: str, work: Path, fleet: Fleet, command: str, fanout: int) -> list[str]:
    """The command line of each tool, with the equivalent limits (module docstring)."""
    alive = [f"ServerAliveInterval={KEEPALIVE}", f"ServerAliveCountMax={KEEPALIVE_COUNT}"]
    if tool == "hostbatch":
        return [str(Path(sys.executable).parent / "batch_run"), "-i", str(work / "hosts.ini"),
                "-g", "all", "-f", str(fanout), "--json",
                "--connect-timeout", str(CONNECT_TIMEOUT), "--keepalive", str(KEEPALIVE),
                "--keepalive-count", str(KEEPALIVE_COUNT), "--timeout", str(COMMAND_TIMEOUT),
                "-cmd", command]
    if tool == "pssh":
        options = [word for o in [f"ConnectTimeout={CONNECT_TIMEOUT}", *alive]
                   for word in ("-O", o)]
        return ["parallel-ssh", "-h", str(work / "hostlist"), "-p", str(fanout),
                "-t", str(COMMAND_TIMEOUT), "-P", "-l", BENCH_USER,
                "-x", f"-F {fleet.ssh_config}", *options, command]
    return ["clush", "-n", "-S", "--color=never", "-f", str(fanout), "-l", BENCH_USER,
            "-t", str(CONNECT_TIMEOUT), "-u", str(COMMAND_TIMEOUT),
            "-o", " ".join([f"-F {fleet.ssh_config}", *(f"-o{o}" for o in alive)]),
            "--hostfile", str(work / "hostlist"), command]


def reports(tool: str, fleet: Fleet, stdout: str, stderr: str) -> dict[str, str]:
    """What ``tool`` said about each host, by host name, addresses written ``<host>``."""
    by_address = {h.address: h.name for h in fleet.hosts}
    found: dict[str, list[str]] = collections.defaultdict(list)
    if tool == "hostbatch":
        for line in stdout.splitlines():
            event = json.loads(line)
            if event["event"] == "exit":
                found[event["host"]].append(f"exit {event['exit_status']}")
            elif event["event"] == "error":
                found[event["host"]].append(f"{event['kind']}: {event['error']}")
    elif tool == "pssh":
        status = re.compile(r"^\[\d+\] [\d:]+ \[(SUCCESS|FAILURE)\] (\S+)(?: (.*))?$")
        for line in stdout.splitlines() + stderr.splitlines():
            match = status.match(line)
            if match:
                found[by_address.get(match[2], match[2])].append(
                    f"{match[1]} {match[3] or ''}".strip())
            elif line.startswith("Stderr: "):
                continue
    else:
        for line in stderr.splitlines():
            text = line.removeprefix("clush: ")
            address, sep, rest = text.partition(": ")
            if sep and address in by_address:
                found[by_address[address]].append(rest)
        for line in stdout.splitlines():
            address, sep, rest = line.partition(": ")
            if sep and address in by_address and not found.get(by_address[address]):
                found[by_address[address]].append("(output only)")
    result = {}
    for host, items in found.items():
        text = " | ".join(dict.fromkeys(items))
        for address in re.findall(r"127\.\d+\.\d+\.\d+", text):
            text = text.replace(address, "<host>")
        text = re.sub(r"SHA256:[A-Za-z0-9+/=]+", "SHA256:...", text)
        result[host] = re.sub(r"\b\d+\.\d+s\b", "Ns", text)[:120]
    return result


def run_tool(tool: str, work: Path, fleet: Fleet, faults: Faults, command: str,
             fanout: int, hard_limit: float) -> RunResult:
    """Set up the faults, run ``tool`` once, undo the faults."""
    for host in faults.hosts("mute"):
        fleet.freeze_host(host)
    injector = Injector(fleet, faults)
    injector.start()
    out, err = work / f"{tool}.out", work / f"{tool}.err"
    argv = tool_argv(tool, work, fleet, command, fanout)
    try:
        with Spawned(argv, dict(os.environ), out, err, hard_limit) as spawned:
            reaped = spawned.reap()
    finally:
        injector.undo()
        for host in faults.hosts("mute"):
            fleet.thaw_host(host)
            fleet.stop_host(host)
            fleet.start_host(host)
        wait_quiet(fleet_listeners(fleet), 15)
    stdout = out.read_text(errors="replace")
    stderr = err.read_text(errors="replace")
    hung = reaped.wall >= hard_limit - 0.5
    return RunResult(tool, reaped.wall, reaped.status, hung,
                     {} if hung and tool != "hostbatch" else
                     reports(tool, fleet, stdout, stderr))


# ------------------------------------------------------------------ report


def render(results: list[RunResult], faults: Faults, meta: Meta) -> str:
    """The Markdown report: wall times, then what each tool said per faulty class."""
    out = report_header("Fault run: hostbatch vs pssh and clush", meta)
    tools = [t for t in TOOLS if any(r.tool == t for r in results)]
    out += ["| | " + " | ".join(tools) + " |", "|---|" + "---|" * len(tools)]
    cells = []
    for tool in tools:
        runs = [r for r in results if r.tool == tool]
        walls = ", ".join(f"{r.wall:.1f}" for r in runs)
        hung = sum(r.hung for r in runs)
        cells.append(f"**{median([r.wall for r in runs]):.1f} s** ({walls})"
                     + (f", {hung} hung" if hung else ""))
    out.append("| wall time, median (runs) | " + " | ".join(cells) + " |")
    statuses = [", ".join(str(r.status) for r in results if r.tool == t) for t in tools]
    out.append("| exit status | " + " | ".join(statuses) + " |")
    out += ["", "What each tool reported for the hosts of each class, over all runs (the most "
            "common report, and how many of the class's host-runs got it):", "",
            "| class (hosts) | " + " | ".join(tools) + " |",
            "|---|" + "---|" * len(tools)]
    for cls in (*CLASSES, "ok"):
        hosts = faults.hosts(cls)
        row = [f"{cls} ({len(hosts)})"]
        for tool in tools:
            said = collections.Counter(r.reports.get(h, "(nothing)") for r in results
                                       if r.tool == tool for h in hosts)
            text, count = said.most_common(1)[0]
            total = sum(said.values())
            row.append(f"`{text}` ({count}/{total})".replace("|", "\\|"))
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def collect_meta(args: argparse.Namespace, faults: Faults, started: str,
                 argv: Sequence[str] | None) -> Meta:
    """The facts about this run that the report's header lists."""
    counts = collections.Counter(faults.classes.values())
    return Meta(
        date=started, command_line=" ".join(["bench/bench_faults.py", *(argv or sys.argv[1:])]),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}",
        software=[f"hostbatch {package_version('hostbatch')}",
                  "parallel-ssh " + first_line(["parallel-ssh", "--version"]),
                  first_line(["clush", "--version"]), first_line(["ssh", "-V"])],
        settings=[f"{args.hosts} hosts, {args.hosts - counts['ok']} faulty: "
                  + ", ".join(f"{counts[c]} {c}" for c in CLASSES),
                  f"fan-out {args.fanout}; connect timeout {CONNECT_TIMEOUT} s, keepalive "
                  f"{KEEPALIVE} s x {KEEPALIVE_COUNT}, command timeout {COMMAND_TIMEOUT} s "
                  "for every tool (see the script's docstring for the flags)",
                  f"{args.repeat} repetitions, tools' order rotating"],
        notes=[])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=220)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fanout", type=int, default=64)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--hard-limit", type=float, default=120.0,
                        help="seconds after which a tool counts as hanging and is killed")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / "work" / "faults")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results-faults.md")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if set(tools) - set(TOOLS) or not tools:
        parser.error(f"--tools: choose from {', '.join(TOOLS)}")
    for program in ("parallel-ssh", "clush"):
        if shutil.which(program) is None:
            parser.error(f"{program} is not installed (scripts/setup.sh --bench)")
    signal.signal(signal.SIGTERM, raise_interrupted)
    ensure_bench_user()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    names = [f"fb{n:03d}" for n in range(1, args.hosts + 1)]
    faults = assign(names)
    results: list[RunResult] = []
    started = datetime.datetime.now().isoformat(timespec="seconds")
    with Fleet(work / "fleet", len(names), names=names, first_address=FIRST_ADDRESS,
               user=BENCH_USER) as fleet:
        other = fleet.host(faults.hosts("ok")[0]).host_key_pub
        changed = {fleet.host(h).address for h in faults.hosts("changed key")}
        fleet.known_hosts.write_text("".join(
            f"{h.known_hosts_line.split(' ', 1)[0]} {other}\n" if h.address in changed
            else h.known_hosts_line + "\n" for h in fleet.hosts))
        fleet.write_inventory(work / "hosts.ini")
        (work / "hostlist").write_text("".join(h.address + "\n" for h in fleet.hosts))
        for host in faults.hosts("refused"):
            fleet.stop_host(host)
        command = remote_command(fleet, faults)
        try:
            for repetition in range(args.repeat):
                for tool in rotated(tools, repetition):
                    result = run_tool(tool, work, fleet, faults, command, args.fanout,
                                      args.hard_limit)
                    log(f"{tool}: {result.wall:.1f}s, exit {result.status}"
                        + (" (hung)" if result.hung else ""))
                    results.append(result)
        except (KeyboardInterrupt, Interrupted):
            log("interrupted: writing what was measured")
    meta = collect_meta(args, faults, started, argv)
    args.output.write_text(render(results, faults, meta))
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
