"""``batch_scp get`` through a relay, the controller's side: the relay's files land in
``LOCAL/HOST/`` exactly as a direct get lands them.

Each file is written to a temporary ``.NAME.hostbatch-*.part`` beside its target and renamed
over it only once all its bytes arrived (and, with ``--verify``, their SHA-256 matched the
relay's), so a name only ever shows a complete file; directories get their modes (and with
``--preserve`` their times) once the host's terminal event arrives, children first. A relay
lost mid-file, a cancelled run or any error discards the temporary file and removes every
leftover below the hosts' directories (:meth:`Landing.abort`). The relay's side is
:mod:`hostbatch.relay.fetch`.

A relay is trusted with its hosts' data, not with the controller's disk: a path that is
absolute, climbs with ``..``, names a host outside the shard or passes through a link is a
protocol error (the relay is then given up, its unfinished hosts end as unknown).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hostbatch.actions import GetFiles
from hostbatch.atomic import AtomicFile, remove_leftovers
from hostbatch.engine.events import HostFailed, TerminalEvent
from hostbatch.errors import FailureKind
from hostbatch.relay import protocol


@dataclass
class _Incoming:
    """The file being received: ``target`` is None once writing it failed (its bytes are
    then read and dropped)."""

    entry: protocol.GotEntry
    target: AtomicFile | None
    digest: hashlib._Hash | None
    received: int = 0


@dataclass
class Landing:
    """Lands the files of one shard's get under ``action.local_dir``."""

    action: GetFiles
    hosts: frozenset[str]
    _file: _Incoming | None = None
    _dirs: dict[str, list[tuple[Path, protocol.GotEntry]]] = field(default_factory=dict)
    _failures: dict[str, str] = field(default_factory=dict)
    _touched: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, action: GetFiles, hosts: Iterable[str]) -> Landing:
        """A landing for ``action`` on ``hosts``."""
        return cls(action, frozenset(hosts))

    def take(self, message: protocol.GotEntry | protocol.FileChunk | protocol.GotEnd) -> None:
        """One message of a host's files, in the order the relay sends them."""
        if isinstance(message, protocol.GotEntry):
            self._entry(message)
        elif isinstance(message, protocol.FileChunk):
            self._chunk(message)
        else:
            self._end(message)

    def finish(self, event: TerminalEvent) -> TerminalEvent:
        """The host's terminal event once its directories are settled: a failure to land
        one of its files turns a success into a ``transfer`` failure."""
        host = event.host
        if self._file is not None and self._file.entry.host == host:
            self._drop_file()
        for path, entry in reversed(self._dirs.pop(host, [])):
            try:
                os.chmod(path, entry.mode)
                if self.action.preserve_times:
                    os.utime(path, (entry.atime, entry.mtime))
            except OSError as exc:
                self._fail(host, f"cannot set the mode of {path}: {exc.strerror}")
        message = self._failures.pop(host, None)
        if message is None or isinstance(event, HostFailed):
            return event
        return HostFailed(host, FailureKind.TRANSFER, message, getattr(event, "duration", 0.0))

    def abort(self) -> None:
        """Discard the file being received and every leftover temporary file of the hosts
        this landing wrote to; complete files stay (as after an interrupted direct get)."""
        self._drop_file()
        for host in self._touched:
            remove_leftovers(Path(self.action.local_dir) / host)

    # --- one message ---------------------------------------------------------------------
    def _target(self, host: str, relpath: str) -> Path:
        parts = PurePosixPath(relpath).parts
        if host not in self.hosts or not parts or relpath.startswith("/") \
                or any(part in ("..", ".") for part in parts):
            raise protocol.ProtocolError(f"refusing to land {relpath!r} of {host!r}")
        host_dir = Path(self.action.local_dir) / host
        target = host_dir.joinpath(*parts)
        parent = target.parent
        while parent != host_dir:
            if parent.is_symlink():
                raise protocol.ProtocolError(f"refusing to land {relpath!r} through a link")
            parent = parent.parent
        return target

    def _entry(self, entry: protocol.GotEntry) -> None:
        if self._file is not None:
            raise protocol.ProtocolError("a new entry inside a file")
        target = self._target(entry.host, entry.relpath)
        if entry.host in self._failures:
            if entry.kind == "file":
                self._file = _Incoming(entry, None, None)
            return
        try:
            self._touched.add(entry.host)
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.kind == "dir":
                target.mkdir(exist_ok=True)
                self._dirs.setdefault(entry.host, []).append((target, entry))
            elif entry.kind == "link":
                temp = target.with_name(f".{target.name}.hostbatch-{secrets.token_hex(4)}.part")
                os.symlink(entry.link_target, temp)
                os.replace(temp, target)
            else:
                self._file = _Incoming(entry, AtomicFile(target, entry.mode, durable=False),
                                       hashlib.sha256() if self.action.verify else None)
        except OSError as exc:
            self._fail(entry.host, f"cannot write {target}: {exc.strerror}")
            if entry.kind == "file":
                self._file = _Incoming(entry, None, None)

    def _chunk(self, chunk: protocol.FileChunk) -> None:
        incoming = self._file
        if incoming is None or chunk.relpath != incoming.entry.relpath:
            raise protocol.ProtocolError(f"a chunk of {chunk.relpath!r} outside its file")
        incoming.received += len(chunk.data)
        if incoming.digest is not None:
            incoming.digest.update(chunk.data)
        if incoming.target is None:
            return
        try:
            incoming.target.file.write(chunk.data)
        except OSError as exc:
            self._fail(incoming.entry.host, f"cannot write {incoming.target.path}: "
                       f"{exc.strerror}")
            incoming.target.discard()
            incoming.target = None

    def _end(self, end: protocol.GotEnd) -> None:
        incoming = self._file
        if incoming is None or (end.host, end.relpath) != (incoming.entry.host,
                                                           incoming.entry.relpath):
            raise protocol.ProtocolError(f"the end of {end.relpath!r} outside its file")
        self._file = None
        target, entry = incoming.target, incoming.entry
        if target is None:
            return
        problem = None
        if incoming.received != entry.size:
            problem = f"got {incoming.received} of {entry.size} bytes"
        elif incoming.digest is not None and incoming.digest.hexdigest() != end.sha256:
            problem = "SHA-256 mismatch between the relay and this machine"
        if problem is not None:
            target.discard()
            self._fail(entry.host, f"get {entry.relpath} through the relay: {problem}")
            return

        def set_times(temp: Path) -> None:
            if self.action.preserve_times:
                os.utime(temp, (entry.atime, entry.mtime))

        try:
            target.commit(set_times)
        except OSError as exc:
            self._fail(entry.host, f"cannot write {target.path}: {exc.strerror}")

    def _fail(self, host: str, message: str) -> None:
        self._failures.setdefault(host, message)

    def _drop_file(self) -> None:
        if self._file is not None and self._file.target is not None:
            self._file.target.discard()
        self._file = None

