"""The fault matrix: one ``batch_run --json`` over 200+ real sshd hosts and a few fault servers,
with every kind of failure a real fleet shows happening at once, in the same run.

Each host plays one role, chosen by a fixed shuffle so faulty hosts sit between healthy ones:

===============  ==============================================  ==========================
role             how                                             expected terminal event
===============  ==============================================  ==========================
ok               ``echo ok ADDRESS``                             exit 0, that one line
exit1            ``echo failing; exit 1``                        exit 1
drip             a line every 0.2 s for 3 s                      exit 0, 15 lines in order
large            3,000,000 base64 characters                     exit 0, every byte
refused          its sshd stopped before the run                 connect
wrong_password   no key, a wrong password                        auth
unknown_key      its known_hosts file does not list it           hostkey
changed_key      its known_hosts file lists another key for it   hostkey (CHANGED)
frozen           SIGSTOP of the whole host after it printed      disconnect (keepalives)
killed           its sshd sessions SIGKILLed while it streams    disconnect
mute             fault server: accepts TCP, never a banner       timeout
auth_hang        fault server: authentication never answered     timeout
freeze_after     fault server: prints a line, then hangs         disconnect (keepalives)
drop_after       fault server: TCP cut in the middle of output   disconnect
===============  ==============================================  ==========================

The run uses small timeouts (``--connect-timeout 3 --keepalive 1 --keepalive-count 2``) and
the test derives its time bounds from them: a frozen host ends within interval x (count + 1)
of its last byte, a mute one within the connect timeout of its start, so the whole run ends
within ``BOUND_AFTER_FAULTS`` of the moment the last fault was injected. A host that hangs
instead (a frozen command would otherwise sleep 60 s, a killed stream never ends) fails
those bounds or the run's own time limit. The test waits on events (lines the run prints),
never on sleeps. Hosts of this module: the fleet on 127.0.30.x, fault servers on 127.0.31.x.

Run alone with ``pytest -m fault_matrix``.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    TEST_USER,
    Cli,
    fleet_host,
    json_lines,
    parse_jsonl,
    terminals,
    write_inventory,
)
from tests.integration.test_kill import LineReader
from tests.support.fault_server import FaultServer, generate_host_key
from tests.support.fleet import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.fault_matrix]

CONNECT_TIMEOUT = 3.0
KEEPALIVE = 1.0
KEEPALIVE_COUNT = 2
#: The keepalive monitor looks at each connection at least this often (ssh/keepalive.TICK).
MONITOR_TICK = 1.0
#: Room for a loaded 2-core machine: reporting, closing, the parent printing the summary.
SLACK = 4.0
#: A silent host is given up interval x (count + 1) after its last byte, plus a tick.
KEEPALIVE_VERDICT = KEEPALIVE * (KEEPALIVE_COUNT + 1) + MONITOR_TICK
#: Every host still running when the last fault is injected ends within this.
BOUND_AFTER_FAULTS = max(KEEPALIVE_VERDICT, CONNECT_TIMEOUT) + SLACK
#: What a frozen or killed host would take if nothing noticed (the run's hard limit is above).
HANG = 60

DRIP_LINES = 15
LARGE_BASE64_CHARS = 3_000_000

FLEET_ROLES = {"refused": 4, "wrong_password": 4, "unknown_key": 4, "changed_key": 4,
               "frozen": 4, "killed": 4, "exit1": 6, "drip": 4, "large": 3}
FLEET_SIZE = 216
SERVER_ROLES = {"mute": 3, "auth_hang": 2, "freeze_after": 2, "drop_after": 2}
#: The fault server mode that plays each server role.
SERVER_MODES = {"mute": "no_banner", "auth_hang": "auth_hang", "freeze_after": "freeze_after",
                "drop_after": "drop_after"}

#: (JSON event, error kind or exit status) each role must end with.
EXPECTED: dict[str, tuple[str, str | int]] = {
    "ok": ("exit", 0), "exit1": ("exit", 1), "drip": ("exit", 0), "large": ("exit", 0),
    "refused": ("error", "connect"), "wrong_password": ("error", "auth"),
    "unknown_key": ("error", "hostkey"), "changed_key": ("error", "hostkey"),
    "frozen": ("error", "disconnect"), "killed": ("error", "disconnect"),
    "mute": ("error", "timeout"), "auth_hang": ("error", "timeout"),
    "freeze_after": ("error", "disconnect"), "drop_after": ("error", "disconnect"),
}
#: The summary's label for each error kind (render/summary.py).
SUMMARY_LABEL = {"connect": "unreachable", "auth": "auth failed", "hostkey": "host key",
                 "timeout": "timed out", "disconnect": "lost"}
KEEPALIVE_MESSAGE = (f"no answer to {KEEPALIVE_COUNT} keepalives in "
                     f"{KEEPALIVE * KEEPALIVE_COUNT:g}s")


def fleet_roles() -> dict[str, str]:
    """Host name -> role for the fleet, faulty hosts spread among the ok ones (fixed seed)."""
    roles = [role for role, count in FLEET_ROLES.items() for _ in range(count)]
    roles += ["ok"] * (FLEET_SIZE - len(roles))
    random.Random(10).shuffle(roles)
    return {f"fm{number:03d}": role for number, role in enumerate(roles, 1)}


def remote_command(fleet: Fleet, roles: dict[str, str]) -> str:
    """One command for every host; each host's role is picked by the address it was reached
    at (sshd's ``SSH_CONNECTION``), so all hosts run the same command line, as in real use."""
    by_role: dict[str, list[str]] = {}
    for name, role in roles.items():
        if name in fleet.names:
            by_role.setdefault(role, []).append(fleet.host(name).address)
    actions = {
        "frozen": f"echo started; sleep {HANG}; echo done",
        "killed": "while :; do echo tick; sleep 0.05; done",
        "exit1": "echo failing; exit 1",
        "drip": f"for i in $(seq 1 {DRIP_LINES}); do echo drip $i; sleep 0.2; done",
        "large": f"head -c {LARGE_BASE64_CHARS * 3 // 4} /dev/zero | base64 -w 76",
    }
    cases = [f"{'|'.join(by_role[role])}) {action};;" for role, action in actions.items()]
    return ("a=$(echo $SSH_CONNECTION | cut -d' ' -f3); case $a in "
            + " ".join(cases) + ' *) echo "ok $a";; esac')


@dataclass
class Matrix:
    """The fleet, the fault servers and the inventory of one fault-matrix run."""

    fleet: Fleet
    servers: dict[str, FaultServer]
    roles: dict[str, str]
    inventory: Path

    def hosts(self, role: str) -> list[str]:
        return [name for name, r in self.roles.items() if r == role]


@pytest.fixture(scope="module")
def matrix(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    """216 sshd hosts (127.0.30.x) and 9 fault servers (127.0.31.x); refused hosts stopped."""
    roles = fleet_roles()
    work = tmp_path_factory.mktemp("fault-matrix")
    servers: dict[str, FaultServer] = {}
    with Fleet(work / "fleet", FLEET_SIZE, names=list(roles), first_address="127.0.30.10",
               user=test_user) as fleet:
        try:
            number = 10
            key = generate_host_key()  # one key for all: generating nine takes seconds
            for role, count in SERVER_ROLES.items():
                params: dict[str, Any] = {"bytes": 65536} if role == "drop_after" else {}
                for index in range(1, count + 1):
                    server = FaultServer(SERVER_MODES[role], address=f"127.0.31.{number}",
                                         host_key=key, authorized_key=fleet.client_key_pub,
                                         **params)
                    servers[f"{role.replace('_', '-')}{index}"] = server.start()
                    roles[f"{role.replace('_', '-')}{index}"] = role
                    number += 1
            for name, role in roles.items():
                if role == "refused":
                    fleet.stop_host(name)
            yield Matrix(fleet, servers, roles, _inventory(work, fleet, servers, roles))
        finally:
            for server in servers.values():
                server.stop()


def _inventory(work: Path, fleet: Fleet, servers: dict[str, FaultServer],
               roles: dict[str, str]) -> Path:
    """Each host's section: the fleet's key and known_hosts, bent by its role."""
    unknown = work / "known_hosts.empty"
    unknown.write_text("")
    hosts: dict[str, dict[str, str]] = {}
    for name, role in roles.items():
        if name in servers:
            server = servers[name]
            known = server.write_known_hosts(work / f"known_hosts.{name}")
            hosts[name] = {"hostname": server.address, "port": str(server.port),
                           "identity_file": str(fleet.client_key), "known_hosts": str(known)}
            continue
        section = fleet_host(fleet, name)
        if role == "wrong_password":
            del section["identity_file"]
            section["password"] = "not-the-password"
        elif role == "unknown_key":
            section["known_hosts"] = str(unknown)
        elif role == "changed_key":
            host = fleet.host(name)
            changed = work / f"known_hosts.{name}"
            other = next(iter(servers.values())).host_key_pub
            changed.write_text(f"[{host.address}]:{host.port} {other}\n")
            section["known_hosts"] = str(changed)
        hosts[name] = section
    return write_inventory(work / "hosts.ini", hosts, defaults={"user": TEST_USER})


def _host_of(line: str) -> str | None:
    match = re.match(r'\{"host": "([^"]+)"', line)
    return match.group(1) if match else None


def test_one_run_with_every_fault_ends_each_host_once_with_the_right_kind(
        matrix: Matrix, cli: Cli) -> None:
    fleet, roles = matrix.fleet, matrix.roles
    command = remote_command(fleet, roles)
    start = time.monotonic()
    proc = cli.popen("-i", matrix.inventory, "--json", "-g", "all",
                     "--connect-timeout", f"{CONNECT_TIMEOUT:g}",
                     "--keepalive", f"{KEEPALIVE:g}", "--keepalive-count", str(KEEPALIVE_COUNT),
                     "-cmd", command, start_new_session=True)
    try:
        reader = LineReader(proc)
        # Inject each fault the moment its host shows it is mid-command (a line printed).
        to_freeze, to_kill = set(matrix.hosts("frozen")), set(matrix.hosts("killed"))
        frozen: dict[str, list[int]] = {}

        def inject(line: str) -> bool:
            host = _host_of(line)
            if host in to_freeze and '"started"' in line:
                to_freeze.discard(host)
                frozen[host] = fleet.freeze_whole_host(host)
            elif host in to_kill and '"tick"' in line:
                to_kill.discard(host)
                assert fleet.kill_sessions(host), f"{host} had no session to kill"
            return not (to_freeze or to_kill)

        assert reader.until(inject, 90) is not None, (
            f"never mid-command: {sorted(to_freeze | to_kill)}; last lines {reader.lines[-20:]}")
        injected = time.monotonic()
        lines = reader.rest(timeout=BOUND_AFTER_FAULTS + HANG)
        status = proc.wait(timeout=10)
        ended = time.monotonic()
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for host, pids in frozen.items():
            fleet.thaw_whole_host(host, pids)
            fleet.stop_host(host)
    events = parse_jsonl("\n".join(lines))
    ends = terminals(events, roles)  # exactly one terminal event per host
    report = f"status {status}; stderr:\n{stderr[-3000:]}"

    wrong = {}
    for host, role in roles.items():
        event, expected = EXPECTED[role]
        got = ends[host]["exit_status"] if ends[host]["event"] == "exit" else ends[host]["kind"]
        if (ends[host]["event"], got) != (event, expected):
            wrong[host] = (role, ends[host])
    assert not wrong, f"{wrong}\n{report}"

    # What each role printed, and the messages that say why.
    for host in matrix.hosts("ok"):
        assert json_lines(events, host, "stdout") == [f"ok {fleet.host(host).address}"], host
    for host in matrix.hosts("drip"):
        assert json_lines(events, host, "stdout") == [
            f"drip {n}" for n in range(1, DRIP_LINES + 1)]
    for host in matrix.hosts("large"):
        data = json_lines(events, host, "stdout")
        assert sum(map(len, data)) == LARGE_BASE64_CHARS and set("".join(data)) == {"A"}, host
    for host in matrix.hosts("frozen"):
        assert json_lines(events, host, "stdout") == ["started"], host
        assert ends[host]["error"] == KEEPALIVE_MESSAGE, ends[host]
    for host in matrix.hosts("freeze_after"):
        assert json_lines(events, host, "stdout") == ["line 1"], host
        assert ends[host]["error"] == KEEPALIVE_MESSAGE, ends[host]
    for host in matrix.hosts("killed"):
        assert "tick" in json_lines(events, host, "stdout"), host
        assert "keepalive" not in ends[host]["error"], ends[host]  # noticed, not timed out
    for host in matrix.hosts("refused"):
        assert "connection refused" in ends[host]["error"], ends[host]
    for host in matrix.hosts("changed_key"):
        assert "CHANGED" in ends[host]["error"].upper(), ends[host]
    for host in matrix.hosts("unknown_key"):
        assert "CHANGED" not in ends[host]["error"].upper(), ends[host]

    # The summary counts every role under its label; exit status 3 (wins over exit 1).
    counts: Counter[str] = Counter()
    for role in roles.values():
        event, expected = EXPECTED[role]
        if event == "exit":
            counts["ok" if expected == 0 else "failed"] += 1
        else:
            counts[SUMMARY_LABEL[str(expected)]] += 1
    first = next(line for line in stderr.splitlines() if line.startswith("hostbatch: ")
                 and " hosts in " in line)
    shown = dict((label, int(n)) for n, label in
                 re.findall(r"(\d+) ([a-z ]+?)(?:,|$)", first.split(": ", 2)[2]))
    assert shown == dict(counts), f"{first!r} != {dict(counts)}"
    assert status == 3, report

    # Time: bounded by the configured timeouts, not by what the hung hosts would take.
    after_faults = ended - injected
    assert after_faults < BOUND_AFTER_FAULTS, f"{after_faults:.1f}s after the faults\n{report}"
    for host in matrix.hosts("mute") + matrix.hosts("auth_hang"):
        assert CONNECT_TIMEOUT - 0.1 < ends[host]["duration"] < CONNECT_TIMEOUT + SLACK, ends
    for host in matrix.hosts("freeze_after"):  # its one line comes right after connecting
        assert ends[host]["duration"] < CONNECT_TIMEOUT + KEEPALIVE_VERDICT + SLACK, ends[host]
    print(f"fault matrix: {len(roles)} hosts, faults injected after {injected - start:.1f}s, "
          f"run ended {after_faults:.1f}s later (bound {BOUND_AFTER_FAULTS:g}s), "
          f"total {ended - start:.1f}s")
