"""Host keys against real sshd: unknown keys refused unless --accept-new, where they are
recorded, changed keys always refused, and concurrent recording never corrupts the file."""

from __future__ import annotations

import stat
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    TEST_USER,
    Cli,
    fleet_host,
    json_lines,
    parse_jsonl,
    split_lines,
    terminals,
    write_inventory,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration


def _inventory(tmp_path: Path, fleet: Fleet, names: list[str], known_hosts: Path | None,
               name: str = "hosts.ini") -> Path:
    hosts = {}
    for host in names:
        section = fleet_host(fleet, host)
        del section["known_hosts"]
        hosts[host] = section
    defaults = {"user": TEST_USER}
    if known_hosts is not None:
        defaults["known_hosts"] = str(known_hosts)
    return write_inventory(tmp_path / name, hosts, {"these": names}, defaults=defaults)


def test_unknown_key_is_refused(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    inventory = _inventory(tmp_path, main_fleet, ["web01"], known_hosts)
    result = cli.run("-i", str(inventory), "--json", "-h", "web01", "-cmd", "echo should-not")
    assert result.returncode == 3, result
    events = result.events()
    end = terminals(events, ["web01"])["web01"]
    assert (end["event"], end["kind"]) == ("error", "hostkey"), end
    assert "--accept-new" in end["error"], end
    assert json_lines(events, "web01", "stdout") == []
    assert known_hosts.read_text() == ""
    assert not (cli.home / ".ssh" / "known_hosts").exists()


def test_accept_new_records_in_inventory_known_hosts(cli: Cli, main_fleet: Fleet,
                                                     tmp_path: Path) -> None:
    known_hosts = tmp_path / "kh" / "known_hosts"
    known_hosts.parent.mkdir()
    known_hosts.write_text("# existing comment\n")
    inventory = _inventory(tmp_path, main_fleet, ["web01", "web02"], known_hosts)
    result = cli.run("-i", str(inventory), "--accept-new", "-g", "these", "-cmd", "echo in")
    assert result.returncode == 0, result
    assert sorted(split_lines(result.stdout)) == ["web01: in", "web02: in"]
    lines = split_lines(known_hosts.read_text())
    assert lines[0] == "# existing comment"
    assert sorted(lines[1:]) == sorted(main_fleet.host(h).known_hosts_line
                                       for h in ("web01", "web02"))
    assert not (cli.home / ".ssh" / "known_hosts").exists()
    again = cli.run("-i", str(inventory), "-g", "these", "-cmd", "echo again")
    assert again.returncode == 0, again
    assert sorted(split_lines(again.stdout)) == ["web01: again", "web02: again"]
    assert split_lines(known_hosts.read_text()) == lines  # nothing added twice


def test_accept_new_without_inventory_known_hosts_uses_home(cli: Cli, main_fleet: Fleet,
                                                            tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, main_fleet, ["db01"], None)
    refused = cli.run("-i", str(inventory), "--json", "-h", "db01", "-cmd", "true")
    assert refused.returncode == 3, refused
    assert terminals(refused.events(), ["db01"])["db01"]["kind"] == "hostkey"
    assert not (cli.home / ".ssh").exists()
    result = cli.run("-i", str(inventory), "--accept-new", "-h", "db01", "-cmd", "echo ok")
    assert (result.returncode, result.stdout) == (0, "db01: ok\n"), result
    home_file = cli.home / ".ssh" / "known_hosts"
    assert split_lines(home_file.read_text()) == [main_fleet.host("db01").known_hosts_line]
    assert stat.S_IMODE(home_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home_file.parent.stat().st_mode) & 0o077 == 0
    again = cli.run("-i", str(inventory), "-h", "db01", "-cmd", "echo ok")
    assert (again.returncode, again.stdout) == (0, "db01: ok\n"), again


def test_key_known_from_home_file_is_accepted(cli: Cli, main_fleet: Fleet,
                                              tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, main_fleet, ["web03"], tmp_path / "empty_known_hosts")
    (cli.home / ".ssh").mkdir(mode=0o700)
    (cli.home / ".ssh" / "known_hosts").write_text(main_fleet.host("web03").known_hosts_line
                                                   + "\n")
    result = cli.run("-i", str(inventory), "-h", "web03", "-cmd", "echo ok")
    assert (result.returncode, result.stdout) == (0, "web03: ok\n"), result


def test_hashed_known_hosts_entry_is_accepted(cli: Cli, main_fleet: Fleet,
                                              tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(main_fleet.host("web02").known_hosts_line + "\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    assert known_hosts.read_text().startswith("|1|")
    inventory = _inventory(tmp_path, main_fleet, ["web02"], known_hosts)
    result = cli.run("-i", str(inventory), "-h", "web02", "-cmd", "echo hashed-ok")
    assert (result.returncode, result.stdout) == (0, "web02: hashed-ok\n"), result


def test_revoked_key_is_refused(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(main_fleet.host("web02").known_hosts_line + "\n"
                           + f"@revoked * {main_fleet.host('web02').host_key_pub}\n")
    before = known_hosts.read_bytes()
    inventory = _inventory(tmp_path, main_fleet, ["web02"], known_hosts)
    result = cli.run("-i", str(inventory), "--json", "--accept-new", "-h", "web02", "-cmd",
                     "echo ran")
    assert result.returncode == 3, result
    end = terminals(result.events(), ["web02"])["web02"]
    assert (end["event"], end["kind"]) == ("error", "hostkey"), end
    assert "revoked" in end["error"].lower(), end
    assert known_hosts.read_bytes() == before


def _other_key(tmp_path: Path) -> str:
    path = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-t", "ed25519", "-N", "", "-q", "-f", str(path)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    fields = path.with_suffix(".pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


def test_changed_key_refused_even_with_accept_new(cli: Cli, main_fleet: Fleet,
                                                  tmp_path: Path) -> None:
    host = main_fleet.host("web02")
    pattern = host.known_hosts_line.split()[0]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{pattern} {_other_key(tmp_path)}\n"
                           + main_fleet.host("web01").known_hosts_line + "\n")
    before = known_hosts.read_bytes()
    inventory = _inventory(tmp_path, main_fleet, ["web01", "web02"], known_hosts)
    for extra in ([], ["--accept-new"]):
        result = cli.run("-i", str(inventory), "--json", *extra, "-g", "these", "-cmd",
                         "echo ran")
        assert result.returncode == 3, result
        events = result.events()
        ends = terminals(events, ["web01", "web02"])
        assert ends["web01"]["event"] == "exit" and ends["web01"]["exit_status"] == 0
        assert (ends["web02"]["event"], ends["web02"]["kind"]) == ("error", "hostkey")
        assert "CHANGED" in ends["web02"]["error"], ends
        assert json_lines(events, "web02", "stdout") == []
        assert known_hosts.read_bytes() == before
    lines_mode = cli.run("-i", str(inventory), "--accept-new", "-h", "web02", "-cmd", "true")
    assert lines_mode.returncode == 3
    assert "CHANGED" in lines_mode.stderr, lines_mode
    assert known_hosts.read_bytes() == before
    assert not (cli.home / ".ssh" / "known_hosts").exists()


# ------------------------------------------------------------------ concurrent recording


@pytest.fixture(scope="module")
def twenty(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    names = [f"n{number:02d}" for number in range(1, 21)]
    with Fleet(tmp_path_factory.mktemp("twenty"), 20, names=names,
               first_address="127.0.12.10", user=test_user) as fleet:
        yield fleet


def test_concurrent_accept_new_records_each_key_once(cli: Cli, twenty: Fleet,
                                                     tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    inventory = _inventory(tmp_path, twenty, list(twenty.names), known_hosts)
    args = ["-i", str(inventory), "--accept-new", "--json", "-g", "these", "-cmd", "echo hi"]
    procs = [cli.popen(*args) for _ in range(2)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        ends = terminals(parse_jsonl(out.decode()), twenty.names)
        assert all(e["event"] == "exit" for e in ends.values()), ends
    expected = {host.known_hosts_line for host in twenty.hosts}
    lines = known_hosts.read_text().split("\n")
    assert lines[-1] == "", "file must end with a newline"
    counts = Counter(lines[:-1])
    assert set(counts) == expected, set(counts) ^ expected
    assert all(count == 1 for count in counts.values()), counts
    # a third run (no --accept-new) trusts the file
    result = cli.run("-i", str(inventory), "-g", "these", "-cmd", "true")
    assert result.returncode == 0, result
