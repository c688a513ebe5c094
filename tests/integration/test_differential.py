"""Differential checks: per host, hostbatch's stdout lines, stderr lines and exit status equal
what OpenSSH's ``ssh`` client gets from the same host for the same command."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import (
    MAIN_NAMES,
    TEST_USER,
    Cli,
    json_lines,
    split_lines,
    terminals,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

COMMANDS = [
    "echo hi",
    "exit 7",
    r"printf 'a\nb'",
    "echo err >&2; echo out",
    r"printf '\377\376 bytes\n'",
    "kill -9 $$",
    "true",
    "cat /etc/hostname",
    "echo $SSH_CONNECTION | cut -d' ' -f3,4; id -un; pwd",
    r"printf 'x\n\n\ny\n'; printf '\n' >&2",
    "for i in 1 2 3; do echo o$i; echo e$i >&2; done; exit 3",
    r"printf 'tab\there  trailing  \n'; printf 'caf\303\251 \342\202\254\n'",
    "seq 1 2000 | tr '\\n' ' '",
    "sh -c 'kill -TERM $$'; echo after",
]


def _ssh(fleet: Fleet, host: str, command: str) -> tuple[list[str], list[str], int]:
    proc = subprocess.run(["ssh", "-F", str(fleet.ssh_config), "-l", TEST_USER, host, command],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                          check=False)
    return (split_lines(proc.stdout.decode("utf-8", "replace")),
            split_lines(proc.stderr.decode("utf-8", "replace")), proc.returncode)


@pytest.mark.parametrize("command", COMMANDS)
def test_same_as_openssh(cli: Cli, main_fleet: Fleet, main_inventory: Path,
                         command: str) -> None:
    result = cli.run("-i", str(main_inventory), "--json", "-g", "everything", "-cmd", command)
    events = result.events()
    ends = terminals(events, MAIN_NAMES)
    with ThreadPoolExecutor(len(MAIN_NAMES)) as pool:
        expected = dict(zip(MAIN_NAMES, pool.map(lambda h: _ssh(main_fleet, h, command),
                                                  MAIN_NAMES), strict=True))
    statuses = []
    for host in MAIN_NAMES:
        out, err, status = expected[host]
        assert ends[host]["event"] == "exit", ends[host]
        got = (json_lines(events, host, "stdout"), json_lines(events, host, "stderr"),
               ends[host]["exit_status"])
        assert got == (out, err, status), (host, command)
        statuses.append(status)
    overall = 0 if all(s == 0 for s in statuses) else 1
    assert result.returncode == overall, result


def test_lines_mode_matches_openssh(cli: Cli, main_fleet: Fleet, main_inventory: Path) -> None:
    command = r"echo out1; echo err1 >&2; printf 'last\377'"
    result = cli.run("-i", str(main_inventory), "-h", "db01", "-cmd", command)
    out, err, status = _ssh(main_fleet, "db01", command)
    assert status == result.returncode == 0, result
    assert split_lines(result.stdout) == [f"db01: {line}" for line in out]
    assert [line for line in split_lines(result.stderr) if line.startswith("db01: ")] == [
        f"db01: {line}" for line in err]
