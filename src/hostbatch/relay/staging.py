"""``batch_scp put`` through a relay: the source travels to the relay once, then fans out.

The controller sends every file of the put as :class:`~hostbatch.relay.protocol.FileChunk`
messages before the job (:func:`send_source`); the relay writes them under its private
working directory (:class:`Staging`), recreates the tree's directories and links from the
job's scanned entries, and runs the put from there with the ordinary engine, so
``--verify``, atomic landing and progress work as for a local source.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from hostbatch.actions import LocalEntry, PutFiles
from hostbatch.relay import protocol

#: Bytes of source per chunk message.
CHUNK = 1024 * 1024


def local_path(source: str, entry: LocalEntry) -> str:
    """Where ``entry`` of a put of ``source`` lives."""
    return source if not entry.relpath else os.path.join(source, entry.relpath)


def send_source(action: PutFiles, send: Callable[[bytes], None]) -> int:
    """Send every file of ``action``'s source as chunks; returns the bytes read."""
    total = 0
    for entry in action.entries:
        if entry.kind != "file":
            continue
        with open(local_path(action.source, entry), "rb") as source:
            first = True
            while True:
                data = source.read(CHUNK)
                if data or first:
                    send(protocol.dumps(protocol.FileChunk(entry.relpath, data, first)))
                total += len(data)
                first = False
                if len(data) < CHUNK:
                    break
    return total


class Staging:
    """The relay's copy of a put's source, under ``workdir`` (a private directory).

    Chunks land under ``workdir/staged`` as they arrive (before the job says what the source
    is called); :meth:`prepare` moves them to ``workdir/put/BASENAME``, so a put into a
    remote directory names its files as from the controller.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "staged"

    def _target(self, relpath: str) -> Path:
        parts = PurePosixPath(relpath).parts
        if relpath.startswith("/") or ".." in parts:
            raise protocol.ProtocolError(f"refusing to stage {relpath!r}: not below the source")
        return self.root.joinpath(*parts) if parts else self.root

    def write(self, chunk: protocol.FileChunk) -> None:
        """Append ``chunk`` to its file (its first chunk creates the file)."""
        target = self._target(chunk.relpath)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(target, "wb" if chunk.first else "ab") as out:
            out.write(chunk.data)

    def prepare(self, action: PutFiles) -> PutFiles:
        """``action`` reading from the staged copy: directories and links made, modes and
        times as scanned (the put checks them)."""
        name = os.path.basename(action.source.rstrip("/")) or "source"
        final = self.workdir / "put" / name
        final.parent.mkdir(exist_ok=True)
        if self.root.exists():
            self.root.rename(final)
        self.root = final
        for entry in action.entries:
            target = self._target(entry.relpath)
            if entry.kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
            elif entry.kind == "link":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(entry.link_target)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        for entry in reversed(action.entries):  # children first: a parent's time stays put
            if entry.kind != "link":
                target = self._target(entry.relpath)
                os.chmod(target, (entry.mode & 0o7777) | 0o400 | (0o100 if entry.kind == "dir"
                                                                   else 0))
                os.utime(target, (entry.atime, entry.mtime))
        return dataclasses.replace(action, source=str(self.root))
