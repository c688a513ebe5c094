"""``-r``: trees with nested and empty directories, symlinks, modes and awkward names, put and
got back, compared exactly (relative paths, types, modes, contents, link targets, mtimes)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.scp.scpkit import (
    AWKWARD_NAMES,
    NAMES,
    Cli,
    Hosts,
    Node,
    RemoteDir,
    diff_snapshots,
    make_tree,
    snapshot,
)

pytestmark = pytest.mark.integration

#: Fixed, whole-second modification times for -p (SFTP v3 carries seconds).
BASE_MTIME = 1_200_000_000


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tree(tmp_path_factory.mktemp("tree") / "tree")
    # Distinct fixed mtimes, children before their directories (writing a file changes its
    # directory's mtime).
    entries = sorted((p for p in root.rglob("*") if not p.is_symlink()),
                     key=lambda p: -len(p.parts))
    for number, path in enumerate([*entries, root]):
        os.utime(path, (BASE_MTIME + number * 1000, BASE_MTIME + number * 1000))
    return root


def without_times(snap: dict[str, Node]) -> dict[str, Node]:
    return {k: Node(v.kind, v.mode, v.content) for k, v in snap.items()}


def test_the_tree_has_what_the_issue_lists(tree: Path) -> None:
    snap = snapshot(tree)
    kinds = {node.kind for node in snap.values()}
    assert kinds == {"d", "f", "l"}
    assert snap["empty"].kind == "d"
    assert [p for p in snap if p.startswith("empty/")] == []
    assert snap["link"] == Node("l", None, "a.txt")
    assert snap["dirlink"].kind == "l"
    assert snap["sub/nested/deeper/file.bin"].kind == "f"
    for name in AWKWARD_NAMES:
        assert snap[name].kind == "f"


def test_put_r_into_existing_dir_lands_as_dir_basename(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, tree: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "-r", "-action", "put", "-local", tree,
                     "-remote", rdir.path)
    assert result.returncode == 0, result
    expected = snapshot(tree)
    for name in NAMES:
        assert os.listdir(rdir.local(name)) == ["tree"], name
        problems = diff_snapshots(expected, snapshot(rdir.local(name, "tree")))
        assert problems == [], (name, problems)
        # Ownership: the login user, as for any upload.
        assert rdir.local(name, "tree/sub/b.txt").stat().st_uid == hosts.uid
    assert rdir.temp_files() == {}
    # One line per regular file and host, naming local and remote paths.
    files = sorted(p for p, node in expected.items() if node.kind == "f")
    lines = result.file_lines()
    assert len(lines) == len(files) * len(NAMES), result
    for match in lines:
        relative = os.path.relpath(match["source"], tree)
        assert relative in files, match.group(0)
        assert match["destination"] == f"{rdir.path}/tree/{relative}", match.group(0)


def test_put_r_to_a_new_path_lands_as_that_name(
        cli: Cli, inventory: Path, rdir: RemoteDir, tree: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "-r", "-action", "put", "-local", tree,
                     "-remote", rdir / "copy")
    assert result.returncode == 0, result
    expected = snapshot(tree)
    for name in NAMES:
        assert os.listdir(rdir.local(name)) == ["copy"], name
        problems = diff_snapshots(expected, snapshot(rdir.local(name, "copy")))
        assert problems == [], (name, problems)


def test_put_r_again_into_the_same_dir_updates_in_place(
        cli: Cli, inventory: Path, rdir: RemoteDir, tree: Path) -> None:
    """The second run finds ``copy`` existing and so puts ``copy/tree`` (as cp -r / scp -r)."""
    for _ in range(2):
        result = cli.run("-i", inventory, "-h", "scp1", "-r", "-action", "put", "-local",
                         tree, "-remote", rdir / "copy")
        assert result.returncode == 0, result
    assert diff_snapshots(snapshot(tree), snapshot(rdir.local("scp1", "copy/tree"))) == []
    assert "tree" in os.listdir(rdir.local("scp1", "copy"))


def test_put_r_with_missing_parent_fails_unless_mkdir(
        cli: Cli, inventory: Path, rdir: RemoteDir, tree: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "--json", "-r", "-action", "put",
                     "-local", tree, "-remote", rdir / "missing/copy")
    assert result.returncode == 1, result
    for name, event in result.terminals(NAMES).items():
        assert event["event"] == "error" and event["kind"] == "transfer", event
        assert rdir / "missing" in event["error"], event
        assert os.listdir(rdir.local(name)) == [], name
    result = cli.run("-i", inventory, "-g", "all", "--mkdir", "-r", "-action", "put",
                     "-local", tree, "-remote", rdir / "missing/deeper/copy")
    assert result.returncode == 0, result
    for name in NAMES:
        problems = diff_snapshots(snapshot(tree),
                                  snapshot(rdir.local(name, "missing/deeper/copy")))
        assert problems == [], (name, problems)


def test_put_r_with_p_keeps_mtimes_of_files_and_dirs(
        cli: Cli, inventory: Path, rdir: RemoteDir, tree: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "-r", "-p", "-action", "put", "-local",
                     tree, "-remote", rdir.path + "/")
    assert result.returncode == 0, result
    expected = snapshot(tree, times=True)
    for name in NAMES:
        problems = diff_snapshots(expected, snapshot(rdir.local(name, "tree"), times=True))
        assert problems == [], (name, problems)


def test_get_r_from_every_host(
        cli: Cli, inventory: Path, hosts: Hosts, rdir: RemoteDir, tree: Path) -> None:
    """The remote trees are copied there by the test (as root, then chowned to hbtest), so
    this does not depend on put; each host gets a file of its own as well."""
    for name in NAMES:
        target = rdir.local(name, "tree")
        shutil.copytree(tree, target, symlinks=True)
        (target / "ro").chmod(0o755)
        (target / "ro" / f"only-on-{name}").write_bytes(name.encode())
        (target / "ro").chmod(0o555)
        hosts.chown_tree(target)
    local = cli.cwd / "collected"
    result = cli.run("-i", inventory, "-g", "all", "-r", "-p", "-action", "get", "-remote",
                     rdir / "tree", "-local", "collected")
    assert result.returncode == 0, result
    assert sorted(os.listdir(local)) == sorted(NAMES)
    for name in NAMES:
        expected = snapshot(rdir.local(name, "tree"), times=True)
        assert f"ro/only-on-{name}" in expected
        got = local / name / "tree"
        assert os.listdir(local / name) == ["tree"]
        problems = diff_snapshots(expected, snapshot(got, times=True))
        assert problems == [], (name, problems)
        # And (apart from the per-host file) it is the original tree.
        original = without_times(snapshot(tree))
        copy = without_times(snapshot(got))
        del copy[f"ro/only-on-{name}"]
        assert diff_snapshots(original, copy) == [], name
    leftovers = [p for p in local.rglob("*") if ".hostbatch-" in p.name]
    assert leftovers == []
    lines = result.file_lines()
    assert {m["action"] for m in lines} == {"get"}
    assert any(m["destination"] == str(local / "scp2" / "tree" / "ro" / "only-on-scp2")
               for m in lines), result.stdout


def test_get_of_a_directory_without_r_fails(
        cli: Cli, inventory: Path, rdir: RemoteDir) -> None:
    for name in NAMES:
        rdir.mkdir(name, "d")
    result = cli.run("-i", inventory, "-g", "all", "--json", "-action", "get", "-remote",
                     rdir / "d", "-local", "out")
    assert result.returncode == 1, result
    for event in result.terminals(NAMES).values():
        assert event["event"] == "error" and event["kind"] == "transfer", event
