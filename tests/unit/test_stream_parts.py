"""The pure parts of tree streams (issue 11): the replace script run by a real ``sh`` on a
real staged tree, the sync comparison, the listing parser, and the defensive tar reader."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hostbatch.actions import LocalEntry
from hostbatch.ssh.shell import (
    TreeReplace,
    remove_tree_command,
    replace_tree_script,
    tree_listing_command,
)
from hostbatch.ssh.sync import Stat, compare, parse_listing
from hostbatch.ssh.tarstream import UnsafeMember, read_members, write_tree

BAD = os.fsdecode(b"bad\xff name")


def run_sh(script: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, timeout=30,
                          check=False)


def test_replace_script_moves_files_keeps_others_deletes_and_sets_modes(tmp_path: Path) -> None:
    target, stage = tmp_path / "t", tmp_path / ".t.hostbatch-x.stage"
    (target / "ro").mkdir(parents=True)
    (target / "keep").write_bytes(b"keep")
    (target / "old").mkdir()
    (target / "old" / "x").write_bytes(b"x")
    (target / "ro").chmod(0o555)
    (stage / "ro").mkdir(parents=True)
    (stage / "ro" / BAD).write_bytes(b"new")
    (stage / "-n").write_bytes(b"dash")
    script = replace_tree_script(TreeReplace(
        str(stage), str(target), [("", 0o750, 1e9), ("ro", 0o555, 1e9)], [f"ro/{BAD}", "-n"],
        [("old", True)], preserve_times=True))
    done = run_sh(script)
    assert done.returncode == 0, done.stderr
    assert (target / "ro" / BAD).read_bytes() == b"new"
    assert (target / "-n").read_bytes() == b"dash"
    assert (target / "keep").read_bytes() == b"keep"
    assert not (target / "old").exists() and not stage.exists()
    assert (target / "ro").stat().st_mode & 0o777 == 0o555
    assert int((target / "ro").stat().st_mtime) == 1_000_000_000
    assert target.stat().st_mode & 0o777 == 0o750


def test_fresh_replace_renames_the_stage(tmp_path: Path) -> None:
    target, stage = tmp_path / "new", tmp_path / ".new.stage"
    stage.mkdir(0o700)
    (stage / "f").write_bytes(b"f")
    done = run_sh(replace_tree_script(TreeReplace(str(stage), str(target), [("", 0o755, 0)],
                                                  ["f"], fresh=True)))
    assert done.returncode == 0, done.stderr
    assert (target / "f").read_bytes() == b"f" and not stage.exists()
    assert target.stat().st_mode & 0o777 == 0o755


def test_remove_tree_handles_read_only_directories(tmp_path: Path) -> None:
    (tmp_path / "s" / "ro").mkdir(parents=True)
    (tmp_path / "s" / "ro" / "f").write_bytes(b"")
    (tmp_path / "s" / "ro").chmod(0o555)
    subprocess.run([b"sh", b"-c", remove_tree_command(str(tmp_path / "s"))], check=True)
    assert not (tmp_path / "s").exists()


def test_listing_parses_find_output_with_awkward_names(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a\nb").write_bytes(b"123")
    (tmp_path / BAD).write_bytes(b"")
    os.symlink("d", tmp_path / "l")
    out = subprocess.run([b"sh", b"-c", tree_listing_command(str(tmp_path))],
                         capture_output=True, check=True).stdout
    listing = parse_listing(out)
    assert listing["d"].kind == "dir" and listing["l"] == Stat("link", 1, listing["l"].mtime,
                                                                0o777, "d")
    assert listing["d/a\nb"].size == 3 and listing[BAD].kind == "file"


def test_compare_quick_check_checksum_and_delete() -> None:
    source = {"a": Stat("file", 1, 10.5, 0o644), "b": Stat("file", 2, 10, 0o644),
              "d": Stat("dir"), "l": Stat("link", link="x")}
    dest = {"a": Stat("file", 1, 10.9, 0o644), "b": Stat("file", 2, 11, 0o644),
            "l": Stat("link", link="x"), "gone": Stat("dir"), "gone/x": Stat("file"),
            "z": Stat("file")}
    plan = compare(source, dest, delete=True)
    assert plan.send == ["b"] and plan.unchanged == 1
    assert plan.delete == [("gone", True), ("z", False)]
    plan = compare(source, dest, delete=False, source_sums={"a": "1", "b": "2"},
                   dest_sums={"a": "1", "b": "2"})
    assert plan.send == [] and plan.unchanged == 2 and plan.delete == []


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data


def test_written_stream_reads_back_with_names_that_are_not_utf8() -> None:
    entries = [LocalEntry("d", "dir", 0o700), LocalEntry(f"d/{BAD}", "file", 0o640, 5, 1e9),
               LocalEntry("x" * 150, "file", 0o600, 0), LocalEntry("l", "link", link_target=BAD)]
    sink = Sink()
    contents = {f"d/{BAD}": b"hello", "x" * 150: b""}
    write_tree(sink, entries, lambda e: contents[e.relpath], lambda e, n: None)
    got = {m.relpath: (m.kind, m.mode, m.link_target)
           for m, _ in read_members(io.BytesIO(bytes(sink.data)))}
    assert got == {"d": ("dir", 0o700, ""), f"d/{BAD}": ("file", 0o640, ""),
                   "x" * 150: ("file", 0o600, ""), "l": ("link", 0o644, BAD)}


@pytest.mark.parametrize("names", [["../evil"], ["/etc/x"], ["l", "l/inside"]])
def test_reader_refuses_members_outside_the_stage(names: list[str]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            if name == "l":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc"
            archive.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    with pytest.raises(UnsafeMember):
        for _ in read_members(buffer):
            pass
