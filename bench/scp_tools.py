"""bench_scp.py's tools: how each copy tool is started for a scenario, and how its own report
says that every host succeeded (the copies themselves are checked in :mod:`bench.scp_fleet`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bench import scp_more
from bench.benchkit import first_line, package_version, summary_says_all_ok, tail
from bench.benchkit_source import source_digest
from bench.scp_fleet import Scenario, Target

ALL_TOOLS = ("hostbatch", "pssh", "clush", "prsync", "scp")
PEERS = ("pssh", "clush", "prsync")


class Tool:
    """How to run one copy tool and how to read its own success report."""

    name = ""

    def __init__(self, fanout: int) -> None:
        self.fanout = fanout

    def applies(self, scenario: Scenario) -> bool:
        return True

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def version(self) -> str:
        raise NotImplementedError

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        """"" when the tool itself reports success on every host."""
        if status != 0:
            return f"exit status {status}: {tail(target.err)}"
        return ""


class Hostbatch(Tool):
    name = "hostbatch"

    def __init__(self, fanout: int, program: str, extra: Sequence[str] = (), *,
                 package: Path | None = None, described: str = "",
                 name: str = "hostbatch") -> None:
        super().__init__(fanout)
        self.name = name
        self.program = program
        self.extra = list(extra)
        #: The hostbatch package this program runs, when known: its digest is recorded with
        #: every run, so a source tree edited during the benchmark cannot go unnoticed.
        self.package = package
        self.described = described

    def source(self) -> str:
        """Digest of the hostbatch package this runs (empty when unknown)."""
        return source_digest(self.package) if self.package is not None else ""

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        argv = [self.program, "-i", str(target.inventory), "-h", ",".join(scenario.names),
                "-f", str(self.fanout)]
        source = scenario.payload.source
        if scenario.key == "get":
            argv += ["-action", "get", "-remote", f"{target.dest}/{source.name}",
                     "-local", str(scp_more.get_dir(target.workdir))]
        else:
            argv += ["-action", "put", "-local", str(source), "-remote", target.dest + "/"]
        if scenario.key in scp_more.SYNC:
            argv.append("--sync")
        if scenario.payload.recursive:
            argv.append("-r")
        return [*argv, *self.extra]

    def env(self) -> dict[str, str]:
        return {"NO_COLOR": "1"}

    def version(self) -> str:
        paramiko, cryptography = package_version("paramiko"), package_version("cryptography")
        where = f", {self.described}" if self.described else ""
        return (f"{first_line([self.program, '--version'])} (`batch_scp`{where}; paramiko "
                f"{paramiko}, cryptography {cryptography})")

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        problem = super().check(target, scenario, status)
        if problem:
            return problem
        if not summary_says_all_ok(target.err.read_bytes(), scenario.hosts):
            return f"summary does not say all {scenario.hosts} ok: {tail(target.err)}"
        return scp_more.check_sync_summary(target.err.read_bytes(), scenario.key,
                                           scenario.hosts)


class Pssh(Tool):
    name = "pssh"
    _status = re.compile(rb"^\[\d+\] \d\d:\d\d:\d\d \[SUCCESS\] (\S+)", re.M)

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key in ("file", "tree", "single", "warmup")

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        argv = ["parallel-scp", "-h", str(target.hostfile(scenario.names)),
                "-p", str(self.fanout), "-t", "0", "-x", f"-F {target.fleet.ssh_config}"]
        if scenario.payload.recursive:
            argv.append("-r")
        return [*argv, str(scenario.payload.source), target.dest + "/"]

    def version(self) -> str:
        return ("parallel-scp " + first_line(["parallel-scp", "--version"])
                + " (runs `scp -qC` per host)")


class Prsync(Pssh):
    """``parallel-rsync -a -r`` (Debian's pssh): the peer of ``--sync``."""

    name = "prsync"

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key in scp_more.SYNC

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        return scp_more.prsync_argv(target.hostfile(scenario.names), self.fanout,
                                    target.fleet.ssh_config, scenario.payload.source,
                                    target.dest)

    def version(self) -> str:
        return (f"parallel-rsync {first_line(['parallel-rsync', '--version'])} (runs "
                f"`rsync -a` per host; {first_line(['rsync', '--version'])})")

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        problem = super().check(target, scenario, status)
        if problem:
            return problem
        succeeded = {m.decode() for m in self._status.findall(target.out.read_bytes())}
        missing = set(scenario.names) - succeeded
        if missing:
            return f"{len(missing)} hosts without [SUCCESS], e.g. {sorted(missing)[0]}"
        return ""


class Clush(Tool):
    name = "clush"
    _progress = re.compile(rb"(clush: *\d+/ *\d+[^\r\n]*| +)\r")

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key not in scp_more.SYNC

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        # clush picks -r itself for a directory source.
        argv = ["clush", "-S", "--color=never", "-f", str(self.fanout),
                "-o", f"-F {target.fleet.ssh_config}",
                "--hostfile", str(target.hostfile(scenario.names))]
        if scenario.key == "get":
            return [*argv, "--rcopy", f"{target.dest}/{scenario.payload.source.name}",
                    "--dest", str(scp_more.get_dir(target.workdir))]
        return [*argv, "--copy", str(scenario.payload.source), "--dest", target.dest + "/"]

    def version(self) -> str:
        return first_line(["clush", "--version"]) + " (`clush --copy`, runs `scp` per host)"

    def check(self, target: Target, scenario: Scenario, status: int) -> str:
        problem = super().check(target, scenario, status)
        if problem:
            return problem
        # clush's progress meter (``clush: 3/50\r``, erased with spaces) is not a problem.
        text = self._progress.sub(b"", target.err.read_bytes()).strip()
        return f"unexpected stderr: {text[-300:].decode(errors='replace')}" if text else ""


class Scp(Tool):
    name = "scp"

    def applies(self, scenario: Scenario) -> bool:
        return scenario.key in ("single", "warmup")

    def argv(self, target: Target, scenario: Scenario) -> list[str]:
        argv = ["scp", "-q", "-F", str(target.fleet.ssh_config)]
        if scenario.payload.recursive:
            argv.append("-r")
        return [*argv, str(scenario.payload.source), f"{scenario.names[0]}:{target.dest}/"]

    def version(self) -> str:
        return first_line(["ssh", "-V"]) + " (`scp`, SFTP protocol, default ciphers)"

