"""Connection failures and faults: refused, silent (no banner), retries of transient
handshake failures, connections dropped mid-output, dripping and hanging servers."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from hostbatch.errors import FailureKind
from hostbatch.ssh.command import run_command
from hostbatch.ssh.context import HostContext
from hostbatch.ssh.errors import HostJobError
from tests.integration.conftest import (
    TEST_USER,
    Cli,
    fleet_host,
    json_lines,
    parse_jsonl,
    refused_port,
    terminals,
    write_inventory,
)
from tests.support.fault_server import FaultServer, generate_host_key
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fault_host_key() -> paramiko.PKey:
    return generate_host_key()


@pytest.fixture
def fault_server(fault_host_key: paramiko.PKey, main_fleet: Fleet) -> Iterator[Any]:
    """Start FaultServers on 127.0.13.x (one address each); all stopped after the test."""
    servers: list[FaultServer] = []

    def start(mode: str, **params: Any) -> FaultServer:
        server = FaultServer(mode, address=f"127.0.13.{len(servers) + 1}",
                             host_key=fault_host_key,
                             authorized_key=main_fleet.client_key_pub, **params)
        servers.append(server.start())
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def _fault_section(server: FaultServer, main_fleet: Fleet, tmp_path: Path) -> dict[str, str]:
    known_hosts = server.write_known_hosts(tmp_path / f"kh-{server.address}")
    return {"hostname": server.address, "port": str(server.port),
            "identity_file": str(main_fleet.client_key), "known_hosts": str(known_hosts)}


def _inventory(tmp_path: Path, hosts: dict[str, dict[str, str]]) -> Path:
    return write_inventory(tmp_path / "hosts.ini", hosts, {"these": list(hosts)},
                           defaults={"user": TEST_USER})


# ------------------------------------------------------------------ 10. unreachable host


def test_stopped_host_is_connect_error_fast_others_fine(cli: Cli, outage_fleet: Fleet,
                                                        main_fleet: Fleet,
                                                        tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, {
        "ok1": fleet_host(outage_fleet, "ok1"),
        "down1": fleet_host(outage_fleet, "down1"),
        "web01": fleet_host(main_fleet, "web01"),
    })
    result = cli.run("-i", str(inventory), "--json", "-g", "these", "-cmd", "echo alive")
    assert result.returncode == 3, result
    events = result.events()
    ends = terminals(events, ["ok1", "down1", "web01"])
    assert (ends["down1"]["event"], ends["down1"]["kind"]) == ("error", "connect"), ends
    assert ends["down1"]["duration"] < 3.0, ends  # refused at once
    for host in ("ok1", "web01"):
        assert (ends[host]["event"], ends[host]["exit_status"]) == ("exit", 0)
        assert json_lines(events, host, "stdout") == ["alive"]
    assert result.duration < 10, result
    lines_mode = cli.run("-i", str(inventory), "-g", "these", "-cmd", "echo alive")
    assert lines_mode.returncode == 3
    reports = [line for line in lines_mode.stderr.splitlines()
               if line.startswith("hostbatch: down1: connect: ")]
    assert reports, lines_mode  # reported as it happens: hostbatch: HOST: KIND: MESSAGE
    assert sorted(lines_mode.stdout.splitlines()) == ["ok1: alive", "web01: alive"]


def test_unresolvable_host_is_connect_error(cli: Cli, tmp_path: Path, main_fleet: Fleet) -> None:
    inventory = write_inventory(tmp_path / "hosts.ini",
                                {"web01": fleet_host(main_fleet, "web01")},
                                {"these": ["web01", "no-such-host.invalid"]},
                                defaults={"user": TEST_USER})
    result = cli.run("-i", str(inventory), "--json", "-g", "these", "-cmd", "true")
    assert result.returncode == 3, result
    ends = terminals(result.events(), ["web01", "no-such-host.invalid"])
    assert ends["no-such-host.invalid"]["kind"] == "connect", ends
    assert ends["web01"]["exit_status"] == 0


# ------------------------------------------------------------------ 11. TCP but no SSH


def test_no_banner_times_out_others_unaffected(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                               tmp_path: Path) -> None:
    silent = fault_server("no_banner")
    inventory = _inventory(tmp_path, {
        "silent": _fault_section(silent, main_fleet, tmp_path),
        "web01": fleet_host(main_fleet, "web01"),
        "web02": fleet_host(main_fleet, "web02"),
    })
    start = time.monotonic()
    proc = cli.popen("-i", str(inventory), "--json", "--connect-timeout", "1", "-g", "these",
                     "-cmd", "echo quick")
    assert proc.stdout is not None
    arrivals: dict[str, float] = {}
    lines = []
    for raw in proc.stdout:
        lines.append(raw.decode())
        event = parse_jsonl(raw.decode())[0]
        if event["event"] in ("exit", "error"):
            arrivals[event["host"]] = time.monotonic() - start
    _, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - start
    assert proc.returncode == 3, err.decode()
    events = parse_jsonl("".join(lines))
    ends = terminals(events, ["silent", "web01", "web02"])
    assert (ends["silent"]["event"], ends["silent"]["kind"]) == ("error", "timeout"), ends
    assert 0.8 <= ends["silent"]["duration"] <= 4.0, ends
    assert elapsed < 15.0
    for host in ("web01", "web02"):
        assert ends[host]["exit_status"] == 0, ends
        assert ends[host]["duration"] < ends["silent"]["duration"], ends
        assert json_lines(events, host, "stdout") == ["quick"]
        # the healthy hosts are reported before the silent one gives up
        assert arrivals[host] < arrivals["silent"], arrivals
    assert silent.connections == 1  # a timeout is not retried


def test_frozen_sshd_times_out(cli: Cli, outage_fleet: Fleet, tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, {name: fleet_host(outage_fleet, name)
                                      for name in ("ok1", "frozen1")})
    outage_fleet.freeze_host("frozen1")
    try:
        result = cli.run("-i", str(inventory), "--json", "--connect-timeout", "1", "-g", "these",
                         "-cmd", "echo up")
    finally:
        outage_fleet.thaw_host("frozen1")
    assert result.returncode == 3, result
    ends = terminals(result.events(), ["ok1", "frozen1"])
    assert ends["frozen1"]["kind"] == "timeout", ends
    assert 0.8 <= ends["frozen1"]["duration"] <= 4.0, ends
    assert ends["ok1"]["exit_status"] == 0, ends
    assert ends["ok1"]["duration"] < ends["frozen1"]["duration"], ends
    assert result.duration < 15.0, result


@pytest.mark.parametrize("method", ["publickey", "password"])
def test_auth_never_answered_times_out(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                       tmp_path: Path, method: str) -> None:
    """--connect-timeout covers authentication: a server that never answers it is a timeout,
    not a rejected key or password."""
    server = fault_server("auth_hang")
    section = _fault_section(server, main_fleet, tmp_path)
    if method == "password":
        section["password"] = "irrelevant-secret"
    inventory = _inventory(tmp_path, {"mute": section})
    result = cli.run("-i", str(inventory), "--json", "--connect-timeout", "1", "-h", "mute",
                     "-cmd", "true")
    assert result.returncode == 3, result
    end = terminals(result.events(), ["mute"])["mute"]
    assert end["duration"] <= 4.0, end
    assert "rejected" not in end["error"], end  # the server never answered
    assert end["kind"] == "timeout", end


def test_inventory_connect_timeout_is_used(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                           tmp_path: Path) -> None:
    silent = fault_server("no_banner")
    section = _fault_section(silent, main_fleet, tmp_path) | {"connect_timeout": "1"}
    inventory = _inventory(tmp_path, {"silent": section})
    result = cli.run("-i", str(inventory), "--json", "-h", "silent", "-cmd", "true")
    end = terminals(result.events(), ["silent"])["silent"]
    assert end["kind"] == "timeout" and 0.8 <= end["duration"] <= 4.0, end


# ------------------------------------------------------------------ 12. retries


def test_transient_close_is_retried(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                    tmp_path: Path) -> None:
    server = fault_server("close_before_banner", fail_first=2)
    inventory = _inventory(tmp_path, {"flaky": _fault_section(server, main_fleet, tmp_path)})
    result = cli.run("-i", str(inventory), "--json", "-h", "flaky", "-cmd", "echo third-time")
    assert result.returncode == 0, result
    events = result.events()
    assert terminals(events, ["flaky"])["flaky"]["exit_status"] == 0
    assert json_lines(events, "flaky", "stdout") == ["third-time"]
    assert server.connections == 3


def test_transient_reset_is_retried(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                    tmp_path: Path) -> None:
    """Each server resets (RST) its first connection right after accepting it.  Depending on
    timing the client sees the reset in connect() or in the banner read: both are transient.
    Eight servers make it near certain that both paths are taken."""
    servers = [fault_server("reset_before_banner", fail_first=1) for _ in range(8)]
    names = [f"flaky{n}" for n in range(len(servers))]
    inventory = _inventory(tmp_path, {name: _fault_section(server, main_fleet, tmp_path)
                                      for name, server in zip(names, servers, strict=True)})
    result = cli.run("-i", str(inventory), "--json", "-g", "these", "-cmd", "echo second-time")
    events = result.events()
    ends = terminals(events, names)
    assert result.returncode == 0, result
    for name, server in zip(names, servers, strict=True):
        assert ends[name]["event"] == "exit", ends[name]
        assert json_lines(events, name, "stdout") == ["second-time"]
        assert server.connections == 2


def test_no_retry_with_retries_zero(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                    tmp_path: Path) -> None:
    server = fault_server("close_before_banner", fail_first=2)
    inventory = _inventory(tmp_path, {"flaky": _fault_section(server, main_fleet, tmp_path)})
    result = cli.run("-i", str(inventory), "--json", "--retries", "0", "-h", "flaky", "-cmd",
                     "true")
    assert result.returncode == 3, result
    end = terminals(result.events(), ["flaky"])["flaky"]
    assert (end["event"], end["kind"]) == ("error", "connect"), end
    assert server.connections == 1


def test_retries_exhausted(cli: Cli, fault_server: Any, main_fleet: Fleet,
                           tmp_path: Path) -> None:
    server = fault_server("close_before_banner", fail_first=5)
    inventory = _inventory(tmp_path, {"flaky": _fault_section(server, main_fleet, tmp_path)})
    result = cli.run("-i", str(inventory), "--json", "--retries", "3", "-h", "flaky", "-cmd",
                     "true")
    assert result.returncode == 3, result
    assert terminals(result.events(), ["flaky"])["flaky"]["kind"] == "connect"
    assert server.connections == 4


def test_refused_port_is_not_retried(cli: Cli, tmp_path: Path, main_fleet: Fleet) -> None:
    port = refused_port("127.0.13.200")
    inventory = _inventory(tmp_path, {"closed": {"hostname": "127.0.13.200", "port": str(port),
                                                 "identity_file": str(main_fleet.client_key)}})
    # with 10 retries, even the shortest jitter (0.1 s x attempt) would add 5.5 s
    result = cli.run("-i", str(inventory), "--json", "--retries", "10", "-h", "closed", "-cmd",
                     "true")
    assert result.returncode == 3, result
    end = terminals(result.events(), ["closed"])["closed"]
    assert end["kind"] == "connect", end
    assert end["duration"] < 4.0, end


# ------------------------------------------------------------------ 17. faults mid-command


@pytest.mark.parametrize("reset", [False, True])
def test_connection_dropped_mid_output(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                       tmp_path: Path, reset: bool) -> None:
    server = fault_server("drop_after", bytes=20000, reset=reset)
    inventory = _inventory(tmp_path, {"dropper": _fault_section(server, main_fleet, tmp_path),
                                      "web01": fleet_host(main_fleet, "web01")})
    result = cli.run("-i", str(inventory), "--json", "-g", "these", "-cmd", "echo fine",
                     timeout=30)
    assert result.returncode == 3, result
    ends = terminals(result.events(), ["dropper", "web01"])
    assert (ends["dropper"]["event"], ends["dropper"]["kind"]) == ("error", "disconnect"), ends
    assert ends["web01"]["exit_status"] == 0
    assert result.duration < 10, result


def test_drip_lines_arrive_spread_in_time(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                          tmp_path: Path) -> None:
    server = fault_server("drip", lines=5, interval=0.4, exit_status=3)
    inventory = _inventory(tmp_path, {"drip": _fault_section(server, main_fleet, tmp_path)})
    proc = cli.popen("-i", str(inventory), "-h", "drip", "-cmd", "anything")
    assert proc.stdout is not None
    arrivals = []
    lines = []
    for raw in proc.stdout:
        arrivals.append(time.monotonic())
        lines.append(raw.decode())
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err.decode()  # exit status 3 from the command
    assert lines == [f"drip: line {n}\n" for n in range(1, 6)]
    # 5 lines 0.4 s apart: 1.6 s from first to last.  A loaded machine may deliver two lines
    # together, but never all of them in one burst at the end.
    assert arrivals[-1] - arrivals[0] >= 0.8, arrivals
    bursts = 1 + sum(1 for a, b in itertools.pairwise(arrivals) if b - a >= 0.1)
    assert bursts >= 3, arrivals


def test_hanging_command_times_out(cli: Cli, fault_server: Any, main_fleet: Fleet,
                                   tmp_path: Path) -> None:
    server = fault_server("hang")
    inventory = _inventory(tmp_path, {"hang": _fault_section(server, main_fleet, tmp_path)})
    result = cli.run("-i", str(inventory), "--json", "--timeout", "1", "-h", "hang", "-cmd",
                     "echo never")
    assert result.returncode == 3, result
    end = terminals(result.events(), ["hang"])["hang"]
    assert (end["event"], end["kind"]) == ("error", "timeout"), end
    assert end["duration"] < 4.0, end
    assert result.duration < 15.0, result


def test_connection_that_breaks_while_reading_output_is_a_disconnect(main_fleet: Fleet) -> None:
    """paramiko's ``recv`` acknowledges the window it frees; when the connection has just
    broken, that acknowledgement raises EOFError inside ``recv``. The command must end as
    ``disconnect``, not as an internal error (the fault matrix saw it on a loaded machine)."""
    host = main_fleet.host("web01")
    sock = socket.create_connection((host.address, host.port), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.connect(username=TEST_USER,
                          pkey=paramiko.Ed25519Key.from_private_key_file(str(main_fleet.client_key)))
        blocks: list[bytes] = []

        def on_lines(_stream: str, block: bytes, _added: bool) -> None:
            if not blocks:  # our side of the connection breaks: every later write fails
                sock.shutdown(socket.SHUT_WR)
            blocks.append(block)

        ctx = HostContext(host="web01", marker="HBTEST", on_lines=on_lines)
        with pytest.raises(HostJobError) as failure:
            run_command(transport, "yes | head -c 4000000", ctx)
        assert failure.value.kind is FailureKind.DISCONNECT, failure.value
        assert "connection lost" in failure.value.message
        assert blocks, "the output before the break was passed on"
    finally:
        transport.close()
