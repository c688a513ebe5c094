"""Several sources in one copy, as scp: ``batch_scp SRC... DEST`` puts each into the remote
directory DEST, ``batch_scp :REMOTE... LOCALDIR`` gets each into ``LOCALDIR/HOST/``. One
terminal event per host; the first source that fails ends that host, named in its message."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import NAMES, Cli, Hosts, RemoteDir, sha256_file

pytestmark = pytest.mark.integration


@pytest.fixture
def sources(cli: Cli) -> list[Path]:
    """a.conf, b.bin (random) and tree/ (two files), in the run's working directory."""
    (cli.cwd / "a.conf").write_bytes(b"alpha\n")
    (cli.cwd / "b.bin").write_bytes(secrets.token_bytes(80_000))
    tree = cli.cwd / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "one").write_bytes(b"one\n")
    (tree / "sub" / "two").write_bytes(b"two\n")
    return [cli.cwd / "a.conf", cli.cwd / "b.bin", tree]


def test_put_several_sources_into_a_directory(cli: Cli, inventory: Path, hosts: Hosts,
                                              rdir: RemoteDir, sources: list[Path]) -> None:
    for name in NAMES:
        rdir.mkdir(name, "etc")
    result = cli.run("-i", inventory, "-g", "all", "-r", "--json", "a.conf", "b.bin", "tree",
                     ":" + rdir / "etc")
    assert result.returncode == 0, result
    for name, event in result.terminals(NAMES).items():  # one terminal event per host
        assert event["event"] == "done" and event["files"] == 4, event
        assert sorted(os.listdir(rdir.local(name, "etc"))) == ["a.conf", "b.bin", "tree"]
        assert rdir.local(name, "etc/a.conf").read_bytes() == b"alpha\n"
        assert sha256_file(rdir.local(name, "etc/b.bin")) == sha256_file(sources[1])
        assert rdir.local(name, "etc/tree/sub/two").read_bytes() == b"two\n"
    assert rdir.temp_files() == {}


def test_several_sources_need_a_directory(cli: Cli, inventory: Path, rdir: RemoteDir,
                                          sources: list[Path]) -> None:
    missing = cli.run("-i", inventory, "-h", "scp1", "a.conf", "b.bin", rdir / "new")
    assert missing.returncode == 1, missing
    assert f"remote directory {rdir / 'new'} does not exist (use --mkdir" in missing.stderr
    assert not rdir.local("scp1", "new").exists()
    made = cli.run("-i", inventory, "-h", "scp1", "--mkdir", "a.conf", "b.bin", rdir / "new")
    assert made.returncode == 0, made
    assert sorted(os.listdir(rdir.local("scp1", "new"))) == ["a.conf", "b.bin"]
    rdir.write("scp1", "file", b"x")
    not_dir = cli.run("-i", inventory, "-h", "scp1", "a.conf", "b.bin", rdir / "file")
    assert not_dir.returncode == 1 and "is not a directory" in not_dir.stderr, not_dir


def test_the_first_failing_source_ends_the_host_and_is_named(
        cli: Cli, inventory: Path, rdir: RemoteDir, sources: list[Path]) -> None:
    for name in NAMES:
        rdir.mkdir(name, "etc")
    rdir.mkdir("scp2", "etc/b.bin/inside")  # b.bin cannot replace a non-empty directory there
    result = cli.run("-i", inventory, "-g", "all", "--json", "a.conf", "b.bin",
                     rdir / "etc")
    assert result.returncode == 1, result
    ends = result.terminals(NAMES)
    assert ends["scp2"]["event"] == "error" and ends["scp2"]["kind"] == "transfer", ends
    assert ends["scp2"]["error"].startswith("b.bin: "), ends["scp2"]
    assert rdir.local("scp2", "etc/a.conf").read_bytes() == b"alpha\n"  # before it: copied
    for name in ("scp1", "scp3"):
        assert ends[name]["event"] == "done" and ends[name]["files"] == 2, ends[name]
    assert rdir.temp_files() == {}


def test_get_several_remote_paths(cli: Cli, inventory: Path, rdir: RemoteDir) -> None:
    for name in NAMES:
        rdir.write(name, "one.txt", f"one of {name}\n".encode())
        rdir.write(name, "two.txt", f"two of {name}\n".encode())
    result = cli.run("-i", inventory, "-g", "all", ":" + rdir / "one.txt",
                     ":" + rdir / "two.txt", "got")
    assert result.returncode == 0, result
    for name in NAMES:
        assert sorted(os.listdir(cli.cwd / "got" / name)) == ["one.txt", "two.txt"]
        assert (cli.cwd / "got" / name / "two.txt").read_text() == f"two of {name}\n"
    os.remove(rdir.local("scp3", "two.txt"))
    partial = cli.run("-i", inventory, "-g", "all", "--json", ":" + rdir / "one.txt",
                      ":" + rdir / "two.txt", "again")
    assert partial.returncode == 1, partial
    ends = partial.terminals(NAMES)
    assert ends["scp3"]["event"] == "error" and rdir / "two.txt" in ends["scp3"]["error"]
    assert (cli.cwd / "again" / "scp3" / "one.txt").is_file()
    assert [ends[n]["event"] for n in ("scp1", "scp2")] == ["done", "done"], ends
