"""The one-process tree put (issue 11): ``stream_put_command`` run by a real ``sh`` with a
real tar stream on stdin. A whole stream replaces; a stream cut anywhere (even at a member
boundary, where tar itself succeeds), or a checksum mismatch, leaves every old file
byte-identical and no staging directory; a mode-only change is made in place."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import pytest

from hostbatch.actions import LocalEntry
from hostbatch.ssh.shell import (
    TreeReplace,
    replace_tree_script,
    sha256_list,
    stream_put_command,
    tree_listing_command,
)
from hostbatch.ssh.sync import Stat, compare, parse_listing
from hostbatch.ssh.tarstream import write_tree

BAD = os.fsdecode(b"bad\xff name")
SCRIPT = ".hostbatch-0123456789ab.sh"


def entry(rel: str, data: bytes = b"", kind: str = "file", mode: int = 0o644) -> LocalEntry:
    return LocalEntry(rel, kind, mode, len(data), 1_000_000_000.0,  # type: ignore[arg-type]
                      sha256=hashlib.sha256(data).hexdigest())


def stream(entries: list[LocalEntry], contents: dict[str, bytes],
           trailer: list[tuple[str, bytes]]) -> bytes:
    sink = io.BytesIO()
    write_tree(sink, entries, lambda e: contents[e.relpath], lambda e, n: None, trailer)
    return sink.getvalue()


def old_tree(tmp_path: Path) -> Path:
    target = tmp_path / "t"
    (target / "sub").mkdir(parents=True)
    (target / "a").write_bytes(b"old a")
    (target / "sub" / BAD).write_bytes(b"old bad")
    (target / "keep").write_bytes(b"keep")
    return target


def put(tmp_path: Path, data: bytes, *, verify: tuple[str, str] | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    stage = tmp_path / ".t.hostbatch-x.stage"
    stage.mkdir(0o700)  # the controller makes it over SFTP
    return subprocess.run([b"sh", b"-c", stream_put_command(str(stage), SCRIPT,
                                                            preserve_times=True)],
                          input=data, capture_output=True, timeout=30, check=False, cwd=tmp_path)


def new_stream(tmp_path: Path, *, verify: bool = False, corrupt: bool = False) -> bytes:
    contents = {"a": b"new a", f"sub/{BAD}": b"new bad"}
    entries = [entry("sub", kind="dir", mode=0o750), entry("a", contents["a"]),
               entry(f"sub/{BAD}", contents[f"sub/{BAD}"])]
    if corrupt:
        contents["a"] = b"NEW A"  # same size, other bytes: what the host gets differs
    own, check, trailer = [SCRIPT], None, []
    if verify:
        own += ["n", "s"]
        check = ("n", "s")
        names, sums = sha256_list([(e.relpath, e.sha256) for e in entries if e.kind == "file"])
        trailer = [("n", names), ("s", sums)]
    script = replace_tree_script(TreeReplace(
        str(tmp_path / ".t.hostbatch-x.stage"), str(tmp_path / "t"),
        [("", 0o755, 1e9), ("sub", 0o750, 1e9)], ["a", f"sub/{BAD}"], own=own, verify=check))
    return stream(entries, contents, [*trailer, (SCRIPT, script)])


def leftovers(tmp_path: Path) -> list[str]:
    return [name for name in os.listdir(tmp_path) if name.startswith(".t.")]


@pytest.mark.parametrize("verify", [False, True])
def test_a_whole_stream_replaces_in_one_command(tmp_path: Path, verify: bool) -> None:
    target = old_tree(tmp_path)
    done = put(tmp_path, new_stream(tmp_path, verify=verify))
    assert done.returncode == 0, done.stderr
    assert (target / "a").read_bytes() == b"new a"
    assert (target / "sub" / BAD).read_bytes() == b"new bad"
    assert (target / "keep").read_bytes() == b"keep"
    assert sorted(os.listdir(target)) == ["a", "keep", "sub"]  # no script, no lists
    assert (target / "sub").stat().st_mode & 0o777 == 0o750
    assert leftovers(tmp_path) == []


def test_a_checksum_mismatch_replaces_nothing(tmp_path: Path) -> None:
    target = old_tree(tmp_path)
    done = put(tmp_path, new_stream(tmp_path, verify=True, corrupt=True))
    assert done.returncode != 0 and b"SHA-256 mismatch" in done.stderr, done
    assert (target / "a").read_bytes() == b"old a"
    assert (target / "sub" / BAD).read_bytes() == b"old bad"
    assert leftovers(tmp_path) == []


def test_a_stream_cut_anywhere_replaces_nothing(tmp_path: Path) -> None:
    whole = new_stream(tmp_path)
    # Every block boundary before the script's content ends (tar succeeds on some of these
    # cuts, at member boundaries), and some cuts inside blocks.
    script_end = len(whole) - 1024
    cuts = [*range(0, script_end, 512), 100, 700, script_end - 1]
    for cut in cuts:
        target = old_tree(tmp_path)
        done = put(tmp_path, whole[:cut])
        assert done.returncode != 0, (cut, done)
        assert (target / "a").read_bytes() == b"old a", cut
        assert (target / "sub" / BAD).read_bytes() == b"old bad", cut
        assert leftovers(tmp_path) == [], cut
        subprocess.run(["rm", "-rf", str(target)], check=True)


def test_a_mode_only_change_is_made_in_place(tmp_path: Path) -> None:
    target = old_tree(tmp_path)
    (target / "a").chmod(0o600)
    before = (target / "a").stat()
    source = {"a": Stat("file", before.st_size, before.st_mtime, 0o755)}
    dest = {"a": Stat("file", before.st_size, before.st_mtime, 0o600)}
    plan = compare(source, dest, delete=False)
    assert (plan.send, plan.unchanged, plan.chmod) == ([], 0, [("a", 0o755)])
    script = replace_tree_script(TreeReplace(
        str(tmp_path / ".t.hostbatch-x.stage"), str(target), [("", 0o755, 1e9)], [],
        chmods=plan.chmod, own=[SCRIPT]))
    done = put(tmp_path, stream([], {}, [(SCRIPT, script)]))
    assert done.returncode == 0, done.stderr
    after = (target / "a").stat()
    assert after.st_mode & 0o7777 == 0o755
    assert (after.st_ino, after.st_mtime, (target / "a").read_bytes()) == (
        before.st_ino, before.st_mtime, b"old a")
    assert leftovers(tmp_path) == []


def test_with_the_listing_known_only_what_changed_costs_a_command(tmp_path: Path) -> None:
    target = tmp_path / "t"
    for rel in ("", "a", "a/b", "c"):
        (target / rel).mkdir(parents=True, exist_ok=True)
    (target / "a" / "b" / "f").write_bytes(b"old")
    (target / "c" / "g").write_bytes(b"g")
    wanted = [("", 0o755, 1_000_000_000.0), ("a", 0o750, 1_000_000_100.0),
              ("a/b", 0o755, 1_000_000_200.0), ("c", 0o700, 1_000_000_300.0),
              ("new", 0o711, 1_000_000_400.0)]
    for rel, mode, mtime in wanted[:4]:
        os.chmod(target / rel, mode)
        os.utime(target / rel, (mtime, mtime))
    listing = subprocess.run([b"sh", b"-c", tree_listing_command(str(target), top=True)],
                             capture_output=True, check=True).stdout
    dest = parse_listing(listing)
    assert dest[""].kind == "dir" and dest[""].mode == 0o755
    stage = tmp_path / ".t.hostbatch-x.stage"
    (stage / "a" / "b").mkdir(parents=True)
    (stage / "a" / "b" / "f").write_bytes(b"new")
    script = replace_tree_script(TreeReplace(str(stage), str(target), wanted, ["a/b/f"],
                                             preserve_times=True, dest=dest))
    commands = [line.split(b" ")[0] for line in script.splitlines()[1:]]
    # mkdir of the new directory, the move, then modes of the new one and times of the
    # two changed ones (same second: one touch each), then the stage goes.
    assert commands == [b"mkdir", b"mv", b"chmod", b"touch", b"touch", b"touch", b"cd"], script
    done = subprocess.run(["sh", "-s"], input=script, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (target / "a" / "b" / "f").read_bytes() == b"new" and not stage.exists()
    for rel, mode, mtime in wanted:
        info = (target / rel).stat()
        assert (info.st_mode & 0o7777, info.st_mtime) == (mode, mtime), rel
