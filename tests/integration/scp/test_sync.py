"""``--sync``, ``--checksum``, ``--delete`` and ``--dry-run`` for put and get (issue 11): only
what differs moves, deletions come last, a dry run changes nothing, and every host reports
its counts in its line, the summary and the JSON ``done`` event."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import NAMES, Cli, RemoteDir, diff_snapshots, snapshot
from tests.support.cli import HOSTBATCH

pytestmark = pytest.mark.integration


def small_tree(root: Path, count: int = 20) -> Path:
    (root / "sub").mkdir(parents=True)
    for number in range(count):
        (root / ("sub" if number % 2 else "") / f"f{number}.txt").write_bytes(
            f"file {number}\n".encode() * 50)
    os.symlink("f0.txt", root / "link")
    return root


def counts(result_events: list[dict[str, object]]) -> dict[str, tuple[object, ...]]:
    return {e["host"]: (e["sent"], e["unchanged"], e["deleted"]) for e in result_events
            if e["event"] == "done"}  # type: ignore[index]


def test_put_sync_sends_only_changes_and_deletes_last(
        cli: Cli, inventory: Path, rdir: RemoteDir, tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree")
    first = cli.run("-i", inventory, "-g", "all", "-r", "--sync", "--json", "-action", "put",
                    "-local", tree, "-remote", rdir.path)
    assert first.returncode == 0, first
    assert set(counts(first.events()).values()) == {(20, 0, 0)}, first.stdout
    again = cli.run("-i", inventory, "-g", "all", "-r", "--sync", "-action", "put",
                    "-local", tree, "-remote", rdir.path)
    assert again.returncode == 0, again
    for name in NAMES:
        assert f"{name}: sync: 0 sent (0 B), 20 unchanged, 0 deleted" in again.stdout, again
    assert "sync: 0 sent (0 B), 60 unchanged, 0 deleted on 3 hosts" in again.stderr, again

    (tree / "f0.txt").write_bytes(b"changed\n")
    (tree / "sub" / "f1.txt").unlink()
    rdir.write("scp1", "tree/extra", b"only on scp1\n")
    before = {name: snapshot(rdir.local(name, "tree")) for name in NAMES}
    dry = cli.run("-i", inventory, "-g", "all", "-r", "--sync", "--delete", "--dry-run",
                  "--json", "-action", "put", "-local", tree, "-remote", rdir.path)
    assert dry.returncode == 0, dry
    planned = {(e["host"], e["change"], e["path"]) for e in dry.events()
               if e["event"] == "planned"}
    assert ("scp1", "delete", rdir / "tree/extra") in planned, planned
    assert ("scp2", "send", rdir / "tree/f0.txt") in planned, planned
    assert ("scp2", "delete", rdir / "tree/sub/f1.txt") in planned, planned
    assert counts(dry.events()) == {"scp1": (1, 18, 2), "scp2": (1, 18, 1),
                                    "scp3": (1, 18, 1)}, dry.stdout
    assert {name: snapshot(rdir.local(name, "tree")) for name in NAMES} == before

    real = cli.run("-i", inventory, "-g", "all", "-r", "--sync", "--delete", "--json",
                   "-action", "put", "-local", tree, "-remote", rdir.path)
    assert real.returncode == 0, real
    assert counts(real.events()) == {"scp1": (1, 18, 2), "scp2": (1, 18, 1),
                                     "scp3": (1, 18, 1)}, real.stdout
    expected = snapshot(tree)
    for name in NAMES:
        assert diff_snapshots(expected, snapshot(rdir.local(name, "tree"))) == [], name
    assert rdir.temp_files() == {}

    # A new mtime alone: the quick check sends the file, --checksum does not.
    os.utime(tree / "f2.txt", (2_000_000_000, 2_000_000_000))
    by_sum = cli.run("-i", inventory, "-h", "scp1", "-r", "--sync", "--checksum", "--json",
                     "-action", "put", "-local", tree, "-remote", rdir.path)
    assert counts(by_sum.events()) == {"scp1": (0, 19, 0)}, by_sum
    by_time = cli.run("-i", inventory, "-h", "scp1", "-r", "--sync", "--json", "-action",
                      "put", "-local", tree, "-remote", rdir.path)
    assert counts(by_time.events()) == {"scp1": (1, 18, 0)}, by_time


def test_get_sync_fetches_only_what_differs(cli: Cli, inventory: Path, rdir: RemoteDir,
                                            tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree", 6)
    assert cli.run("-i", inventory, "-g", "all", "-r", "-p", "-action", "put", "-local",
                   tree, "-remote", rdir.path).returncode == 0
    args = ("-i", inventory, "-g", "all", "-r", "--sync", "--json", "-action", "get",
            "-remote", rdir / "tree", "-local", "got")
    first = cli.run(*args)
    assert first.returncode == 0, first
    assert set(counts(first.events()).values()) == {(6, 0, 0)}, first.stdout
    assert set(counts(cli.run(*args).events()).values()) == {(0, 6, 0)}
    os.unlink(rdir.local("scp2", "tree/sub/f1.txt"))
    rdir.write("scp2", "tree/f0.txt", b"new on scp2\n")
    result = cli.run(*args, "--delete")
    assert counts(result.events())["scp2"] == (1, 4, 1), result.stdout
    assert (cli.cwd / "got/scp2/tree/f0.txt").read_bytes() == b"new on scp2\n"
    assert not (cli.cwd / "got/scp2/tree/sub/f1.txt").exists()
    assert (cli.cwd / "got/scp1/tree/sub/f1.txt").exists()


def test_sync_options_need_sync(cli: Cli, inventory: Path, tmp_path: Path) -> None:
    for flag in ("--delete", "--dry-run", "--checksum"):
        result = cli.run("-i", inventory, "-g", "all", flag, "-action", "put", "-local",
                         inventory, "-remote", "/tmp/")
        assert result.returncode == 2, result
        assert f"{flag} works only with --sync" in result.stderr
        assert "Traceback" not in result.stderr


def test_sync_changes_a_mode_alone_without_sending_the_file(
        cli: Cli, inventory: Path, rdir: RemoteDir, tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree", 6)
    args = ("-i", inventory, "-g", "all", "-r", "--sync", "--json", "-action", "put",
            "-local", tree, "-remote", rdir.path)
    assert cli.run(*args).returncode == 0
    inodes = {name: rdir.local(name, "tree/sub/f1.txt").stat().st_ino for name in NAMES}
    (tree / "sub" / "f1.txt").chmod(0o751)

    dry = cli.run(*args, "--dry-run")
    planned = {(e["host"], e["change"], e["path"]) for e in dry.events()
               if e["event"] == "planned"}
    assert planned == {(name, "chmod", rdir / "tree/sub/f1.txt") for name in NAMES}, dry
    assert all(rdir.local(name, "tree/sub/f1.txt").stat().st_mode & 0o777 == 0o644
               for name in NAMES)

    result = cli.run(*args)
    assert result.returncode == 0, result
    done = [e for e in result.events() if e["event"] == "done"]
    assert {(e["sent"], e["unchanged"], e["modes"], e["bytes"], e["method"]) for e in done} \
        == {(0, 5, 1, 0, "stream")}, result.stdout
    assert not [e for e in result.events() if e["event"] == "file"], result.stdout
    for name in NAMES:
        copy = rdir.local(name, "tree/sub/f1.txt").stat()
        assert copy.st_mode & 0o777 == 0o751, name
        assert copy.st_ino == inodes[name], f"{name}: the file was sent again"
    assert rdir.temp_files() == {}
    again = cli.run(*args)
    assert {(e["sent"], e["unchanged"], e["modes"]) for e in again.events()
            if e["event"] == "done"} == {(0, 6, 0)}, again.stdout

    # get: a mode changed on one host changes the local copy's mode alone.
    got = ("-i", inventory, "-g", "all", "-r", "--sync", "--json", "-action", "get",
           "-remote", rdir / "tree", "-local", "got")
    assert cli.run(*got).returncode == 0
    local = cli.cwd / "got/scp2/tree/f0.txt"
    inode = local.stat().st_ino
    rdir.local("scp2", "tree/f0.txt").chmod(0o600)
    fetched = cli.run(*got)
    assert {e["host"]: (e["sent"], e["modes"]) for e in fetched.events()
            if e["event"] == "done"} == {"scp1": (0, 0), "scp2": (0, 1), "scp3": (0, 0)}, \
        fetched.stdout
    assert local.stat().st_mode & 0o777 == 0o600 and local.stat().st_ino == inode


def test_sync_of_one_file_changes_a_mode_alone_without_sending_it(
        cli: Cli, inventory: Path, rdir: RemoteDir, tmp_path: Path) -> None:
    source = tmp_path / "app.conf"
    source.write_bytes(b"listen 80\n" * 100)
    source.chmod(0o644)
    args = ("-i", inventory, "-g", "all", "--sync", "-action", "put", "-local", source,
            "-remote", rdir.path)
    assert cli.run(*args).returncode == 0
    inodes = {name: rdir.local(name, "app.conf").stat().st_ino for name in NAMES}
    source.chmod(0o640)

    dry = cli.run(*args, "--dry-run", "--json")
    assert {(e["host"], e["change"], e["path"]) for e in dry.events()
            if e["event"] == "planned"} == {(n, "chmod", rdir / "app.conf") for n in NAMES}, dry
    assert {(e["sent"], e["unchanged"], e["modes"]) for e in dry.events()
            if e["event"] == "done"} == {(0, 0, 1)}, dry.stdout
    assert all(rdir.local(name, "app.conf").stat().st_mode & 0o777 == 0o644 for name in NAMES)

    result = cli.run(*args)
    assert result.returncode == 0, result
    for name in NAMES:
        assert f"{name}: sync: 0 sent (0 B), 0 unchanged, 1 mode changed, 0 deleted" \
            in result.stdout, result
        copy = rdir.local(name, "app.conf").stat()
        assert copy.st_mode & 0o777 == 0o640, name
        assert copy.st_ino == inodes[name], f"{name}: the file was sent again"
    assert "sync: 0 sent (0 B), 0 unchanged, 3 modes changed, 0 deleted on 3 hosts" \
        in result.stderr, result
    again = cli.run(*args, "--json")
    assert {(e["sent"], e["unchanged"], e["modes"], e["bytes"]) for e in again.events()
            if e["event"] == "done"} == {(0, 1, 0, 0)}, again.stdout
    assert not [e for e in again.events() if e["event"] == "file"], again.stdout

    # get: a mode changed on one host changes the local copy's mode alone.
    got = ("-i", inventory, "-g", "all", "--sync", "-action", "get",
           "-remote", rdir / "app.conf", "-local", "got")
    assert cli.run(*got).returncode == 0
    local = cli.cwd / "got/scp3/app.conf"
    inode = local.stat().st_ino
    rdir.local("scp3", "app.conf").chmod(0o600)
    fetched = cli.run(*got, "--json")
    assert fetched.returncode == 0, fetched
    assert {e["host"]: (e["sent"], e["unchanged"], e["modes"]) for e in fetched.events()
            if e["event"] == "done"} == {"scp1": (0, 1, 0), "scp2": (0, 1, 0),
                                         "scp3": (0, 0, 1)}, fetched.stdout
    assert not [e for e in fetched.events() if e["event"] == "file"], fetched.stdout
    assert local.stat().st_mode & 0o777 == 0o600 and local.stat().st_ino == inode
    rdir.local("scp2", "app.conf").chmod(0o604)
    text = cli.run(*got)
    assert "scp2: sync: 0 sent (0 B), 0 unchanged, 1 mode changed, 0 deleted" \
        in text.stdout, text
    assert "scp3: sync: 0 sent (0 B), 1 unchanged, 0 deleted" in text.stdout, text
    assert (cli.cwd / "got/scp2/app.conf").stat().st_mode & 0o777 == 0o604


def history_show(cli: Cli, *args: str) -> str:
    """``hostbatch history show ARGS``'s stdout (it must succeed)."""
    shown = subprocess.run([HOSTBATCH, "history", "show", *args], env=cli.env(), cwd=cli.cwd,
                           capture_output=True, timeout=60, check=False)
    assert shown.returncode == 0, shown
    return shown.stdout.decode()


def test_history_replays_a_sync_exactly_as_it_ran(cli: Cli, inventory: Path, rdir: RemoteDir,
                                                   tmp_path: Path) -> None:
    tree = small_tree(tmp_path / "tree", 6)
    args = ("-i", inventory, "-g", "all", "-r", "--sync", "-action", "put", "-local", tree,
            "-remote", rdir.path)
    assert cli.run(*args).returncode == 0
    (tree / "f0.txt").write_bytes(b"changed\n")
    (tree / "f2.txt").chmod(0o700)
    rdir.write("scp3", "tree/extra", b"only on scp3\n")
    for extra in (("--delete", "--dry-run", "--json"), ("--delete", "--json"),
                  ("--delete",)):
        live = cli.run(*args, *extra)
        assert live.returncode == 0, live
        replayed = history_show(cli, *[flag for flag in extra if flag == "--json"])
        if "--json" not in extra:
            assert replayed == live.stdout
            continue
        # Everything but progress, which the history does not keep.
        kept = [line for line in live.stdout.splitlines() if '"event": "progress"' not in line]
        assert sorted(replayed.splitlines()) == sorted(kept), extra
        done = {e["host"]: e for e in live.events() if e["event"] == "done"}
        assert (done["scp3"]["method"], done["scp3"]["deleted"], done["scp3"]["modes"]) \
            == ("stream", 1, 1), live.stdout
