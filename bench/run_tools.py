"""bench_run.py's tools and workloads: how each tool is started on a fleet, and how its output
proves that every host did its work (exact line and byte counts per host).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.benchkit import first_line, package_version, summary_says_all_ok, tail
from bench.benchkit_proc import CpuAccounting
from tests.support.fleet import Fleet

ALL_TOOLS = ("hostbatch", "plain", "pssh", "clush", "pdsh")
#: The plain paramiko-threads driver (``plain`` in --tools): hostbatch's CPU yardstick.
PLAIN_DRIVER = Path(__file__).resolve().parent / "plain_ssh.py"
PEERS = ("pssh", "clush")
#: ``seq 1 160000`` prints 1,008,895 bytes (160,000 lines): about 1 MB per host.
BIG_COMMAND = "seq 1 160000"
#: Issue 10's 1 MB: 1,333,336 bytes in 17,544 lines of 76 characters (base64 of zeros).
B64_COMMAND = "head -c 1000000 /dev/zero | base64"
BIG_WORKLOADS = ("1mb", "b64")


@dataclass(frozen=True)
class Workload:
    """A command and the exact output every host must produce for it."""

    key: str
    command: str
    lines: int
    content_bytes: int  # bytes per host, newlines excluded

    @property
    def total_bytes(self) -> int:
        return self.content_bytes + self.lines

    def describe(self) -> str:
        if not self.lines:
            return f"`{self.command}` (no output)"
        return (f"`{self.command}` ({self.total_bytes:,} bytes, {self.lines:,} lines "
                "per host)")


def make_workload(key: str, command: str) -> Workload:
    """Run ``command`` locally once to learn the output every host must reproduce."""
    proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, check=True)
    data = proc.stdout
    lines = data.count(b"\n")
    if data and not data.endswith(b"\n"):
        raise SystemExit(f"workload {command!r} must end its output with a newline")
    return Workload(key, command, lines, len(data) - lines)


@dataclass
class Target:
    """One started fleet, as every tool needs to see it."""

    fleet: Fleet
    inventory: Path
    hostfile: Path
    out: Path
    err: Path
    listeners: list[int]
    server_cpu: CpuAccounting

    @property
    def count(self) -> int:
        return len(self.fleet.names)


@dataclass(frozen=True)
class Verdict:
    """Whether a run did all its work, and what was wrong if not."""

    ok: bool
    problem: str = ""


class Tool:
    """How to run one tool, and how to check that every host really did its work."""

    name = ""
    label_by_address = True

    def __init__(self, fanout: int) -> None:
        self.fanout = fanout

    def argv(self, target: Target, command: str) -> list[str]:
        raise NotImplementedError

    def env(self, target: Target) -> dict[str, str]:
        return {}

    def version(self) -> str:
        raise NotImplementedError

    def labels(self, target: Target) -> list[bytes]:
        names = target.fleet.addresses if self.label_by_address else target.fleet.names
        return [name.encode() for name in names]

    def verify(self, target: Target, workload: Workload, status: int) -> Verdict:
        if status != 0:
            return Verdict(False, f"exit status {status}: {tail(target.err)}")
        lines, content, stray = count_prefixed_lines(target.out, self.labels(target))
        problem = compare_counts(lines, content, stray, workload, exact_lines=True)
        if problem:
            return Verdict(False, problem)
        return self.verify_stderr(target)

    def verify_stderr(self, target: Target) -> Verdict:
        text = target.err.read_bytes().strip()
        return Verdict(not text, f"unexpected stderr: {tail(target.err)}" if text else "")


class Hostbatch(Tool):
    name = "hostbatch"
    label_by_address = False

    def __init__(self, fanout: int, program: str, name: str = "hostbatch") -> None:
        super().__init__(fanout)
        self.program = program
        self.name = name

    def argv(self, target: Target, command: str) -> list[str]:
        return [self.program, "-i", str(target.inventory), "-g", "all", "-f", str(self.fanout),
                "-cmd", command]

    def env(self, target: Target) -> dict[str, str]:
        # A history database of this tool's own (history stays on, as by default), made by
        # the version measured, instead of the shared one in the caller's HOME.
        state = target.fleet.workdir / f"state-{self.name}"
        if not state.exists():
            state.mkdir(parents=True)
        return {"NO_COLOR": "1", "XDG_STATE_HOME": str(state)}

    def version(self) -> str:
        paramiko = package_version("paramiko")
        return f"{first_line([self.program, '--version'])} (paramiko {paramiko})"

    def verify_stderr(self, target: Target) -> Verdict:
        if not summary_says_all_ok(target.err.read_bytes(), target.count):
            return Verdict(False, f"summary does not say all {target.count} ok: "
                           f"{tail(target.err)}")
        return Verdict(True)


class Plain(Tool):
    """``bench/plain_ssh.py``: connect, exec, read, print ``HOST: LINE``, nothing else."""

    name = "plain"
    label_by_address = False

    def argv(self, target: Target, command: str) -> list[str]:
        hosts = target.fleet.workdir / "plain-hosts"
        hosts.write_text("".join(f"{h.name} {h.address} {h.port}\n"
                                 for h in target.fleet.hosts))
        fleet = target.fleet
        return [sys.executable, str(PLAIN_DRIVER), "--hosts", str(hosts), "--user", fleet.user,
                "--key", str(fleet.client_key), "--known-hosts", str(fleet.known_hosts),
                "--fanout", str(self.fanout), command]

    def version(self) -> str:
        return f"bench/plain_ssh.py (paramiko {package_version('paramiko')}, one process, " \
               "a thread per host)"


class Pssh(Tool):
    name = "pssh"
    _status = re.compile(rb"^\[\d+\] \d\d:\d\d:\d\d \[(SUCCESS|FAILURE)\] (\S+)")

    def argv(self, target: Target, command: str) -> list[str]:
        return ["parallel-ssh", "-h", str(target.hostfile), "-p", str(self.fanout), "-t", "0",
                "-P", "-l", target.fleet.user, "-x", f"-F {target.fleet.ssh_config}", command]

    def version(self) -> str:
        return "parallel-ssh " + first_line(["parallel-ssh", "--version"])

    def verify(self, target: Target, workload: Workload, status: int) -> Verdict:
        """``-P`` writes ``HOST: `` + each chunk read (a newline added if the chunk did not end
        with one), so chunks may split lines: count bytes per host, not lines."""
        if status != 0:
            return Verdict(False, f"exit status {status}: {tail(target.err)}")
        labels = set(self.labels(target))
        content = dict.fromkeys(labels, 0)
        lines = dict.fromkeys(labels, 0)
        succeeded: set[bytes] = set()
        current: bytes | None = None
        stray = 0
        with open(target.out, "rb") as handle:
            for line in handle:
                if line.startswith(b"["):
                    match = self._status.match(line)
                    if match and match.group(1) == b"SUCCESS":
                        succeeded.add(match.group(2))
                        continue
                label, sep, rest = line.partition(b": ")
                if sep and label in labels:
                    current = label
                elif current is not None:
                    rest = line
                else:
                    stray += 1
                    continue
                content[current] += len(rest.rstrip(b"\n"))
                lines[current] += 1
        missing = labels - succeeded
        if missing:
            return Verdict(False, f"{len(missing)} hosts without [SUCCESS], e.g. "
                           f"{sorted(missing)[0].decode()}")
        problem = compare_counts(lines, content, stray, workload, exact_lines=False)
        return Verdict(not problem, problem)

    def verify_stderr(self, target: Target) -> Verdict:
        return Verdict(True)


class Clush(Tool):
    name = "clush"

    def argv(self, target: Target, command: str) -> list[str]:
        return ["clush", "-n", "-S", "--color=never", "-f", str(self.fanout),
                "-l", target.fleet.user, "-o", f"-F {target.fleet.ssh_config}",
                "--hostfile", str(target.hostfile), command]

    def version(self) -> str:
        return first_line(["clush", "--version"])


class Pdsh(Tool):
    name = "pdsh"

    def argv(self, target: Target, command: str) -> list[str]:
        return ["pdsh", "-S", "-R", "ssh", "-f", str(self.fanout), "-l", target.fleet.user,
                "-w", f"^{target.hostfile}", command]

    def env(self, target: Target) -> dict[str, str]:
        return {"PDSH_SSH_ARGS_APPEND": f"-F {target.fleet.ssh_config}"}

    def version(self) -> str:
        return first_line(["pdsh", "-V"], r"pdsh-")


def count_prefixed_lines(path: Path, labels: Sequence[bytes]
                         ) -> tuple[dict[bytes, int], dict[bytes, int], int]:
    """Lines and content bytes (prefix and newline excluded) per ``LABEL: `` prefix."""
    lines = dict.fromkeys(labels, 0)
    sizes = dict.fromkeys(labels, 0)
    stray = 0
    with open(path, "rb") as handle:
        for line in handle:
            label, sep, _ = line.partition(b": ")
            if sep and label in lines:
                lines[label] += 1
                sizes[label] += len(line)
            else:
                stray += 1
    content = {label: sizes[label] - lines[label] * (len(label) + 3) for label in labels}
    return lines, content, stray


def compare_counts(lines: dict[bytes, int], content: dict[bytes, int], stray: int,
                   workload: Workload, *, exact_lines: bool) -> str:
    """A problem description, or "" when every host printed exactly the workload's output."""
    if stray:
        return f"{stray} output lines without a known host prefix"
    wrong = [label for label in lines if content[label] != workload.content_bytes
             or (lines[label] != workload.lines if exact_lines else
                 lines[label] < workload.lines)]
    if wrong:
        label = wrong[0]
        return (f"{len(wrong)} of {len(lines)} hosts with wrong output, e.g. {label.decode()}: "
                f"{lines[label]} lines / {content[label]} bytes, expected {workload.lines} / "
                f"{workload.content_bytes}")
    return ""

