"""The tar streams of ``batch_scp -r``, on the controller's side: written for a put, read
for a get, with Python's :mod:`tarfile` for the format (GNU, as GNU tar writes by default).

Names are the host's bytes: a name that is not UTF-8 travels as a str with surrogate escapes
(``os.fsdecode``'s convention) and is written back as the same bytes.

Reading is defensive: a host is not trusted to send only its tree. A member whose name is
absolute, climbs with ``..``, passes through a symlink of the same archive, or is of a type
other than file, directory or symlink fails the host.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from hostbatch.actions import LocalEntry

ENCODING = "utf-8"
ERRORS = "surrogateescape"
BLOCK = tarfile.BLOCKSIZE
#: Bytes per write of a file's content into the stream.
CHUNK = 1024 * 1024


class Sink(Protocol):
    """Where a written stream goes (a remote tar's stdin)."""

    def write(self, data: bytes | bytearray | memoryview) -> None: ...


def member(entry: LocalEntry) -> tarfile.TarInfo:
    """The tar header of one scanned entry (owner left out: the login user owns copies)."""
    info = tarfile.TarInfo(entry.relpath)
    info.mode = entry.mode & 0o7777
    info.mtime = int(entry.mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "link":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link_target
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info


def header(entry: LocalEntry) -> bytes:
    """The header block(s) of ``entry``: long names become GNU ``@LongLink`` records."""
    return member(entry).tobuf(tarfile.GNU_FORMAT, ENCODING, ERRORS)


@dataclass(frozen=True, slots=True)
class Sent:
    """One file that went into the stream: its entry and how long it took."""

    entry: LocalEntry
    duration: float


def trailer_member(name: str, data: bytes) -> bytes:
    """A private regular file (mode 0600) of the stream, header and padded content."""
    info = tarfile.TarInfo(name)
    info.mode, info.size, info.mtime = 0o600, len(data), int(time.time())
    return info.tobuf(tarfile.GNU_FORMAT, ENCODING, ERRORS) + data + bytes(-len(data) % BLOCK)


def write_tree(sink: Sink, entries: Sequence[LocalEntry],
               content: Callable[[LocalEntry], memoryview | bytes],
               progress: Callable[[LocalEntry, int], None],
               trailer: Sequence[tuple[str, bytes]] = ()) -> list[Sent]:
    """Write ``entries`` (directories, links, files) as one tar stream into ``sink``, then
    the ``trailer`` files (name, content): the last member of the stream proves to the host
    that everything before it arrived.

    Small members are gathered into one write; each file's content comes from ``content``
    (shared, read once per run) and ``progress`` hears how much of it went.
    """
    sent: list[Sent] = []
    pending = bytearray()
    for entry in entries:
        started = time.monotonic()
        pending += header(entry)
        if entry.kind != "file":
            continue
        data = content(entry)
        if len(data) <= CHUNK:
            pending += data
        else:
            sink.write(pending)
            pending = bytearray()
            view = memoryview(data)
            for offset in range(0, len(view), CHUNK):
                sink.write(view[offset:offset + CHUNK])
                progress(entry, min(offset + CHUNK, len(view)))
        pending += bytes(-len(data) % BLOCK)
        if len(pending) >= CHUNK:
            sink.write(pending)
            pending = bytearray()
        progress(entry, len(data))
        sent.append(Sent(entry, time.monotonic() - started))
    for name, data in trailer:
        pending += trailer_member(name, data)
    pending += bytes(2 * BLOCK)
    sink.write(pending)
    return sent


class UnsafeMember(ValueError):
    """A member that would land outside the staging directory, or of an unsupported type."""


@dataclass(frozen=True, slots=True)
class Member:
    """One entry of a received stream, its name checked: relative, ``/``-separated."""

    relpath: str
    kind: str  # "file", "dir" or "link"
    mode: int
    mtime: float
    size: int
    link_target: str
    info: tarfile.TarInfo


def _clean(name: str, links: set[str]) -> str:
    relpath = posixpath.normpath(name)
    if relpath in ("", "."):
        return ""
    if relpath.startswith("/") or relpath == ".." or relpath.startswith("../") or \
            "\0" in relpath:
        raise UnsafeMember(f"unsafe name in the stream: {name!r}")
    parts = relpath.split("/")
    for depth in range(1, len(parts)):
        if "/".join(parts[:depth]) in links:
            raise UnsafeMember(f"stream member below a symlink: {name!r}")
    return relpath


def read_members(stream: BinaryIO) -> Iterator[tuple[Member, tarfile.TarFile]]:
    """The members of the tar stream ``stream`` in order, each checked; the file's data is
    read with ``archive.extractfile(member.info)`` before the next member is asked for."""
    archive = tarfile.open(fileobj=stream, mode="r|",  # noqa: SIM115 (the caller's stream)
                           encoding=ENCODING, errors=ERRORS)
    links: set[str] = set()
    for info in archive:
        relpath = _clean(info.name, links)
        if info.isdir():
            kind = "dir"
        elif info.issym():
            kind = "link"
            links.add(relpath)
        elif info.isreg():
            kind = "file"
        else:
            raise UnsafeMember(f"unsupported member type in the stream: {info.name!r}")
        if not relpath and kind != "dir":
            raise UnsafeMember("the stream's top is not a directory")
        yield Member(relpath, kind, info.mode & 0o7777, float(info.mtime), info.size,
                     info.linkname, info), archive


def local_path(root: str, relpath: str) -> str:
    """``relpath`` (``/``-separated) below the local directory ``root``."""
    return os.path.join(root, *relpath.split("/")) if relpath else root
