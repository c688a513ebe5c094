"""Fast self-checks of the shared test infrastructure (sshd fleet and fault server).

These make real connections with the OpenSSH client and with paramiko, so a
broken fleet or fault server shows up here rather than as confusing failures
in hostbatch's own tests.
"""

from __future__ import annotations

import configparser
import itertools
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import paramiko
import pytest

from tests.support.fault_server import FaultServer
from tests.support.fleet import Fleet, ensure_test_user

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_USER = "hbtest"
TEST_PASSWORD = "pw%#;x"

_T = TypeVar("_T")


def needs_fleet(test: _T) -> _T:
    """Mark a test as an sshd-fleet integration test (root and OpenSSH sshd required)."""
    marks = [
        pytest.mark.integration,
        pytest.mark.skipif(os.geteuid() != 0, reason="the sshd fleet needs root"),
        pytest.mark.skipif(
            shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin") is None, reason="no sshd"
        ),
    ]
    decorated: Any = test
    for mark in marks:
        decorated = mark(decorated)
    return cast(_T, decorated)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("fleet"), 3) as started:
        yield started


def _paramiko_client(known_hosts: Path) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live (non-zombie) processes whose argv contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


# ------------------------------------------------------------------------ fleet


@needs_fleet
def test_fleet_ssh_each_host(fleet: Fleet) -> None:
    for host in fleet.hosts:
        result = subprocess.run(
            ["ssh", "-F", str(fleet.ssh_config), host.name, "echo hi; echo $SSH_CONNECTION"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        greeting, connection = result.stdout.splitlines()
        assert greeting == "hi"
        assert connection.split()[2:] == [host.address, str(host.port)]


@needs_fleet
def test_fleet_catch_all_block_by_address(fleet: Fleet) -> None:
    host = fleet.hosts[1]
    result = subprocess.run(
        ["ssh", "-F", str(fleet.ssh_config), host.address, "id -un"],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    assert (result.returncode, result.stdout) == (0, "root\n"), result.stderr


@needs_fleet
def test_fleet_files(fleet: Fleet) -> None:
    lines = fleet.known_hosts.read_text().splitlines()
    assert lines == [f"[{h.address}]:{h.port} {h.host_key_pub}" for h in fleet.hosts]
    assert [h.address for h in fleet.hosts] == ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
    assert len({h.host_key_pub for h in fleet.hosts}) == 3
    assert stat.S_IMODE(fleet.client_key.stat().st_mode) == 0o600


@needs_fleet
def test_fleet_paramiko_publickey(fleet: Fleet) -> None:
    host = fleet.hosts[0]
    with _paramiko_client(fleet.known_hosts) as client:
        client.connect(
            host.address,
            host.port,
            username="root",
            key_filename=str(fleet.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        _, stdout, _ = client.exec_command("echo $HOSTBATCH_FLEET_ID")
        assert stdout.read().decode().strip().endswith("/h001")


@needs_fleet
def test_fleet_password_auth_and_non_root_key(fleet: Fleet) -> None:
    ensure_test_user(TEST_USER, TEST_PASSWORD)
    ensure_test_user(TEST_USER, TEST_PASSWORD)  # idempotent
    host = fleet.hosts[2]
    with _paramiko_client(fleet.known_hosts) as client:
        client.connect(
            host.address,
            host.port,
            username=TEST_USER,
            password=TEST_PASSWORD,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        _, stdout, _ = client.exec_command("id -un")
        assert stdout.read().decode() == f"{TEST_USER}\n"
    with (
        _paramiko_client(fleet.known_hosts) as client,
        pytest.raises(paramiko.AuthenticationException),
    ):
        client.connect(
            host.address,
            host.port,
            username=TEST_USER,
            password="wrong",
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    # The fleet key is authorized for non-root users too (pytest's tmp dir is 0700).
    result = fleet.ssh(host.name, "id -un", user=TEST_USER)
    assert (result.returncode, result.stdout) == (0, f"{TEST_USER}\n"), result.stderr


@needs_fleet
def test_fleet_stop_and_start_host(fleet: Fleet) -> None:
    host = fleet.hosts[2]
    fleet.stop_host(host.name)
    try:
        assert not fleet.is_running(host.name)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host.address, host.port), timeout=2).close()
        assert fleet.ssh(fleet.hosts[0].name, "true").returncode == 0
    finally:
        fleet.start_host(host.name)
    assert fleet.ssh(host.name, "echo back").stdout == "back\n"


@needs_fleet
def test_fleet_freeze_host_gives_no_banner(fleet: Fleet) -> None:
    host = fleet.hosts[1]
    fleet.freeze_host(host.name)
    try:
        with socket.create_connection((host.address, host.port), timeout=2) as sock:
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(64)
    finally:
        fleet.thaw_host(host.name)
    assert fleet.ssh(host.name, "true").returncode == 0


@needs_fleet
def test_write_inventory(fleet: Fleet, tmp_path: Path) -> None:
    path = fleet.write_inventory(
        tmp_path / "inv" / "hosts.ini",
        {"web": ["h001", "h002"], "db": ["h003"], "all_servers": ["web", "db"]},
        defaults={"connect_timeout": "5"},
        host_options={"h002": {"user": TEST_USER, "password": TEST_PASSWORD}},
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert dict(parser["defaults"]) == {
        "user": "root",
        "identity_file": str(fleet.client_key),
        "known_hosts": str(fleet.known_hosts),
        "connect_timeout": "5",
    }
    assert dict(parser["host:h001"]) == {"hostname": "127.0.0.10", "port": str(fleet.port)}
    assert parser["host:h002"]["password"] == TEST_PASSWORD
    assert parser["group:web"]["hosts"] == "h001, h002"
    assert dict(parser["group:all_servers"]) == {"children": "web, db"}
    with pytest.raises(ValueError, match="not allowed"):
        fleet.write_inventory(tmp_path / "bad.ini", defaults={"hostnme": "x"})


@needs_fleet
def test_private_tmp_and_full_cleanup(tmp_path: Path) -> None:
    extra = "MaxStartups 7\nSetEnv FOO=bar"
    fleet = Fleet(
        tmp_path, 2, first_address="127.0.0.40", private_tmp=True, extra_sshd_config=extra
    )
    with fleet:
        assert fleet.ssh("h002", "echo $FOO").stdout == "bar\n"
        assert "[listener] 0 of 7-7 startups" in "".join(_processes_mentioning(str(tmp_path)))
        assert fleet.private_dir is not None
        marker = fleet.private_dir / "only-on-h001"
        assert fleet.ssh("h001", f"echo x > {marker} && cat {marker}").stdout == "x\n"
        assert fleet.ssh("h001", f"test -e {marker}").returncode == 0
        assert fleet.ssh("h002", f"test -e {marker}").returncode == 1
        assert not marker.exists()  # not visible outside the host's namespace either
        # Leftovers a stop() must still catch: a live session and a daemonized command.
        session = subprocess.Popen(
            fleet.ssh_argv("h001", "sleep 4141"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        daemonized = "setsid sleep 4242 </dev/null >/dev/null 2>&1 & echo ok"
        assert fleet.ssh("h002", daemonized).stdout == "ok\n"
        deadline = time.monotonic() + 5
        while not _processes_mentioning("sleep 4141") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_mentioning(str(fleet.workdir))
    assert session.wait(timeout=10) == 255
    fleet.stop()  # idempotent
    assert _processes_mentioning(str(fleet.workdir)) == []
    assert _processes_mentioning("sleep 4141") == []
    assert _processes_mentioning("sleep 4242") == []


@needs_fleet
def test_cli_detach(tmp_path: Path) -> None:
    workdir = tmp_path / "cli"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "tests.support.fleet", "--count", "2"),
            *("--workdir", str(workdir), "--first-address", "127.0.0.50"),
            *("--group", "web=h001,h002", "--detach"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    inventory = Path(result.stdout.strip())
    assert inventory == workdir / "hosts.ini"
    pid = int((workdir / "fleet.pid").read_text())
    try:
        assert "[group:web]\nhosts = h001, h002" in inventory.read_text()
        ssh = ["ssh", "-F", str(workdir / "ssh_config"), "h002", "echo up"]
        assert subprocess.run(ssh, capture_output=True, text=True, timeout=20).stdout == "up\n"
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert not (workdir / "fleet.pid").exists()
    assert _processes_mentioning(str(workdir)) == []


# ---------------------------------------------------------------- fault server


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fault-key") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-t", "ed25519", "-N", "", "-q", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def _connect(server: FaultServer, tmp_path: Path, **kwargs: float) -> paramiko.SSHClient:
    client = _paramiko_client(server.write_known_hosts(tmp_path / "known_hosts"))
    client.connect(
        server.address,
        server.port,
        username="tester",
        password="secret",
        look_for_keys=False,
        allow_agent=False,
        timeout=5,
        **kwargs,  # type: ignore[arg-type]
    )
    return client


def test_fault_no_banner(tmp_path: Path) -> None:
    with FaultServer("no_banner") as server:
        start = time.monotonic()
        with pytest.raises(paramiko.SSHException, match="banner"):
            _connect(server, tmp_path, banner_timeout=0.5)
        assert time.monotonic() - start < 3
        assert server.connections == 1


@pytest.mark.parametrize("mode", ["close_before_banner", "reset_before_banner"])
def test_fault_fail_first_connections(mode: str, tmp_path: Path) -> None:
    with FaultServer(mode, password="secret", fail_first=2) as server:
        for _ in range(2):
            with pytest.raises((paramiko.SSHException, OSError, EOFError)):
                _connect(server, tmp_path, banner_timeout=2)
        with _connect(server, tmp_path) as client:
            _, stdout, _ = client.exec_command("echo third")
            assert stdout.read() == b"third\n"
        assert server.connections == 3


def test_fault_normal_paramiko(tmp_path: Path, client_key: Path) -> None:
    with FaultServer("normal", authorized_key=client_key.with_suffix(".pub")) as server:
        client = _paramiko_client(server.write_known_hosts(tmp_path / "known_hosts"))
        with client:
            client.connect(
                server.address,
                server.port,
                username="tester",
                key_filename=str(client_key),
                look_for_keys=False,
                allow_agent=False,
                timeout=5,
            )
            _, stdout, stderr = client.exec_command("echo out; echo err >&2; exit 3")
            assert stdout.read() == b"out\n"
            assert stderr.read() == b"err\n"
            assert stdout.channel.recv_exit_status() == 3
            stdin, stdout, _ = client.exec_command("tr a-z A-Z")
            stdin.write(b"hello\n")
            stdin.channel.shutdown_write()
            assert stdout.read() == b"HELLO\n"
            assert stdout.channel.recv_exit_status() == 0
        assert server.commands == ["echo out; echo err >&2; exit 3", "tr a-z A-Z"]


def test_fault_normal_openssh_client(tmp_path: Path, client_key: Path) -> None:
    with FaultServer("normal", authorized_key=client_key) as server:
        known_hosts = server.write_known_hosts(tmp_path / "known_hosts")
        result = subprocess.run(
            [
                *("ssh", "-F", "/dev/null", "-i", str(client_key), "-p", str(server.port)),
                *("-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"),
                *("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-l", "tester"),
                *(server.address, "echo out; echo err >&2; exit 4"),
            ],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
        assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")


def test_fault_drip(tmp_path: Path) -> None:
    with FaultServer("drip", lines=4, interval=0.2) as server, _connect(server, tmp_path) as client:
        _, stdout, _ = client.exec_command("anything")
        arrivals = []
        for number in range(1, 5):
            assert stdout.readline() == f"line {number}\n"
            arrivals.append(time.monotonic())
        assert stdout.channel.recv_exit_status() == 0
        assert arrivals[-1] - arrivals[0] >= 0.5
        assert all(b - a >= 0.1 for a, b in itertools.pairwise(arrivals))


def test_fault_drop_after(tmp_path: Path) -> None:
    with FaultServer("drop_after", bytes=3000) as server, _connect(server, tmp_path) as client:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        channel.settimeout(5)
        channel.exec_command("anything")
        received = b""
        while chunk := channel.recv(65536):
            received += chunk
        assert received == b"x" * 3000
        deadline = time.monotonic() + 5
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not transport.is_active()
        assert channel.recv_exit_status() == -1  # never got an exit status


def test_fault_hang(tmp_path: Path) -> None:
    with FaultServer("hang") as server, _connect(server, tmp_path) as client:
        _, stdout, _ = client.exec_command("anything")
        stdout.channel.settimeout(0.4)
        with pytest.raises(TimeoutError):
            stdout.channel.recv(1)
        assert not stdout.channel.exit_status_ready()
        assert server.commands == ["anything"]


def test_fault_auth_hang(tmp_path: Path) -> None:
    with FaultServer("auth_hang") as server:
        start = time.monotonic()
        with pytest.raises(paramiko.AuthenticationException, match="timeout"):
            _connect(server, tmp_path, auth_timeout=0.5)
        assert time.monotonic() - start < 3


def test_fault_server_stops_cleanly(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    servers = [FaultServer(mode).start() for mode in ("no_banner", "hang", "auth_hang")]
    for server in servers:
        with socket.create_connection((server.address, server.port), timeout=2):
            pass
    with _connect(servers[1], tmp_path) as client:
        client.exec_command("x")
        for server in servers:
            server.stop()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leftover = [t for t in set(threading.enumerate()) - before if not t.daemon]
        if not leftover:
            break
        time.sleep(0.05)
    assert leftover == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((servers[0].address, servers[0].port), timeout=2).close()
