"""hostbatch.atomic: a target shows the old content or the new one, and no temporary file is
left behind, whatever happens while writing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hostbatch.atomic import AtomicFile, atomic_write, write_atomically


def _names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_write_atomically_replaces_the_target_with_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.ini"
    target.write_text("old")
    write_atomically(target, "néw", 0o644)
    assert target.read_text(encoding="utf-8") == "néw"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _names(tmp_path) == ["out.ini"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError, ValueError])
def test_a_failure_inside_the_block_leaves_the_target_and_no_temporary(
        tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old")
    with pytest.raises(error), atomic_write(target) as handle:
        handle.write(b"half")
        assert any(name.startswith(".out.hostbatch-") and name.endswith(".part")
                   for name in _names(tmp_path))
        raise error()
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["out"]


def test_before_rename_sees_the_complete_temporary_and_can_fail(tmp_path: Path) -> None:
    target = tmp_path / "file"
    seen: list[bytes] = []

    def stamp(temp: Path) -> None:
        seen.append(temp.read_bytes())
        os.utime(temp, (1_000_000, 1_000_000))

    with atomic_write(target, 0o600, before_rename=stamp) as handle:
        handle.write(b"data")
    assert seen == [b"data"] and target.stat().st_mtime == 1_000_000

    def refuse(temp: Path) -> None:
        raise OSError("no")

    with pytest.raises(OSError), atomic_write(target, before_rename=refuse) as handle:
        handle.write(b"other")
    assert target.read_bytes() == b"data" and _names(tmp_path) == ["file"]


def test_atomic_file_kept_open_then_committed_or_discarded(tmp_path: Path) -> None:
    kept, dropped = AtomicFile(tmp_path / "a"), AtomicFile(tmp_path / "b", durable=False)
    kept.file.write(b"1")
    dropped.file.write(b"2")
    assert not (tmp_path / "a").exists()
    kept.commit()
    dropped.discard()
    dropped.discard()  # twice is harmless
    assert _names(tmp_path) == ["a"] and (tmp_path / "a").read_bytes() == b"1"
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600


def test_a_missing_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing" / "out", b"x")
    assert _names(tmp_path) == []
