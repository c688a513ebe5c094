"""Typed events: the only vocabulary between the worker processes and the renderers.

Every event is a frozen dataclass of plain data, so it pickles cheaply across the process
boundary. For each host the engine guarantees: at most one :class:`HostStarted`, any number of
:class:`OutputLines` (commands) or :class:`TransferProgress` and :class:`FileTransferred`
(copies), and exactly one terminal event: :class:`HostExited`, :class:`TransferDone`,
:class:`HostKeyScanned` (key scans) or :class:`HostFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hostbatch.actions import Stream
from hostbatch.errors import FailureKind


@dataclass(frozen=True, slots=True)
class HostStarted:
    """A worker took the host's job and is connecting."""

    host: str
    worker: int


@dataclass(frozen=True, slots=True)
class OutputLines:
    """Complete lines a host wrote to one stream: raw bytes, each line ending in a newline.

    Lines travel as one block per network read, not one object per line: per-line objects
    would cost more CPU than the SSH itself on chatty hosts. Renderers split as they need.
    """

    host: str
    stream: Stream
    data: bytes
    #: The stream ended without a final newline; one was added to this (its last) block so
    #: that renderers of lines see complete lines. Exact copies (``-o``, gathering) drop it.
    unterminated: bool = False

    @property
    def exact_data(self) -> bytes:
        """The bytes exactly as the host sent them."""
        return self.data[:-1] if self.unterminated else self.data

    @classmethod
    def from_lines(cls, host: str, stream: Stream, lines: tuple[bytes, ...]) -> OutputLines:
        """An event holding ``lines`` (given without their newlines)."""
        return cls(host, stream, b"".join(line + b"\n" for line in lines))

    @property
    def lines(self) -> list[bytes]:
        """The lines, without their newlines."""
        return self.data[:-1].split(b"\n") if self.data else []

    def to_json(self) -> list[dict[str, Any]]:
        """One ``--json`` object per line."""
        return [
            {"host": self.host, "event": self.stream, "data": line.decode("utf-8", "replace")}
            for line in self.lines
        ]


@dataclass(frozen=True, slots=True)
class HostExited:
    """The command ran and ended with ``exit_status`` (255: ended by a signal, as ssh reports)."""

    host: str
    exit_status: int
    duration: float
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The terminal ``exit`` event of ``--json``."""
        return {"host": self.host, "event": "exit", "exit_status": self.exit_status,
                "duration": round(self.duration, 3)}


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """Bytes of one file moved so far on one host; sent a few times a second at most."""

    host: str
    path: str
    bytes: int
    total: int

    def to_json(self) -> dict[str, Any]:
        """The ``progress`` event of ``batch_scp --json``."""
        return {"host": self.host, "event": "progress", "path": self.path, "bytes": self.bytes,
                "total": self.total}


@dataclass(frozen=True, slots=True)
class FileTransferred:
    """One file landed: renamed into place and verified."""

    host: str
    direction: Literal["put", "get"]
    source: str
    destination: str
    size: int
    duration: float

    def to_json(self) -> dict[str, Any]:
        """The ``file`` event of ``batch_scp --json``."""
        return {"host": self.host, "event": "file", "action": self.direction,
                "source": self.source, "destination": self.destination, "bytes": self.size,
                "duration": round(self.duration, 3)}


@dataclass(frozen=True, slots=True)
class TransferPlanned:
    """``--dry-run``: a file the sync would send, an entry it would delete, or a file whose
    mode alone it would change (``chmod``), on one host."""

    host: str
    change: Literal["send", "delete", "chmod"]
    path: str

    def to_json(self) -> dict[str, Any]:
        """The ``planned`` event of ``batch_scp --dry-run --json``."""
        return {"host": self.host, "event": "planned", "change": self.change,
                "path": self.path}


@dataclass(frozen=True, slots=True)
class TransferDone:
    """Every file of the host's transfer landed: the terminal event of a successful copy.

    ``files`` and ``bytes``: files landed (sent) and their bytes; ``unchanged`` and
    ``deleted``: what a sync left alone and removed; ``modes``: files whose content a sync
    found unchanged but whose mode it changed in place (not sent again); ``method``:
    ``stream`` (a tar stream) or ``sftp``; ``note``: why a tree went over SFTP. With
    ``dry_run``, the counts are what the sync would do.
    """

    host: str
    files: int
    bytes: int
    duration: float
    method: str = "sftp"
    unchanged: int = 0
    deleted: int = 0
    sync: bool = False
    dry_run: bool = False
    note: str = ""
    modes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The terminal ``done`` event of ``batch_scp --json``."""
        result: dict[str, Any] = {
            "host": self.host, "event": "done", "files": self.files, "sent": self.files,
            "unchanged": self.unchanged, "deleted": self.deleted, "modes": self.modes,
            "bytes": self.bytes,
            "method": self.method, "duration": round(self.duration, 3)}
        if self.dry_run:
            result["dry_run"] = True
        if self.note:
            result["note"] = self.note
        return result


@dataclass(frozen=True, slots=True)
class HostFailed:
    """The host could not run the command to completion, for the reason ``kind``."""

    host: str
    kind: FailureKind
    message: str
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The terminal ``error`` event of ``--json``."""
        return {"host": self.host, "event": "error", "kind": self.kind.value,
                "error": self.message, "duration": round(self.duration, 3)}


@dataclass(frozen=True, slots=True)
class HostKeyScanned:
    """``keyscan`` read the host's key: the terminal event of a successful scan.

    ``entry`` is the known_hosts name it belongs under (``host`` or ``[host]:port``).
    """

    host: str
    entry: str
    key_type: str
    key_b64: str
    fingerprint: str
    duration: float

    def to_json(self) -> dict[str, Any]:
        """The terminal ``hostkey`` event of ``keyscan --json`` (before comparing)."""
        return {"host": self.host, "event": "hostkey", "entry": self.entry,
                "key_type": self.key_type, "key": self.key_b64,
                "fingerprint": self.fingerprint, "duration": round(self.duration, 3)}


@dataclass(frozen=True, slots=True)
class HostKeyLearned:
    """``--accept-new`` met an unknown host key; the parent records ``line`` in ``path``."""

    host: str
    path: str
    line: str
    fingerprint: str


Event = (HostStarted | OutputLines | HostExited | HostFailed | HostKeyLearned | TransferProgress
         | FileTransferred | TransferPlanned | TransferDone | HostKeyScanned)
TerminalEvent = HostExited | HostFailed | TransferDone | HostKeyScanned
