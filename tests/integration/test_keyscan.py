"""``hostbatch keyscan`` against real sshd hosts: new / known / CHANGED keys, cloned keys,
unreachable hosts, no-terminal and terminal confirmation, and concurrent writers
(keyscan and ``--accept-new``) that never corrupt known_hosts."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    HOSTBATCH,
    TEST_USER,
    Cli,
    Result,
    assert_no_traceback,
    fleet_host,
    refused_port,
    split_lines,
    write_inventory,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

#: This suite's own fleet: k01..k10 on 127.0.26.x; k09 and k10 are clones (one host key).
KEYSCAN_NAMES = tuple(f"k{n:02d}" for n in range(1, 11))
CLONES = ("k09", "k10")


@pytest.fixture(scope="module")
def keyscan_fleet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("keyscan-fleet")
    first = workdir / "hosts" / CLONES[0]
    first.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-t", "ed25519", "-N", "", "-q", "-C", "cloned-image",
                    "-f", str(first / "ssh_host_ed25519_key")], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    for clone in CLONES[1:]:
        shutil.copytree(first, workdir / "hosts" / clone)
    with Fleet(workdir, len(KEYSCAN_NAMES), names=KEYSCAN_NAMES, first_address="127.0.26.10",
               user=test_user) as fleet:
        assert fleet.host("k09").host_key_pub == fleet.host("k10").host_key_pub
        yield fleet


class KeyscanCli:
    """Runs ``hostbatch keyscan`` (and batch_run) in the controlled environment of :class:`Cli`."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli

    def run(self, *args: str | Path, timeout: float = 60) -> Result:
        argv = [HOSTBATCH, "keyscan", *map(str, args)]
        start = time.monotonic()
        proc = subprocess.run(argv, env=self.cli.env(), cwd=self.cli.cwd, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        result = Result(argv, proc.returncode, proc.stdout.decode(), proc.stderr.decode(),
                        time.monotonic() - start, "run")
        assert_no_traceback(result)
        return result


@pytest.fixture
def keyscan(cli: Cli) -> KeyscanCli:
    return KeyscanCli(cli)


def inventory(tmp_path: Path, fleet: Fleet, names: tuple[str, ...] | list[str],
              known_hosts: Path, extra: dict[str, dict[str, str]] | None = None) -> Path:
    hosts = {}
    for name in names:
        section = fleet_host(fleet, name)
        del section["known_hosts"]
        hosts[name] = section
    hosts.update(extra or {})
    return write_inventory(tmp_path / "hosts.ini", hosts, {"these": list(hosts)},
                           defaults={"user": TEST_USER, "known_hosts": str(known_hosts)})


def table_rows(stdout: str) -> dict[str, list[str]]:
    lines = split_lines(stdout)
    assert lines[0].split() == ["HOST", "TYPE", "FINGERPRINT", "STATUS"], stdout
    return {line.split()[0]: line.split(None, 3)[1:] for line in lines[1:]}


def fingerprint_of(fleet: Fleet, name: str) -> str:
    proc = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", "-"], check=True,
                          input=fleet.host(name).host_key_pub.encode(), capture_output=True,
                          timeout=30)
    return proc.stdout.decode().split()[1]


def test_new_known_changed_and_unreachable(keyscan: KeyscanCli, main_fleet: Fleet,
                                           tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    web02_entry = main_fleet.host("web02").known_hosts_line.split()[0]
    wrong_key = main_fleet.host("web03").host_key_pub
    known_hosts.write_text(main_fleet.host("web01").known_hosts_line + "\n"
                           + f"{web02_entry} {wrong_key}\n")
    before = known_hosts.read_bytes()
    dead = {"hostname": "127.0.26.99", "port": str(refused_port("127.0.26.99"))}
    inv = inventory(tmp_path, main_fleet, ["web01", "web02", "web03"], known_hosts,
                    {"dead": dead})
    result = keyscan.run("-i", inv, "-g", "these")
    assert result.returncode == 3, result
    rows = table_rows(result.stdout)
    assert rows["web01"] == ["ssh-ed25519", fingerprint_of(main_fleet, "web01"), "known"]
    assert rows["web02"] == ["ssh-ed25519", fingerprint_of(main_fleet, "web02"), "CHANGED"]
    assert rows["web03"] == ["ssh-ed25519", fingerprint_of(main_fleet, "web03"), "new"]
    assert rows["dead"][:2] == ["-", "-"]
    assert rows["dead"][2].startswith("unreachable (connect): connection refused"), rows
    assert "REMOTE HOST KEY HAS CHANGED for web02" in result.stderr
    assert "1 new host key(s) not recorded: no terminal" in result.stderr
    assert known_hosts.read_bytes() == before

    recorded = keyscan.run("-i", inv, "-g", "these", "--yes")
    assert recorded.returncode == 3, recorded  # CHANGED and unreachable still count
    lines = split_lines(known_hosts.read_text())
    assert lines == [*split_lines(before.decode()), main_fleet.host("web03").known_hosts_line]

    clean = keyscan.run("-i", inv, "-g", "these", "-x", "web02,dead", "--json")
    assert clean.returncode == 0, clean
    events = [json.loads(line) for line in split_lines(clean.stdout)]
    assert [(e["host"], e["status"]) for e in events] == [("web01", "known"), ("web03", "known")]
    assert events[1]["key"] == main_fleet.host("web03").host_key_pub.split()[1]


def test_no_terminal_records_nothing_and_exits_1(keyscan: KeyscanCli, main_fleet: Fleet,
                                                 tmp_path: Path, cli: Cli) -> None:
    inv = inventory(tmp_path, main_fleet, ["db01"], tmp_path / "kh" / "known_hosts")
    result = keyscan.run("-i", inv, "-h", "db01")
    assert result.returncode == 1, result
    assert table_rows(result.stdout)["db01"][2] == "new"
    assert "rerun with --yes" in result.stderr
    assert not (tmp_path / "kh").exists()
    assert not (cli.home / ".ssh").exists()


def test_without_inventory_known_hosts_keys_go_to_home(keyscan: KeyscanCli, main_fleet: Fleet,
                                                       tmp_path: Path, cli: Cli) -> None:
    section = fleet_host(main_fleet, "web01")
    del section["known_hosts"]
    inv = write_inventory(tmp_path / "hosts.ini", {"web01": section},
                          defaults={"user": TEST_USER})
    result = keyscan.run("-i", inv, "-h", "web01", "--yes")
    assert result.returncode == 0, result
    home_file = cli.home / ".ssh" / "known_hosts"
    assert split_lines(home_file.read_text()) == [main_fleet.host("web01").known_hosts_line]
    assert f"recorded 1 new host key(s) in {home_file}" in result.stderr
    # A run now trusts the key without --accept-new.
    run = cli.run("-i", inv, "-h", "web01", "-cmd", "echo trusted")
    assert (run.returncode, run.stdout) == (0, "web01: trusted\n"), run


def test_cloned_host_keys_are_flagged(keyscan: KeyscanCli, keyscan_fleet: Fleet,
                                      tmp_path: Path) -> None:
    inv = inventory(tmp_path, keyscan_fleet, ["k08", *CLONES], tmp_path / "known_hosts")
    result = keyscan.run("-i", inv, "-g", "these", "--json")
    assert result.returncode == 1, result
    events = {e["host"]: e for e in map(json.loads, split_lines(result.stdout))}
    assert events["k09"]["shared_with"] == ["k10"] and events["k10"]["shared_with"] == ["k09"]
    assert events["k08"]["shared_with"] == []
    warnings = [line for line in split_lines(result.stderr) if "same host key" in line]
    assert len(warnings) == 1 and "k09, k10 show the same host key" in warnings[0], result
    assert "k08" not in warnings[0]
    table = keyscan.run("-i", inv, "-g", "these")
    assert table_rows(table.stdout)["k10"][2] == "new (shared key)"


def test_concurrent_keyscan_and_accept_new_never_corrupt_known_hosts(
        keyscan_fleet: Fleet, tmp_path: Path, cli: Cli) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("# kept\n")
    inv = inventory(tmp_path, keyscan_fleet, KEYSCAN_NAMES, known_hosts)
    procs = []
    for _ in range(3):
        procs.append(subprocess.Popen([HOSTBATCH, "keyscan", "-i", str(inv), "-g", "these",
                                       "--yes"], env=cli.env(), cwd=cli.cwd,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
        procs.append(subprocess.Popen([cli.program, "-i", str(inv), "-g", "these",
                                       "--accept-new", "-cmd", "true"], env=cli.env(),
                                      cwd=cli.cwd, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (proc.args, out.decode(), err.decode())
    lines = split_lines(known_hosts.read_text())
    assert lines[0] == "# kept"
    counts = Counter(lines[1:])
    assert set(counts) == {keyscan_fleet.host(n).known_hosts_line for n in KEYSCAN_NAMES}
    assert set(counts.values()) == {1}, counts


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """Read the pty master until ``needle`` (or, with ``needle=b""``, until the other side
    closes: Linux reports that as EIO)."""
    data = b""
    deadline = time.monotonic() + timeout
    while not needle or needle not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {needle!r} within {timeout}s; got {data!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                assert not needle, f"terminal closed before {needle!r}; got {data!r}"
                return data
            data += chunk
    return data


@pytest.mark.parametrize(("answer", "status", "written"), [("y", 0, True), ("n", 1, False)])
def test_terminal_confirmation(answer: str, status: int, written: bool, main_fleet: Fleet,
                               tmp_path: Path, cli: Cli) -> None:
    """stdin and stderr are a terminal (as a user's), stdout a pipe: one question, answered."""
    known_hosts = tmp_path / "known_hosts"
    inv = inventory(tmp_path, main_fleet, ["web02", "web03"], known_hosts)
    master, slave = pty.openpty()
    proc = subprocess.Popen([HOSTBATCH, "keyscan", "-i", str(inv), "-g", "these"],
                            env=cli.env(), cwd=cli.cwd, stdin=slave, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    try:
        prompt = _read_until(master, b"[y/N] ", 60)
        assert f"record 2 new host key(s) in {known_hosts}?".encode() in prompt
        assert not known_hosts.exists()  # nothing before the answer
        os.write(master, f"{answer}\n".encode())
        rest = _read_until(master, b"", 60)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, (out, prompt, rest)
    assert set(table_rows(out.decode())) == {"web02", "web03"}
    assert (prompt + rest).count(b"[y/N]") == 1  # asked once
    if written:
        assert sorted(split_lines(known_hosts.read_text())) == sorted(
            main_fleet.host(n).known_hosts_line for n in ("web02", "web03"))
        assert b"recorded 2 new host key(s)" in rest
    else:
        assert not known_hosts.exists()
        assert b"nothing recorded" in rest
