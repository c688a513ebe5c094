"""``batch_scp -action get``: ``LOCAL/HOST/BASENAME`` per host, each with that host's content."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import NAMES, Cli, Hosts, RemoteDir, sha256_file

pytestmark = pytest.mark.integration


def host_content(name: str) -> bytes:
    return f"this is {name}\n".encode() + secrets.token_bytes(100_000)


@pytest.fixture
def per_host_files(rdir: RemoteDir) -> dict[str, bytes]:
    """``info.bin`` with different content on each host."""
    contents = {name: host_content(name) for name in NAMES}
    for name, data in contents.items():
        rdir.write(name, "info.bin", data, 0o640)
        os.utime(rdir.local(name, "info.bin"), (1_100_000_000, 1_100_000_000))
    return contents


def test_get_from_several_hosts(cli: Cli, inventory: Path, rdir: RemoteDir,
                                per_host_files: dict[str, bytes]) -> None:
    result = cli.run("-i", inventory, "-g", "all", "-action", "get", "-remote",
                     rdir / "info.bin", "-local", "collected")
    assert result.returncode == 0, result
    local = cli.cwd / "collected"
    assert sorted(os.listdir(local)) == sorted(NAMES)
    for name, data in per_host_files.items():
        assert os.listdir(local / name) == ["info.bin"], name
        got = local / name / "info.bin"
        assert got.read_bytes() == data, name
        assert got.stat().st_mode & 0o7777 == 0o640, name
        # Without -p the time is that of the copy, not the remote one.
        assert int(got.stat().st_mtime) != 1_100_000_000, name
    lines = result.file_lines()
    assert sorted((m["host"], m["action"], m["source"], m["destination"]) for m in lines) == [
        (name, "get", rdir / "info.bin", str(local / name / "info.bin")) for name in NAMES]


def test_get_with_p_and_verify(cli: Cli, inventory: Path, rdir: RemoteDir,
                               per_host_files: dict[str, bytes]) -> None:
    local = cli.cwd / "out"
    local.mkdir()
    result = cli.run("-i", inventory, "-g", "all", "-p", "--verify", "--json", "-action",
                     "get", "-remote", rdir / "info.bin", "-local", local)
    assert result.returncode == 0, result
    for name, event in result.terminals(NAMES).items():
        assert event["event"] == "done", event
        assert event["files"] == 1 and event["bytes"] == len(per_host_files[name]), event
        got = local / name / "info.bin"
        assert got.read_bytes() == per_host_files[name]
        assert int(got.stat().st_mtime) == 1_100_000_000, name


def test_get_replaces_an_older_local_copy(cli: Cli, inventory: Path, rdir: RemoteDir,
                                          per_host_files: dict[str, bytes]) -> None:
    local = cli.cwd / "out"
    (local / "scp1").mkdir(parents=True)
    (local / "scp1" / "info.bin").write_bytes(b"stale\n")
    result = cli.run("-i", inventory, "-h", "scp1", "-action", "get", "-remote",
                     rdir / "info.bin", "-local", "out")
    assert result.returncode == 0, result
    assert (local / "scp1" / "info.bin").read_bytes() == per_host_files["scp1"]
    assert os.listdir(local / "scp1") == ["info.bin"]


def test_get_of_a_file_missing_on_one_host(cli: Cli, inventory: Path, rdir: RemoteDir,
                                           per_host_files: dict[str, bytes]) -> None:
    rdir.local("scp2", "info.bin").unlink()
    result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "get", "-remote",
                     rdir / "info.bin", "-local", "out")
    assert result.returncode == 1, result
    terminals = result.terminals(NAMES)
    assert terminals["scp2"]["event"] == "error", terminals
    assert terminals["scp2"]["kind"] == "transfer", terminals
    assert rdir / "info.bin" in terminals["scp2"]["error"], terminals
    local = cli.cwd / "out"
    for name in ("scp1", "scp3"):
        assert terminals[name]["event"] == "done", terminals
        assert (local / name / "info.bin").read_bytes() == per_host_files[name]
    assert not (local / "scp2" / "info.bin").exists()
    if (local / "scp2").exists():
        assert os.listdir(local / "scp2") == []
    # The line output names the failure on stderr and in the summary.
    result = cli.run("-i", inventory, "-g", "all", "-action", "get", "-remote",
                     rdir / "info.bin", "-local", "out2")
    assert result.returncode == 1, result
    assert "hostbatch: scp2: transfer:" in result.stderr, result


def test_get_from_the_remote_home(cli: Cli, inventory: Path, hosts: Hosts) -> None:
    name = f"hb-scp-get-{secrets.token_hex(4)}.txt"
    home_file = Path("/home/hbtest") / name
    home_file.write_bytes(b"from home\n")
    os.chown(home_file, hosts.uid, hosts.gid)
    try:
        for remote in (f"~/{name}", name):
            result = cli.run("-i", inventory, "-h", "scp3", "-action", "get", "-remote",
                             remote, "-local", "home-out")
            assert result.returncode == 0, result
            got = cli.cwd / "home-out" / "scp3" / name
            assert got.read_bytes() == b"from home\n"
            got.unlink()
    finally:
        home_file.unlink(missing_ok=True)


def test_get_of_a_large_file_matches(cli: Cli, inventory: Path, rdir: RemoteDir,
                                     mid_file: Path) -> None:
    for name in NAMES:
        shutil.copyfile(mid_file, rdir.local(name, "mid.bin"))
    result = cli.run("-i", inventory, "-g", "all", "--verify", "-action", "get", "-remote",
                     rdir / "mid.bin", "-local", "big")
    assert result.returncode == 0, result
    for name in NAMES:
        assert sha256_file(cli.cwd / "big" / name / "mid.bin") == sha256_file(mid_file)
