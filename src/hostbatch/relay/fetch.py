"""``batch_scp get`` through a relay, the relay's side: files come back host by host.

The relay runs the ordinary get into a private staging directory (``WORKDIR/get/HOST/``,
with every check of a direct get: atomic landing, ``--verify`` against the host, progress).
When a host's get ends, :class:`GetForwarder` sends what landed for it (directories, links,
and each file as raw chunks read from disk, never whole in memory) before that host's
``file`` events and its terminal event, then removes the host's staged copy. The relay's
disk holds at most the files of the hosts in flight. The controller's side is
:mod:`hostbatch.relay.landing`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from hostbatch.actions import GetFiles
from hostbatch.engine.events import Event, FileTransferred, HostFailed, TerminalEvent
from hostbatch.errors import FailureKind
from hostbatch.relay import protocol
from hostbatch.relay.staging import CHUNK

Send = Callable[[protocol.Message], None]


class _Cancelled(Exception):
    """The run was cancelled while a host's files were being sent."""


class GetForwarder:
    """Turns the relay's get events into what the controller needs: each finished host's
    files, then its held ``file`` events (naming the controller's paths), then its terminal
    event. ``cancelled`` says whether the run was cancelled: then nothing more is sent but
    the terminal events (an interrupted get keeps only what already landed)."""

    def __init__(self, action: GetFiles, workdir: Path, send: Send,
                 cancelled: Callable[[], bool]) -> None:
        self.controller_dir = action.local_dir
        self.root = workdir / "get"
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.action = dataclasses.replace(action, local_dir=str(self.root))
        self.send = send
        self.cancelled = cancelled
        self._held: dict[str, list[FileTransferred]] = {}

    def handle(self, event: Event) -> None:
        """Forward ``event``; a host's terminal event first sends that host's files."""
        if isinstance(event, FileTransferred):
            self._held.setdefault(event.host, []).append(dataclasses.replace(
                event, destination=self._controller_path(event.destination)))
            return
        if not isinstance(event, TerminalEvent):
            self.send(event)
            return
        held = self._held.pop(event.host, [])
        host_dir = self.root / event.host
        duration = getattr(event, "duration", 0.0)
        try:
            if self.cancelled():
                raise _Cancelled
            self._send_host(event.host, host_dir)
        except _Cancelled:
            held = []
            if not isinstance(event, HostFailed):  # a success whose files never all came
                event = HostFailed(event.host, FailureKind.INTERRUPTED, "interrupted before "
                                   "the relay sent all its files; files already in place are "
                                   "complete", duration)
        except OSError as exc:
            held = []
            event = HostFailed(event.host, FailureKind.TRANSFER,
                               f"the relay could not send what it got: {exc.strerror or exc}",
                               duration)
        finally:
            shutil.rmtree(host_dir, ignore_errors=True)
        for landed in held:
            self.send(landed)
        self.send(event)

    def _controller_path(self, staged: str) -> str:
        """Where the controller lands the file the relay staged at ``staged``."""
        relative = os.path.relpath(staged, self.root)
        return os.path.join(self.controller_dir, relative)

    def _send_host(self, host: str, host_dir: Path) -> None:
        for relpath, info in _walk(host_dir):
            full = host_dir / relpath
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                self.send(protocol.GotEntry(host, relpath, "dir", mode, info.st_mtime,
                                            info.st_atime))
            elif stat.S_ISLNK(info.st_mode):
                self.send(protocol.GotEntry(host, relpath, "link", mode, info.st_mtime,
                                            info.st_atime, link_target=os.readlink(full)))
            elif stat.S_ISREG(info.st_mode):
                self._send_file(host, relpath, full, info)

    def _send_file(self, host: str, relpath: str, path: Path, info: os.stat_result) -> None:
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            self.send(protocol.GotEntry(host, relpath, "file", stat.S_IMODE(info.st_mode),
                                        info.st_mtime, info.st_atime, size))
            digest = hashlib.sha256()
            sent, first = 0, True
            while sent < size or first:
                if self.cancelled():
                    raise _Cancelled
                data = source.read(min(CHUNK, size - sent))
                if not data and not first:
                    raise OSError(f"{relpath} shrank while being sent")
                digest.update(data)
                self.send(protocol.FileChunk(relpath, data, first))
                sent += len(data)
                first = False
        self.send(protocol.GotEnd(host, relpath, digest.hexdigest()))


def _walk(top: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``top`` (``/``-separated paths), parents before children; links are
    not followed."""
    if not top.is_dir():
        return
    stack = [""]
    while stack:
        folder = stack.pop()
        for name in sorted(os.listdir(top / folder)):
            relpath = f"{folder}/{name}" if folder else name
            info = os.lstat(top / relpath)
            yield relpath, info
            if stat.S_ISDIR(info.st_mode):
                stack.append(relpath)
