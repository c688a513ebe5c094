"""Trees as one tar stream per host (issue 11): the stream is used, names that are not UTF-8
survive both ways (and their JSON escape is lossless), a full disk and a deadline leave the
old tree byte-identical with no staging directory behind, and a host without GNU tar falls
back to SFTP, saying so."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import (
    NAMES,
    TEST_USER,
    Cli,
    RemoteDir,
    diff_snapshots,
    make_tree,
    snapshot,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

#: A file name and a directory name that are not UTF-8 (Linux allows any byte but / and NUL).
BAD_FILE = os.fsdecode(b"bad\xff name.txt")
BAD_DIR = os.fsdecode(b"dir\xfe")
#: An address outside the session fleet's, for the host without GNU tar.
NO_TAR_ADDRESS = "127.0.9.30"
#: And for the host that allows SFTP only.
SFTP_ONLY_ADDRESS = "127.0.9.31"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "tree")
    (root / BAD_FILE).write_bytes(b"not utf-8\n")
    (root / BAD_DIR).mkdir()
    (root / BAD_DIR / "inside").write_bytes(b"in a non-UTF-8 directory\n")
    return root


def test_tree_put_and_get_stream_with_names_that_are_not_utf8(
        cli: Cli, inventory: Path, rdir: RemoteDir, tree: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "-r", "--verify", "--json", "-action", "put",
                     "-local", tree, "-remote", rdir.path)
    assert result.returncode == 0, result
    expected = snapshot(tree)
    for name, done in result.terminals(NAMES).items():
        assert done["event"] == "done" and done["method"] == "stream", done
        assert done["files"] == sum(1 for n in expected.values() if n.kind == "f"), done
        assert diff_snapshots(expected, snapshot(rdir.local(name, "tree"))) == [], name
    # The JSON is valid UTF-8; the stray byte is the escape \udcff, which decodes losslessly.
    assert "\\udcff" in result.stdout
    destinations = [e["destination"] for e in result.events() if e["event"] == "file"]
    assert f"{rdir.path}/tree/{BAD_FILE}" in destinations
    assert os.fsencode(f"{rdir.path}/tree/{BAD_FILE}").endswith(b"bad\xff name.txt")
    assert rdir.temp_files() == {}

    got = cli.run("-i", inventory, "-g", "all", "-r", "--verify", "--json", "-action", "get",
                  "-remote", rdir / "tree", "-local", "got")
    assert got.returncode == 0, got
    for name, done in got.terminals(NAMES).items():
        assert done["method"] == "stream", done
        assert diff_snapshots(expected, snapshot(cli.cwd / "got" / name / "tree")) == [], name
    leftovers = [p for p in (cli.cwd / "got").rglob("*") if ".hostbatch-" in p.name]
    assert leftovers == []


def test_tree_put_on_a_full_disk_keeps_the_old_tree(
        cli: Cli, inventory: Path, rdir: RemoteDir, tmp_path: Path) -> None:
    for name in ("scp1", "scp2"):
        rdir.mkdir(name, "small")
    rdir.mount_tiny("scp3", "small", "1m")
    source = tmp_path / "tree"
    source.mkdir()
    (source / "a.txt").write_bytes(b"new a\n")
    (source / "big.bin").write_bytes(secrets.token_bytes(3 << 20))
    for name in NAMES:
        rdir.mkdir(name, "small/tree")
        rdir.write(name, "small/tree/a.txt", b"old a\n")
    before = snapshot(rdir.local("scp3", "small"))
    result = cli.run("-i", inventory, "-g", "all", "-r", "--json", "-action", "put", "-local",
                     source, "-remote", rdir / "small")
    assert result.returncode == 1, result
    terminals = result.terminals(NAMES)
    assert terminals["scp3"]["kind"] == "transfer", terminals
    assert "disk full" in terminals["scp3"]["error"], terminals
    assert terminals["scp1"]["event"] == terminals["scp2"]["event"] == "done", terminals
    assert diff_snapshots(before, snapshot(rdir.local("scp3", "small"))) == []
    assert rdir.temp_files() == {}


def test_deadline_mid_stream_keeps_the_old_tree_and_limit_rate_holds(
        cli: Cli, inventory: Path, rdir: RemoteDir, tmp_path: Path) -> None:
    """--limit-rate 512K keeps a 3 MiB tree in flight past --timeout 2: the host times out,
    its old tree is untouched and the staging directory is gone."""
    source = tmp_path / "tree"
    source.mkdir()
    (source / "big.bin").write_bytes(secrets.token_bytes(3 << 20))
    rdir.mkdir("scp1", "tree")
    rdir.write("scp1", "tree/big.bin", b"old\n")
    before = snapshot(rdir.local("scp1"))
    started = time.monotonic()
    result = cli.run("-i", inventory, "-h", "scp1", "-r", "--json", "--timeout", "2",
                     "--limit-rate", "512K", "-action", "put", "-local", source, "-remote",
                     rdir.path)
    assert result.returncode == 3, result
    assert result.terminals(["scp1"])["scp1"]["kind"] == "timeout", result
    assert time.monotonic() - started < 15
    assert diff_snapshots(before, snapshot(rdir.local("scp1"))) == []
    assert rdir.temp_files() == {}
    # The limit itself: 1 MiB at 512K/s takes about 2 s.
    (source / "big.bin").write_bytes(secrets.token_bytes(1 << 20))
    started = time.monotonic()
    result = cli.run("-i", inventory, "-h", "scp1", "-r", "--limit-rate", "512K",
                     "-action", "put", "-local", source, "-remote", rdir.path)
    assert result.returncode == 0, result
    assert time.monotonic() - started >= 1.8


@pytest.fixture(scope="module")
def no_tar_fleet(scp_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One host whose PATH finds a ``tar`` that is not GNU tar (as on BusyBox systems)."""
    bin_dir = tmp_path_factory.mktemp("fake-tar-bin")
    fake = bin_dir / "tar"
    fake.write_text("#!/bin/sh\necho 'tar (busybox) 1.36.1'\nexit 1\n")
    fake.chmod(0o755)
    for path in (bin_dir, *bin_dir.parents):
        if path != Path("/"):
            path.chmod(path.stat().st_mode | 0o005)
    with Fleet(tmp_path_factory.mktemp("no-tar-fleet"), 1, names=["notar"],
               first_address=NO_TAR_ADDRESS, user=TEST_USER, private_tmp=True,
               extra_sshd_config=f"SetEnv PATH={bin_dir}:/usr/bin:/bin") as fleet:
        yield fleet


def test_a_host_without_gnu_tar_falls_back_to_sftp(
        cli: Cli, no_tar_fleet: Fleet, tree: Path, tmp_path: Path) -> None:
    inventory = no_tar_fleet.write_inventory(tmp_path / "hosts.ini", {})
    remote = f"/srv/hostbatch-fleet/fallback-{secrets.token_hex(3)}"
    assert no_tar_fleet.ssh("notar", f"mkdir {remote}", timeout=30).returncode == 0
    result = cli.run("-i", inventory, "-h", "notar", "-r", "--json", "-action", "put",
                     "-local", tree, "-remote", remote)
    assert result.returncode == 0, result
    done = result.terminals(["notar"])["notar"]
    assert done["method"] == "sftp" and "GNU tar" in done["note"], done
    got = cli.run("-i", inventory, "-h", "notar", "-r", "-action", "get", "-remote",
                  f"{remote}/tree/sub", "-local", "got")
    assert got.returncode == 0, got
    assert diff_snapshots(snapshot(tree / "sub"),
                          snapshot(cli.cwd / "got" / "notar" / "sub")) == []
    refused = cli.run("-i", inventory, "-h", "notar", "-r", "--sync", "-action", "put",
                      "-local", tree, "-remote", remote)
    assert refused.returncode == 1, refused
    assert "--sync of a tree needs GNU tar" in refused.stderr, refused


def test_sftp_fallback_gets_names_that_are_not_utf8(
        cli: Cli, no_tar_fleet: Fleet, tree: Path, tmp_path: Path) -> None:
    """Without GNU tar a tree get lists directories over SFTP: a name (or a link target) that
    is not UTF-8 arrives under its own bytes, and its JSON escape is lossless."""
    os.symlink(os.fsdecode(b"target\xfd"), tree / "badlink")
    inventory = no_tar_fleet.write_inventory(tmp_path / "hosts.ini", {})
    remote = f"/srv/hostbatch-fleet/fallback-{secrets.token_hex(3)}"
    assert no_tar_fleet.ssh("notar", f"mkdir {remote}", timeout=30).returncode == 0
    put = cli.run("-i", inventory, "-h", "notar", "-r", "--json", "-action", "put",
                  "-local", tree, "-remote", remote)
    assert put.returncode == 0, put
    got = cli.run("-i", inventory, "-h", "notar", "-r", "--verify", "--json", "-action", "get",
                  "-remote", f"{remote}/tree", "-local", "got")
    assert got.returncode == 0, got
    done = got.terminals(["notar"])["notar"]
    assert done["method"] == "sftp" and "GNU tar" in done["note"], done
    copy = cli.cwd / "got" / "notar" / "tree"
    assert diff_snapshots(snapshot(tree), snapshot(copy)) == []
    assert (copy / BAD_FILE).read_bytes() == b"not utf-8\n"
    assert os.readlink(os.fsencode(copy / "badlink")) == b"target\xfd"
    sources = [e["source"] for e in got.events() if e["event"] == "file"]
    assert f"{remote}/tree/{BAD_DIR}/inside" in sources
    assert "\\udcff" in got.stdout and "\\udcfe" in got.stdout
    leftovers = [p for p in (cli.cwd / "got").rglob("*") if ".hostbatch-" in p.name]
    assert leftovers == []


def test_a_big_single_file_streams_into_cat_and_a_small_one_goes_over_sftp(
        cli: Cli, inventory: Path, rdir: RemoteDir, tmp_path: Path) -> None:
    """From 1 MiB, a single file's content goes to ``cat`` on the host (``"method":
    "stream"``), smaller ones over SFTP; both land whole, with no temporary file left, and
    --limit-rate holds on the stream."""
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(secrets.token_bytes(3 << 19))  # 1.5 MiB
    small.write_bytes(secrets.token_bytes(100 << 10))
    for source, method in ((big, "stream"), (small, "sftp")):
        result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "put", "-local",
                         source, "-remote", f"{rdir.path}/")
        assert result.returncode == 0, result
        for name, done in result.terminals(NAMES).items():
            assert (done["event"], done["method"]) == ("done", method), done
            assert rdir.local(name, source.name).read_bytes() == source.read_bytes(), name
    assert rdir.temp_files() == {}
    started = time.monotonic()
    limited = cli.run("-i", inventory, "-h", "scp1", "--limit-rate", "512K", "-action", "put",
                      "-local", big, "-remote", f"{rdir.path}/again.bin")
    assert limited.returncode == 0, limited
    assert time.monotonic() - started >= 2.9  # 1.5 MiB at 512 KiB/s
    assert rdir.local("scp1", "again.bin").read_bytes() == big.read_bytes()


@pytest.fixture(scope="module")
def sftp_only_fleet(scp_user: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Fleet]:
    """One host that runs its SFTP server for every command (``ForceCommand
    internal-sftp``, as SFTP-only accounts are set up)."""
    with Fleet(tmp_path_factory.mktemp("sftp-only-fleet"), 1, names=["sftponly"],
               first_address=SFTP_ONLY_ADDRESS, user=TEST_USER, private_tmp=True,
               extra_sshd_config="ForceCommand internal-sftp") as fleet:
        yield fleet


def test_a_big_file_to_an_sftp_only_host_goes_over_sftp(
        cli: Cli, sftp_only_fleet: Fleet, tmp_path: Path) -> None:
    """No shell answers there: after a few seconds the content goes over SFTP instead."""
    inventory = sftp_only_fleet.write_inventory(tmp_path / "hosts.ini", {})
    source = tmp_path / "big.bin"
    source.write_bytes(secrets.token_bytes(2 << 20))
    remote = "/srv/hostbatch-fleet/big.bin"
    result = cli.run("-i", inventory, "-h", "sftponly", "--json", "--verify", "-action",
                     "put", "-local", source, "-remote", remote)
    assert result.returncode == 0, result
    done = result.terminals(["sftponly"])["sftponly"]
    assert (done["event"], done["method"], done["bytes"]) == ("done", "sftp", 2 << 20), done
    got = cli.run("-i", inventory, "-h", "sftponly", "-action", "get", "-remote", remote,
                  "-local", "got")
    assert got.returncode == 0, got
    assert (cli.cwd / "got" / "sftponly" / "big.bin").read_bytes() == source.read_bytes()
