"""``--sync``: which entries of a source tree differ from the destination's copy (pure).

rsync's quick check: a file is unchanged when the destination has a regular file of the same
size and modification time (whole seconds); with ``--checksum``, of the same size and SHA-256
instead. Such a file whose mode alone differs is not sent again: its mode is changed in place
(``SyncPlan.chmod``). A symlink is unchanged when the destination has a symlink to the same
target. Directories are always (re)made and their modes set; only files are counted.
``--delete`` removes what the destination has and the source does not (the topmost such
entry only: removing a directory removes what it holds).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from hostbatch.actions import LocalEntry

Kind = Literal["file", "dir", "link", "other"]
_FIND_KINDS: dict[bytes, Kind] = {b"f": "file", b"d": "dir", b"l": "link"}
#: How a name's bytes become a str: as :func:`os.fsdecode` does, without its per-call checks.
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class Stat(NamedTuple):
    """What the quick check looks at in one entry of a tree (a tuple: a listing of a
    thousand entries makes a thousand of them per host, and a tuple is the cheapest)."""

    kind: Kind
    size: int = 0
    mtime: float = 0.0
    mode: int = 0
    link: str = ""


@dataclass(slots=True)
class SyncPlan:
    """The outcome of a comparison: relpaths to send, how many were unchanged, the
    (relpath, is a directory) pairs to delete, and the (relpath, mode) of files whose content
    matches but whose mode must change."""

    send: list[str] = field(default_factory=list)
    unchanged: int = 0
    delete: list[tuple[str, bool]] = field(default_factory=list)
    chmod: list[tuple[str, int]] = field(default_factory=list)


def parse_listing(output: bytes) -> dict[str, Stat]:
    """The entries printed by :func:`hostbatch.ssh.shell.tree_listing_command`."""
    fields = output.split(b"\0")
    end = (len(fields) - 1) // 3 * 3
    result: dict[str, Stat] = {}
    for head, path, link in zip(fields[0:end:3], fields[1:end:3], fields[2:end:3],
                                strict=True):
        kind, size, mtime, mode = head.split(b" ")
        result[path.decode(_FS_ENCODING, _FS_ERRORS)] = Stat(
            _FIND_KINDS.get(kind, "other"), int(size), float(mtime), int(mode, 8),
            link.decode(_FS_ENCODING, _FS_ERRORS) if link else "")
    return result


def local_listing(root: str) -> dict[str, Stat]:
    """Every entry below the local directory ``root`` (empty when it is missing)."""
    result: dict[str, Stat] = {}
    if not os.path.isdir(root) or os.path.islink(root):
        return result
    for directory, dirs, files in os.walk(root):
        base = os.path.relpath(directory, root)
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            rel = name if base == "." else f"{base}/{name}".replace(os.sep, "/")
            mode = info.st_mode
            kind: Kind = ("dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode)
                          else "file" if stat.S_ISREG(mode) else "other")
            result[rel] = Stat(kind, info.st_size, info.st_mtime, stat.S_IMODE(mode),
                               os.readlink(path) if kind == "link" else "")
    return result


def entry_stats(entries: tuple[LocalEntry, ...]) -> dict[str, Stat]:
    """The scanned source tree (below its top) as :class:`Stat` values."""
    return {e.relpath: Stat(e.kind, e.size, e.mtime, e.mode & 0o7777, e.link_target)
            for e in entries if e.relpath}


def checksum_candidates(source: Mapping[str, Stat], dest: Mapping[str, Stat]) -> list[str]:
    """Files whose checksums must be compared: a regular file on both sides, same size."""
    return [rel for rel, have in source.items() if have.kind == "file"
            and (other := dest.get(rel)) is not None and other.kind == "file"
            and other.size == have.size]


def compare(source: Mapping[str, Stat], dest: Mapping[str, Stat], *, delete: bool,
            source_sums: Mapping[str, str] | None = None,
            dest_sums: Mapping[str, str] | None = None) -> SyncPlan:
    """What to send and delete so that ``dest`` matches ``source``; with sums given,
    files compare by SHA-256 instead of modification time."""
    plan = SyncPlan()
    for rel, have in source.items():
        other = dest.get(rel)
        if have.kind == "dir":
            continue
        if other is None or not _same(rel, have, other, source_sums, dest_sums):
            plan.send.append(rel)
        elif have.kind == "file" and have.mode != other.mode:
            plan.chmod.append((rel, have.mode))
        else:
            plan.unchanged += have.kind == "file"
    if delete:
        doomed = sorted(rel for rel in dest if rel not in source)
        kept: set[str] = set()
        for rel in doomed:
            parent = rel.rpartition("/")[0]
            while parent and parent not in kept:
                parent = parent.rpartition("/")[0]
            if parent:
                continue  # inside a directory already being removed
            kept.add(rel)
            plan.delete.append((rel, dest[rel].kind == "dir"))
    return plan


def _same(rel: str, have: Stat, other: Stat, source_sums: Mapping[str, str] | None,
          dest_sums: Mapping[str, str] | None) -> bool:
    """Whether the content matches (a file's mode is compared by the caller)."""
    if have.kind != other.kind:
        return False
    if have.kind == "link":
        return have.link == other.link
    if have.size != other.size:
        return False
    if source_sums is not None and dest_sums is not None:
        return rel in source_sums and source_sums.get(rel) == dest_sums.get(rel)
    return int(have.mtime) == int(other.mtime)
