"""Jump hosts (``proxy_jump``) against real sshd hosts that only a jump host can reach.

Layout (see tests.support.jumpnet): the targets' sshd run in network namespace B, where
hostbatch cannot connect (their addresses answer "connection refused" from here). ``bastion``
accepts here and connects out of B; ``outer`` accepts here and connects out of A; ``inner``
accepts only inside A and connects out of B. So a run that reaches a target went through
``bastion``, and one that reaches it via ``outer, inner`` went through both, in that order.
Every jump host logs at VERBOSE, so the tests count its authenticated connections.

Addresses: jump hosts 127.0.23.1-3, targets 127.0.24.10-17.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    TEST_PASSWORD,
    Cli,
    parse_jsonl,
    process_group_alive,
    remote_processes,
    terminals,
    write_inventory,
)
from tests.support.fleet import Fleet
from tests.support.jumpnet import InetdJumpHost, NamespacedFleet, NetNamespace

pytestmark = pytest.mark.integration

TARGETS = ("t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8")
LOGGING = "LogLevel VERBOSE\nAllowTcpForwarding yes"


@dataclass
class JumpNet:
    targets: NamespacedFleet
    bastion: InetdJumpHost
    outer: InetdJumpHost
    inner: InetdJumpHost
    known_hosts: Path
    client_key: Path
    user: str

    def section(self, name: str, **options: str) -> dict[str, str]:
        host = self.targets.host(name)
        return {"hostname": host.address, "port": str(host.port), **options}

    def jump_section(self, jump: InetdJumpHost) -> dict[str, str]:
        return {"hostname": jump.host.address, "port": str(jump.host.port)}

    def inventory(self, path: Path, *, known_hosts: Path | None = None,
                  extra: dict[str, dict[str, str]] | None = None) -> Path:
        hosts = {name: self.section(name, proxy_jump="bastion") for name in TARGETS}
        hosts.update({"bastion": self.jump_section(self.bastion),
                      "outer": self.jump_section(self.outer),
                      "inner": self.jump_section(self.inner),
                      "chained": self.section("t1", proxy_jump="outer, inner"),
                      "direct": self.section("t1")})
        hosts.update(extra or {})
        return write_inventory(path, hosts, {"targets": list(TARGETS)}, defaults={
            "user": self.user, "identity_file": str(self.client_key),
            "known_hosts": str(known_hosts or self.known_hosts)})


@pytest.fixture(scope="module")
def jumpnet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JumpNet]:
    if shutil.which("nsenter") is None or shutil.which("ip") is None:
        pytest.skip("needs nsenter and ip (util-linux, iproute2)")
    workdir = tmp_path_factory.mktemp("jumpnet")
    ns_a, ns_b = NetNamespace(), NetNamespace()
    jumps: list[InetdJumpHost] = []
    try:
        targets = NamespacedFleet(workdir, len(TARGETS), names=TARGETS, netns=ns_b,
                                  first_address="127.0.24.10", user=test_user,
                                  extra_sshd_config="LogLevel VERBOSE")
        fleets = {name: Fleet(workdir, 1, names=[name], first_address=address, user=test_user,
                              extra_sshd_config=LOGGING)
                  for name, address in (("bastion", "127.0.23.1"), ("outer", "127.0.23.2"),
                                        ("inner", "127.0.23.3"))}
        with targets:
            jumps = [InetdJumpHost(fleets["bastion"], run_ns=ns_b),
                     InetdJumpHost(fleets["outer"], run_ns=ns_a),
                     InetdJumpHost(fleets["inner"], run_ns=ns_b, listen_ns=ns_a)]
            known = workdir / "all_known_hosts"
            lines = [h.known_hosts_line for f in [targets, *fleets.values()] for h in f.hosts]
            known.write_text("".join(line + "\n" for line in lines))
            yield JumpNet(targets, *jumps, known_hosts=known, client_key=targets.client_key,
                          user=test_user)
    finally:
        for jump in jumps:
            jump.close()
        ns_a.close()
        ns_b.close()


def test_targets_are_reached_only_through_the_bastion_on_one_connection(
        jumpnet: JumpNet, cli: Cli, tmp_path: Path) -> None:
    inventory = jumpnet.inventory(tmp_path / "hosts.ini")
    direct = cli.run("-i", inventory, "-h", "direct", "--json", "-cmd", "true")
    assert direct.returncode == 3, direct
    assert "connection refused" in direct.terminals(["direct"])["direct"]["error"], direct

    before = jumpnet.bastion.accepted()
    result = cli.run("-i", inventory, "-g", "targets", "--json", "-cmd",
                     "echo $SSH_CONNECTION | cut -d' ' -f3")
    assert result.returncode == 0, result
    events = result.events()
    for name in TARGETS:
        lines = [e["data"] for e in events if e["host"] == name and e["event"] == "stdout"]
        assert lines == [jumpnet.targets.host(name).address], result
    assert jumpnet.bastion.accepted() - before == 1, jumpnet.bastion.log.read_text()[-3000:]


def test_a_two_hop_chain_goes_through_both_jump_hosts_in_order(
        jumpnet: JumpNet, cli: Cli, tmp_path: Path) -> None:
    inventory = jumpnet.inventory(tmp_path / "hosts.ini")
    unreachable = cli.run("-i", inventory, "-h", "inner", "--json", "-cmd", "true")
    assert unreachable.returncode == 3, unreachable
    outer, inner = jumpnet.outer.accepted(), jumpnet.inner.accepted()
    result = cli.run("-i", inventory, "-h", "chained", "-cmd", "echo via-chain")
    assert result.returncode == 0, result
    assert result.stdout == "chained: via-chain\n", result
    assert (jumpnet.outer.accepted() - outer, jumpnet.inner.accepted() - inner) == (1, 1)


def test_the_bastion_host_key_is_verified_and_learned_like_any_other(
        jumpnet: JumpNet, cli: Cli, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    bastion_line = next(line for line in jumpnet.known_hosts.read_text().splitlines()
                        if line.startswith(f"[{jumpnet.bastion.host.address}]:"))
    known.write_text("".join(line + "\n" for line in jumpnet.known_hosts.read_text()
                             .splitlines() if line != bastion_line))
    inventory = jumpnet.inventory(tmp_path / "hosts.ini", known_hosts=known)
    refused = cli.run("-i", inventory, "-h", "t1,t2", "--json", "-cmd", "true")
    assert refused.returncode == 3, refused
    for event in refused.terminals(["t1", "t2"]).values():
        assert event["kind"] == "hostkey", refused
        assert "jump host bastion" in event["error"] and "unknown host key" in event["error"]
    learned = cli.run("-i", inventory, "-h", "t1,t2", "--accept-new", "-cmd", "true")
    assert learned.returncode == 0, learned
    assert bastion_line in known.read_text().splitlines()
    again = cli.run("-i", inventory, "-h", "t1", "-cmd", "true")
    assert again.returncode == 0, again


def test_a_dead_jump_host_fails_every_target_naming_it(jumpnet: JumpNet, cli: Cli,
                                                       tmp_path: Path) -> None:
    inventory = jumpnet.inventory(tmp_path / "hosts.ini", extra={
        name: jumpnet.section(name, proxy_jump=f"{jumpnet.user}@127.0.23.9:1")
        for name in TARGETS})
    result = cli.run("-i", inventory, "-g", "targets", "--json", "-cmd", "true")
    assert result.returncode == 3, result
    for event in result.terminals(TARGETS).values():
        assert event["kind"] == "connect", result
        assert event["error"].startswith("jump host 127.0.23.9:1: connection refused"), event


def test_copies_go_through_the_bastion_too(jumpnet: JumpNet, tmp_path: Path) -> None:
    scp = Cli(tmp_path / "home", tmp_path / "cwd", command="scp")
    payload = tmp_path / "payload.txt"
    payload.write_text("through the bastion\n")
    inventory = jumpnet.inventory(tmp_path / "hosts.ini")
    # Every "host" is this machine: each gets its own remote file name.
    remote = Path(f"/tmp/hostbatch-jump-{tmp_path.name}")
    try:
        for name in ("t1", "t2"):
            result = scp.run("-i", inventory, "-h", name, "-action", "put", "-local", payload,
                             "-remote", f"{remote}-{name}")
            assert result.returncode == 0, result
            assert Path(f"{remote}-{name}").read_text() == "through the bastion\n"
    finally:
        for name in ("t1", "t2"):
            Path(f"{remote}-{name}").unlink(missing_ok=True)


def test_proxy_jump_from_ssh_config(jumpnet: JumpNet, cli: Cli, tmp_path: Path) -> None:
    ssh_dir = cli.home / ".ssh"
    ssh_dir.mkdir(parents=True)
    bastion = jumpnet.bastion.host
    (ssh_dir / "config").write_text(
        f"Host t*\n    ProxyJump {jumpnet.user}@{bastion.address}:{bastion.port}\n")
    hosts = {name: jumpnet.section(name) for name in TARGETS}
    inventory = write_inventory(tmp_path / "hosts.ini", hosts, {"targets": list(TARGETS)},
                                defaults={"identity_file": str(jumpnet.client_key),
                                          "known_hosts": str(jumpnet.known_hosts),
                                          "user": jumpnet.user})
    before = jumpnet.bastion.accepted()
    result = cli.run("-i", inventory, "-g", "targets", "-cmd", "echo ok")
    assert result.returncode == 0, result
    assert sorted(result.stdout.splitlines()) == [f"{n}: ok" for n in TARGETS]
    assert jumpnet.bastion.accepted() - before == 1
    ignored = cli.run("-i", inventory, "-F", "none", "-h", "t1", "--json", "-cmd", "true")
    assert ignored.returncode == 3, ignored


def test_a_bastion_dying_mid_command_is_named_in_each_failure(jumpnet: JumpNet, cli: Cli,
                                                               tmp_path: Path) -> None:
    inventory = jumpnet.inventory(tmp_path / "hosts.ini")
    # A sleep of its own, so concurrent runs of the suite on this machine never see it.
    sleep = f"sleep 9.{secrets.randbelow(10**6):06d}"
    proc = cli.popen("-i", inventory, "-h", "t1,t2", "--json", "-cmd", f"{sleep}; echo done",
                     start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(remote_processes(f"^{sleep}$")) < 2:  # both commands run
            assert time.monotonic() < deadline and proc.poll() is None, "commands never started"
            time.sleep(0.05)
        jumpnet.bastion.kill_connections()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, stderr
    events = terminals(parse_jsonl(stdout.decode()), ["t1", "t2"])
    for event in events.values():
        assert event["kind"] == "disconnect", event
        assert "jump host bastion" in event["error"], event


def test_a_frozen_bastion_ends_each_target_by_keepalive_naming_it(
        jumpnet: JumpNet, cli: Cli, tmp_path: Path) -> None:
    inventory = jumpnet.inventory(tmp_path / "hosts.ini")
    sleep = f"sleep 9.{secrets.randbelow(10**6):06d}"
    proc = cli.popen("-i", inventory, "-h", "t1,t2", "--json", "--keepalive", "1",
                     "--keepalive-count", "2", "-cmd", f"{sleep}; echo done",
                     start_new_session=True)
    frozen: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(remote_processes(f"^{sleep}$")) < 2:  # both commands run
            assert time.monotonic() < deadline and proc.poll() is None, "commands never started"
            time.sleep(0.05)
        frozen = jumpnet.bastion.freeze_connections()
        froze = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - froze
    finally:
        jumpnet.bastion.thaw(frozen)
        jumpnet.bastion.kill_connections()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, stderr
    assert took < 9.0, took  # the commands alone would have run 9 s more
    events = terminals(parse_jsonl(stdout.decode()), ["t1", "t2"])
    for event in events.values():
        assert event["kind"] == "disconnect", event
        assert event["error"].startswith("jump host bastion"), event
        assert "no answer to 2 keepalives in 2s" in event["error"], event


def test_killing_the_controller_kills_the_commands_behind_the_bastion(
        jumpnet: JumpNet, cli: Cli, tmp_path: Path) -> None:
    inventory = jumpnet.inventory(tmp_path / "hosts.ini")
    sleep = f"sleep 9.{secrets.randbelow(10**6):06d}"
    proc = cli.popen("-i", inventory, "-h", "t1,t2", "-cmd", sleep, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(remote_processes(f"^{sleep}$")) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "commands never started"
            time.sleep(0.05)
        proc.kill()  # the parent alone
        proc.wait(timeout=10)
        killed = time.monotonic()
        while remote_processes(f"^{sleep}$") and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert remote_processes(f"^{sleep}$") == [], "commands outlived the controller"
        while process_group_alive(proc.pid) and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert not process_group_alive(proc.pid), "a worker outlived the controller by 10 s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_closing_targets_never_drops_the_shared_bastion(jumpnet: JumpNet, cli: Cli,
                                                        tmp_path: Path) -> None:
    # Data sent on a channel after its close makes OpenSSH drop the whole jump-host connection
    # ("data packet referred to nonexistent channel"), and with it every other target.
    inventory = jumpnet.inventory(tmp_path / "hosts.ini")
    for _ in range(4):
        before = jumpnet.bastion.accepted()
        result = cli.run("-i", inventory, "-g", "targets", "--json", "-cmd", "echo x")
        assert result.returncode == 0, result
        assert all(e["event"] == "exit" for e in result.terminals(TARGETS).values())
        assert jumpnet.bastion.accepted() - before == 1
    assert "nonexistent channel" not in jumpnet.bastion.log.read_text()


def test_a_jump_host_password_from_the_environment(jumpnet: JumpNet, cli: Cli,
                                                   tmp_path: Path) -> None:
    # The bastion has no key here, only password_env: its password is resolved in the parent
    # like a target's, and never printed.
    key = {"identity_file": str(jumpnet.client_key)}
    hosts = {name: jumpnet.section(name, proxy_jump="bastion", **key) for name in ("t1", "t2")}
    hosts["bastion"] = {**jumpnet.jump_section(jumpnet.bastion), "password_env": "HB_JUMP_PW"}
    inventory = write_inventory(tmp_path / "hosts.ini", hosts, defaults={
        "user": jumpnet.user, "known_hosts": str(jumpnet.known_hosts)})
    missing = cli.run("-i", inventory, "-h", "t1,t2", "-cmd", "true")
    assert missing.returncode == 2 and "HB_JUMP_PW" in missing.stderr, missing
    before = jumpnet.bastion.accepted_passwords()
    result = cli.run("-i", inventory, "-h", "t1,t2", "-cmd", "echo ok",
                     env={"HB_JUMP_PW": TEST_PASSWORD})
    assert result.returncode == 0, result
    assert sorted(result.stdout.splitlines()) == ["t1: ok", "t2: ok"]
    assert jumpnet.bastion.accepted_passwords() - before == 1
    assert TEST_PASSWORD not in result.stdout + result.stderr


def test_a_target_refused_behind_the_bastion_is_one_host_failure(
        jumpnet: JumpNet, cli: Cli, tmp_path: Path) -> None:
    """The bastion cannot open the forward: the host fails with its reason, and nothing but
    hostbatch's own lines reaches stderr (no raw paramiko log record)."""
    closed = {**jumpnet.section("t1", proxy_jump="bastion"), "port": "1"}
    inventory = jumpnet.inventory(tmp_path / "hosts.ini", extra={"closed": closed})
    result = cli.run("-i", inventory, "-h", "closed", "-cmd", "true")
    assert result.returncode == 3, result
    assert "closed" in result.stderr and "bastion" in result.stderr, result
    assert "Secsh" not in result.stderr and "FAILED" not in result.stderr, result
    assert all(line.startswith(("hostbatch", "  ")) for line in result.stderr.splitlines()), result
