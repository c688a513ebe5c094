"""Nothing lost, nothing half-written: Ctrl-C, the per-host deadline, a connection dropped
mid-transfer and a corrupted copy all leave the old target intact and no temporary file."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.scp.scpkit import (
    FAULT_ADDRESS,
    NAMES,
    TEST_USER,
    Cli,
    Hosts,
    RemoteDir,
    parse_jsonl,
    sha256_file,
    terminal_events,
)
from tests.integration.scp.sftp_fault_server import SftpFaultServer
from tests.support.fleet import Fleet

#: In the command that streams a big file's content into cat (hostbatch.ssh.stream_file).
STREAM_MARK = "hostbatch-ready-"

pytestmark = pytest.mark.integration

OLD = b"the old content, which must survive\n"


def read_events_until(proc: subprocess.Popen[bytes], stop: Any,
                      timeout: float) -> tuple[list[dict[str, Any]], bytes]:
    """Read ``--json`` lines until ``stop(events)`` is true; return the events and raw text."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    raw = b""
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        for line in proc.stdout:
            raw += line
            events.append(json.loads(line))
            if stop(events):
                return events, raw
        raise AssertionError(f"the run ended before the awaited moment: {raw[-2000:]!r}")
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        timer.cancel()


def finish(proc: subprocess.Popen[bytes], raw: bytes, timeout: float = 60) -> tuple[int, str,
                                                                                    str]:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"batch_scp did not end within {timeout}s after the signal: "
                             f"{stderr.decode()[-2000:]}") from None
    return proc.returncode, (raw + stdout).decode(), stderr.decode()


def all_in_flight(events: list[dict[str, Any]]) -> bool:
    """Every host has a transfer under way (and none has finished: too late to interrupt)."""
    finished = [e for e in events if e["event"] in ("file", "done", "error")]
    assert not finished, f"a host finished before the fault could be injected: {finished}"
    flying = {e["host"] for e in events
              if e["event"] == "progress" and 0 < e["bytes"] < e["total"]}
    return flying == set(NAMES)


def test_ctrl_c_mid_put_keeps_the_old_file_everywhere(
        cli: Cli, inventory: Path, rdir: RemoteDir, big_file: Path) -> None:
    rdir.write_all("target", OLD)
    proc = cli.popen("-i", inventory, "-g", "all", "--json", "-action", "put", "-local",
                     big_file, "-remote", rdir / "target")

    events, raw = read_events_until(proc, all_in_flight, 60)
    assert {e["host"] for e in events} == set(NAMES), events
    # Mid-transfer, each host has its temporary file and still the old target.
    assert all(rdir.local(name, "target").read_bytes() == OLD for name in NAMES)
    assert set(rdir.temp_files()) == set(NAMES)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the foreground job
    sent = time.monotonic()
    status, stdout, stderr = finish(proc, raw)
    assert status == 130, (stdout[-2000:], stderr)
    assert time.monotonic() - sent < 15, "Ctrl-C took too long to take effect"
    for name, event in terminal_events(parse_jsonl(stdout), NAMES).items():
        assert event["event"] == "error" and event["kind"] == "interrupted", event
        assert rdir.local(name, "target").read_bytes() == OLD, name
    assert rdir.temp_files() == {}
    assert "Traceback" not in stderr, stderr


def test_ctrl_c_with_one_fork_skips_the_hosts_not_started(
        cli: Cli, inventory: Path, rdir: RemoteDir, big_file: Path) -> None:
    rdir.write_all("target", OLD)
    proc = cli.popen("-i", inventory, "-g", "all", "-f", "1", "--json", "-action", "put",
                     "-local", big_file, "-remote", rdir / "target")

    def one_in_flight(events: list[dict[str, Any]]) -> bool:
        assert not [e for e in events if e["event"] != "progress"], events
        return bool(events)

    events, raw = read_events_until(proc, one_in_flight, 60)
    first = events[0]["host"]
    os.killpg(proc.pid, signal.SIGINT)
    status, stdout, stderr = finish(proc, raw)
    assert status == 130, (stdout[-2000:], stderr)
    terminals = terminal_events(parse_jsonl(stdout), NAMES)
    for name, event in terminals.items():
        assert event["event"] == "error", event
        assert event["kind"] == ("interrupted" if name == first else "skipped"), event
        assert rdir.local(name, "target").read_bytes() == OLD, name
    assert rdir.temp_files() == {}


def test_ctrl_c_mid_get_keeps_the_old_local_copies(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, big_file: Path) -> None:
    for name in NAMES:
        shutil.copyfile(big_file, rdir.local(name, "big.bin"))
        hosts.chown(rdir.local(name, "big.bin"))
    local = cli.cwd / "out"
    for name in NAMES:
        (local / name).mkdir(parents=True)
        (local / name / "big.bin").write_bytes(OLD)
    proc = cli.popen("-i", inventory, "-g", "all", "--json", "-action", "get", "-remote",
                     rdir / "big.bin", "-local", local)
    _, raw = read_events_until(proc, all_in_flight, 60)
    os.killpg(proc.pid, signal.SIGINT)
    status, stdout, stderr = finish(proc, raw)
    assert status == 130, (stdout[-2000:], stderr)
    for name, event in terminal_events(parse_jsonl(stdout), NAMES).items():
        assert event["event"] == "error" and event["kind"] == "interrupted", event
        assert os.listdir(local / name) == ["big.bin"], name
        assert (local / name / "big.bin").read_bytes() == OLD, name


def test_sshd_killed_mid_put(cli: Cli, scp_fleet: Fleet, inventory: Path, rdir: RemoteDir,
                             mid_file: Path) -> None:
    """A real host goes away mid-transfer (its sshd and sessions killed): that host is
    reported as a lost connection, the others complete."""
    rdir.write_all("target", OLD)
    proc = cli.popen("-i", inventory, "-g", "all", "--json", "-action", "put", "-local",
                     mid_file, "-remote", rdir / "target")

    def scp3_in_flight(events: list[dict[str, Any]]) -> bool:
        assert not [e for e in events if e["host"] == "scp3" and e["event"] != "progress"]
        return any(e["host"] == "scp3" and e["event"] == "progress" for e in events)

    _, raw = read_events_until(proc, scp3_in_flight, 60)
    try:
        scp_fleet.stop_host("scp3")
        status, stdout, stderr = finish(proc, raw)
    finally:
        scp_fleet.start_host("scp3")
    assert status == 3, (stdout[-2000:], stderr)
    terminals = terminal_events(parse_jsonl(stdout), NAMES)
    assert terminals["scp3"]["event"] == "error", terminals
    assert terminals["scp3"]["kind"] == "disconnect", terminals
    for name in ("scp1", "scp2"):
        assert terminals[name]["event"] == "done", terminals
        assert sha256_file(rdir.local(name, "target")) == sha256_file(mid_file)
    assert rdir.temp_files(["scp1", "scp2"]) == {}


def test_deadline_mid_put_keeps_the_old_file_everywhere(
        cli: Cli, inventory: Path, rdir: RemoteDir, big_file: Path) -> None:
    # 0.5 s for 200 MB to each of three hosts at once would need 1.2 GB/s: far beyond this
    # machine, so the deadline always strikes mid-transfer.
    rdir.write_all("target", OLD)
    result = cli.run("-i", inventory, "-g", "all", "--json", "--timeout", "0.5", "-action",
                     "put", "-local", big_file, "-remote", rdir / "target")
    assert result.returncode == 3, result
    for name, event in result.terminals(NAMES).items():
        assert event["event"] == "error" and event["kind"] == "timeout", event
        assert event["duration"] < 10, event
        assert rdir.local(name, "target").read_bytes() == OLD, name
    assert result.duration < 20, result
    assert rdir.temp_files() == {}


# ------------------------------------------------------------------ the SFTP fault server


@pytest.fixture
def fault_root(tmp_path: Path) -> Path:
    root = tmp_path / "fault-root"
    root.mkdir()
    return root


@contextlib.contextmanager
def fault_server(fleet: Fleet, root: Path, **params: Any) -> Iterator[SftpFaultServer]:
    server = SftpFaultServer(root, address=FAULT_ADDRESS, authorized_key=fleet.client_key_pub,
                             username=TEST_USER, **params)
    with server:
        yield server


def fault_inventory(fleet: Fleet, server: SftpFaultServer, directory: Path) -> Path:
    """The fleet plus ``faulty`` (the fault server)."""
    known_hosts = server.write_known_hosts(directory / "faulty_known_hosts")
    path = fleet.write_inventory(directory / "fault-hosts.ini", {"grp": ["scp2", "scp3"]})
    with open(path, "a") as handle:
        handle.write(f"\n[host:faulty]\nhostname = {server.address}\nport = {server.port}\n"
                     f"known_hosts = {known_hosts}\n")
    return path


def test_fault_server_works_when_it_does_not_misbehave(
        cli: Cli, scp_fleet: Fleet, fault_root: Path, tmp_path: Path) -> None:
    """Control experiment for the tests below: a plain put and get through it succeed."""
    data = secrets.token_bytes(3 << 20)
    (cli.cwd / "data.bin").write_bytes(data)
    with fault_server(scp_fleet, fault_root) as server:
        inventory = fault_inventory(scp_fleet, server, tmp_path)
        result = cli.run("-i", inventory, "-h", "faulty", "--verify", "-action", "put",
                         "-local", "data.bin", "-remote", "/target")
        assert result.returncode == 0, result
        assert (fault_root / "target").read_bytes() == data
        result = cli.run("-i", inventory, "-h", "faulty", "-action", "get", "-remote",
                         "/target", "-local", "got")
        assert result.returncode == 0, result
        assert (cli.cwd / "got" / "faulty" / "target").read_bytes() == data
        assert not server.dropped.is_set()
        # The stream into cat was tried first; its shell (here, /bin/sh on another file
        # system than the SFTP root) did not see the empty temporary file, so the content
        # went over SFTP. --verify then asked the host for sha256sum, with the temporary name
        # quoted after --.
        streams = [c for c in server.commands if STREAM_MARK in c]
        assert len(streams) == 1, server.commands
        others = [c for c in server.commands if STREAM_MARK not in c]
        assert len(others) == 1, server.commands
        assert others[0].startswith("sha256sum -- "), server.commands


def test_verify_uses_sha256sum_on_the_host_even_for_awkward_names(
        cli: Cli, scp_fleet: Fleet, tmp_path: Path) -> None:
    """This server serves the real ``/``, so the ``sha256sum`` it runs (``/bin/sh -c``, as
    sshd does) sees the very file written over SFTP.  A checksum from sha256sum means no read
    back over SFTP: ``server.read`` stays 0.  The name would break unquoted shell use."""
    name = "-n it's \"日本\" é $(touch pwned) `touch pwned2` ;.txt"
    data = secrets.token_bytes(2 << 20)
    (cli.cwd / name).write_bytes(data)
    destination = tmp_path / "dest dir"
    destination.mkdir()
    with fault_server(scp_fleet, Path("/")) as server:
        inventory = fault_inventory(scp_fleet, server, tmp_path)
        result = cli.run("-i", inventory, "-h", "faulty", "--verify", "-action", "put",
                         "-local", name, "-remote", f"{destination}/")
        assert result.returncode == 0, result
        assert (destination / name).read_bytes() == data
        assert os.listdir(destination) == [name]
        # 2 MiB: the content streamed into cat (same file system here), then sha256sum.
        assert [STREAM_MARK in c for c in server.commands] == [True, False], server.commands
        assert server.commands[1].startswith("sha256sum -- "), server.commands
        assert server.written == 0, "the content went over SFTP"
        assert server.read == 0, "the checksum was computed by reading the file back"
    for directory in (cli.cwd, tmp_path, destination, Path("/"), Path.cwd()):
        assert not (directory / "pwned").exists() and not (directory / "pwned2").exists()


def test_verify_with_sha256sum_catches_a_corrupted_copy(
        cli: Cli, scp_fleet: Fleet, tmp_path: Path) -> None:
    data = secrets.token_bytes(512 << 10)  # under STREAM_MIN: over SFTP, which corrupts it
    (cli.cwd / "data.bin").write_bytes(data)
    destination = tmp_path / "dest"
    destination.mkdir()
    (destination / "target").write_bytes(OLD)
    with fault_server(scp_fleet, Path("/"), corrupt_writes=True) as server:
        inventory = fault_inventory(scp_fleet, server, tmp_path)
        result = cli.run("-i", inventory, "-h", "faulty", "--json", "--verify", "-action",
                         "put", "-local", "data.bin", "-remote", destination / "target")
        assert result.returncode == 1, result
        event = result.terminals(["faulty"])["faulty"]
        assert event["event"] == "error" and event["kind"] == "transfer", event
        assert "sha-256" in event["error"].lower(), event
        assert server.read == 0
    assert (destination / "target").read_bytes() == OLD
    assert os.listdir(destination) == ["target"]


def test_connection_dropped_mid_put(cli: Cli, scp_fleet: Fleet, fault_root: Path,
                                    tmp_path: Path, rdir: RemoteDir) -> None:
    """The fault server drops the connection after 2 MiB of an 8 MiB put; a real host in
    the same run is not affected."""
    data = secrets.token_bytes(8 << 20)
    (cli.cwd / "data.bin").write_bytes(data)
    faulty_dir = fault_root / rdir.path.lstrip("/")  # the server's / is fault_root
    faulty_dir.mkdir(parents=True)
    (faulty_dir / "target").write_bytes(OLD)
    rdir.write_all("target", OLD)
    with fault_server(scp_fleet, fault_root, drop_after_write=2 << 20) as server:
        inventory = fault_inventory(scp_fleet, server, tmp_path)
        result = cli.run("-i", inventory, "-h", "faulty,scp1", "--json", "-action", "put",
                         "-local", "data.bin", "-remote", rdir / "target", timeout=60)
        assert server.dropped.is_set()
    assert result.returncode == 3, result
    terminals = result.terminals(["faulty", "scp1"])
    assert terminals["faulty"]["event"] == "error", terminals
    assert terminals["faulty"]["kind"] == "disconnect", terminals
    assert terminals["scp1"]["event"] == "done", terminals
    assert rdir.local("scp1", "target").read_bytes() == data
    assert (faulty_dir / "target").read_bytes() == OLD
    assert result.duration < 30, result


#: Which of hostbatch's threads notices the dead socket first is a race (paramiko's transport
#: thread or the one copying), so the single-host drop scenarios run several times, each
#: against a fresh server, alternating a FIN and an RST.
DROP_ROUNDS = 10


def test_connection_dropped_mid_put_over_an_existing_file(
        cli: Cli, scp_fleet: Fleet, fault_root: Path, tmp_path: Path) -> None:
    data = secrets.token_bytes(8 << 20)
    (cli.cwd / "data.bin").write_bytes(data)
    (fault_root / "dir").mkdir()
    (fault_root / "dir" / "target").write_bytes(OLD)
    for round_number in range(DROP_ROUNDS):
        with fault_server(scp_fleet, fault_root, drop_after_write=2 << 20,
                          drop_reset=bool(round_number % 2)) as server:
            inventory = fault_inventory(scp_fleet, server, tmp_path)
            result = cli.run("-i", inventory, "-h", "faulty", "--json", "-action", "put",
                             "-local", "data.bin", "-remote", "/dir/target", timeout=60)
            assert server.dropped.is_set()
        assert result.returncode == 3, (round_number, result)
        event = result.terminals(["faulty"])["faulty"]
        assert event["event"] == "error", (round_number, event)
        assert event["kind"] == "disconnect", (round_number, event)
        assert (fault_root / "dir" / "target").read_bytes() == OLD
        # Cleanup is impossible once the connection is gone: a temporary file may remain,
        # but only under a hostbatch temporary name, never as a half-written target.
        for name in os.listdir(fault_root / "dir"):
            assert name == "target" or (name.startswith(".target.hostbatch-")
                                        and name.endswith(".part")), name


def test_connection_dropped_mid_get(cli: Cli, scp_fleet: Fleet, fault_root: Path,
                                    tmp_path: Path) -> None:
    data = secrets.token_bytes(8 << 20)
    (fault_root / "source.bin").write_bytes(data)
    local = cli.cwd / "out"
    (local / "faulty").mkdir(parents=True)
    (local / "faulty" / "source.bin").write_bytes(OLD)
    for round_number in range(DROP_ROUNDS):
        with fault_server(scp_fleet, fault_root, drop_after_read=2 << 20,
                          drop_reset=bool(round_number % 2)) as server:
            inventory = fault_inventory(scp_fleet, server, tmp_path)
            result = cli.run("-i", inventory, "-h", "faulty", "--json", "-action", "get",
                             "-remote", "/source.bin", "-local", local, timeout=60)
            assert server.dropped.is_set()
        assert result.returncode == 3, (round_number, result)
        event = result.terminals(["faulty"])["faulty"]
        assert event["event"] == "error", (round_number, event)
        assert event["kind"] == "disconnect", (round_number, event)
        # Locally, cleanup is always possible: the old copy and nothing else.
        assert os.listdir(local / "faulty") == ["source.bin"], round_number
        assert (local / "faulty" / "source.bin").read_bytes() == OLD


def test_deadline_while_blocked_on_a_slow_host_still_cleans_up(
        cli: Cli, scp_fleet: Fleet, fault_root: Path, tmp_path: Path, mid_file: Path) -> None:
    """A slow host (each 255 KiB write answered 10 ms late, ~25 MB/s): the deadline passes
    while hostbatch is blocked on the channel window, in the middle of sending a write
    request.  The host is alive and answering, so the temporary file can and must be
    removed (promptly), and the old target stays.  Two rounds: where the deadline falls is
    a matter of timing."""
    for round_number in range(2):
        (fault_root / "target").write_bytes(OLD)
        with fault_server(scp_fleet, fault_root, write_delay=0.01) as server:
            inventory = fault_inventory(scp_fleet, server, tmp_path)
            result = cli.run("-i", inventory, "-h", "faulty", "--json", "--timeout", "1",
                             "-action", "put", "-local", mid_file, "-remote", "/target",
                             timeout=60)
            assert result.returncode == 3, result
            event = result.terminals(["faulty"])["faulty"]
            assert event["event"] == "error" and event["kind"] == "timeout", event
            assert (fault_root / "target").read_bytes() == OLD
            assert os.listdir(fault_root) == ["target"], (round_number, result)
            assert event["duration"] < 4, f"a 1 s deadline took {event['duration']} s"


def test_verify_catches_a_corrupted_copy(cli: Cli, scp_fleet: Fleet, fault_root: Path,
                                         tmp_path: Path) -> None:
    """The server flips a byte of what it writes: the size matches, the SHA-256 does not.
    The fault server has no ``sha256sum`` for the virtual path, so hostbatch reads the file
    back (the documented fallback)."""
    data = secrets.token_bytes(1 << 20)
    (cli.cwd / "data.bin").write_bytes(data)
    (fault_root / "target").write_bytes(OLD)
    with fault_server(scp_fleet, fault_root, corrupt_writes=True) as server:
        inventory = fault_inventory(scp_fleet, server, tmp_path)
        result = cli.run("-i", inventory, "-h", "faulty", "--json", "--verify", "-action",
                         "put", "-local", "data.bin", "-remote", "/target")
        assert result.returncode == 1, result
        event = result.terminals(["faulty"])["faulty"]
        assert event["event"] == "error" and event["kind"] == "transfer", event
        assert "sha-256" in event["error"].lower(), event
        assert (fault_root / "target").read_bytes() == OLD
        assert os.listdir(fault_root) == ["target"]
        # Control: without --verify the corruption lands (size is all that is checked).
        result = cli.run("-i", inventory, "-h", "faulty", "-action", "put", "-local",
                         "data.bin", "-remote", "/target")
        assert result.returncode == 0, result
        assert sha256_file(fault_root / "target") != sha256_file(cli.cwd / "data.bin")
