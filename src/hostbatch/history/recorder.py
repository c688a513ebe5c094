"""Record a run into the history while it runs: a subscriber of the engine's events.

The recorder sits beside the renderers in the parent process and sees the same events in the
same order. It keeps memory bounded by writing in short transactions as the run goes (every
half second or 256 KiB, whichever comes first), and it caps each host's stored output
(default 1 MiB) with a visible note where the cut is. Every text and byte it stores is first
scrubbed with :func:`hostbatch.secrets.redact`, so no password, sudo password or passphrase
known to this process reaches the database or the run's output file
(:mod:`hostbatch.history.blobs`, where stdout and stderr bytes go). The writes themselves run
on a background thread (:mod:`hostbatch.history.writer`). A failing write warns once and turns
the recorder off: history never fails a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hostbatch.actions import Action, action_kind, describe
from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    OutputLines,
    TransferDone,
    TransferPlanned,
)
from hostbatch.errors import FailureKind, HostbatchError
from hostbatch.history import DEFAULT_OUTPUT_CAP
from hostbatch.history.blobs import BlobWriter
from hostbatch.history.store import (
    BUSY_TIMEOUT,
    OK,
    HistoryStore,
    HostUpdate,
    NewChunk,
    NewRun,
)
from hostbatch.history.writer import BackgroundWriter
from hostbatch.inventory.model import HostSpec
from hostbatch.render.lines import format_size
from hostbatch.secrets import redact, redact_bytes

#: Write buffered rows once this much output is waiting ...
FLUSH_BYTES = 256 * 1024
#: ... or once the oldest buffered row is this old.
FLUSH_SECONDS = 0.5

_STATES = {FailureKind.TRANSFER: "failed", FailureKind.INTERRUPTED: "interrupted",
           FailureKind.SKIPPED: "skipped"}
#: How a relay that was lost mid-run words its hosts' failures: their outcome is unknown.
UNKNOWN_PREFIX = "outcome unknown"


def _failed_state(event: HostFailed) -> str:
    """The history state of a failed host: a relay lost mid-run leaves it ``unknown``."""
    if event.kind is FailureKind.RELAY and event.message.startswith(UNKNOWN_PREFIX):
        return "unknown"
    return _STATES.get(event.kind, "unreachable")


def done_detail(event: TransferDone) -> bytes:
    """What a copy's ``done`` event says beyond the host row's files and bytes (how, what a
    sync left, changed and deleted), stored in the host's ``end`` row as JSON so that a
    replay gives back the same event."""
    return json.dumps({"method": event.method, "unchanged": event.unchanged,
                       "deleted": event.deleted, "modes": event.modes, "sync": event.sync,
                       "dry_run": event.dry_run, "note": redact(event.note)}).encode()


def cut_note(cap: int) -> bytes:
    """The line stored where a host's output reached the cap."""
    return (f"[hostbatch: output cut here: the history keeps the first {format_size(cap)} of "
            "each host's output]\n").encode()


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "?"


class HistoryRecorder:
    """Writes one run's events to a :class:`HistoryStore`; see the module docstring."""

    def __init__(self, store: HistoryStore, run_id: int, *, cap: int,
                 warn: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic,
                 output: BlobWriter | None = None) -> None:
        self.store: HistoryStore | None = store
        self.run_id = run_id
        #: The run's output file (``None``: output bytes are kept in the database).
        self.output = output
        self.cap = cap
        self.warn = warn
        self.clock = clock
        self._seq = 0
        #: Rows waiting: (seq, host, stream, pieces), joined only when written (one copy).
        self._chunks: list[tuple[int, str, str, list[bytes]]] = []
        self._updates: list[HostUpdate] = []
        self._pending = 0
        self._since: float | None = None
        self._stored: dict[str, int] = {}
        self._dropped: dict[str, int] = {}
        self._warned = False
        self._writer = BackgroundWriter()

    @classmethod
    def start(cls, path: Path, action: Action, hosts: Sequence[HostSpec],
              selection: Mapping[str, Sequence[str]], inventory: str | None, *,
              cap: int = DEFAULT_OUTPUT_CAP, warn: Callable[[str], None],
              busy_timeout: float = BUSY_TIMEOUT) -> HistoryRecorder | None:
        """Open the history and record the run's start; on failure warn and return ``None``."""
        kind, text = action_kind(action), describe(action)
        run = NewRun(started=time.time(), user=_local_user(), action=kind, command=redact(text),
                     selection={key: [redact(item) for item in items]
                                for key, items in selection.items()},
                     inventory=redact(inventory) if inventory else None,
                     hosts=[(spec.name, redact(spec.hostname)) for spec in hosts],
                     output_cap=cap)
        store = output = None
        try:
            store = HistoryStore.open(path, create=True, busy_timeout=busy_timeout)
            output = _output_file(store, warn)
            run = dataclasses.replace(run, output_file=output.name if output else None)
            return cls(store, store.begin_run(run), cap=cap, warn=warn, output=output)
        except (sqlite3.Error, OSError, HostbatchError) as exc:
            if output is not None:
                _discard(output)
            if store is not None:
                store.close()
            _warn_failure(warn, path, exc)
            return None

    # ------------------------------------------------------------------ events

    def handle(self, event: Event) -> None:
        """Buffer what the event adds to the record; write when enough is waiting."""
        if self.store is None or self._warned:
            return
        if isinstance(event, OutputLines):
            self._output(event.host, event.stream, redact_bytes(event.data))
        elif isinstance(event, HostExited):
            self._end(event.host, "ok" if event.exit_status == 0 else "failed",
                      exit_status=event.exit_status, message=event.note,
                      duration=event.duration)
        elif isinstance(event, TransferDone):
            self._end(event.host, OK, exit_status=0, duration=event.duration,
                      files=event.files, size=event.bytes, detail=done_detail(event))
        elif isinstance(event, HostFailed):
            self._end(event.host, _failed_state(event), kind=event.kind.value,
                      message=event.message, duration=event.duration)
        elif isinstance(event, FileTransferred):
            record = {"direction": event.direction, "source": redact(event.source),
                      "destination": redact(event.destination), "size": event.size,
                      "duration": event.duration}
            self._add(event.host, "file", json.dumps(record).encode())
        elif isinstance(event, TransferPlanned):
            self._add(event.host, "planned", json.dumps(
                {"change": event.change, "path": redact(event.path)}).encode())
        else:
            return
        if self._pending >= FLUSH_BYTES or (
                self._since is not None and self.clock() - self._since >= FLUSH_SECONDS):
            self.flush()

    def _add(self, host: str, stream: str, data: bytes) -> None:
        chunks = self._chunks
        if chunks and stream in ("stdout", "stderr"):
            _, last_host, last_stream, pieces = chunks[-1]
            if last_host == host and last_stream == stream:
                pieces.append(data)  # consecutive blocks of one stream: one row
                self._pending += len(data)
                return
        chunks.append((self._seq, host, stream, [data]))
        self._seq += 1
        self._pending += len(data)
        if self._since is None:
            self._since = self.clock()

    def _output(self, host: str, stream: str, data: bytes) -> None:
        stored = self._stored.get(host, 0)
        if host in self._dropped:
            self._dropped[host] += len(data)
            return
        if stored + len(data) <= self.cap:
            self._stored[host] = stored + len(data)
            self._add(host, stream, data)
            return
        keep = data[:self.cap - stored]
        newline = keep.rfind(b"\n")
        if newline >= 0:
            keep = keep[:newline + 1]  # complete lines only, so replay stays line-exact
        self._dropped[host] = len(data) - len(keep)
        if keep and not keep.endswith(b"\n"):
            keep += b"\n"
        self._stored[host] = stored + len(keep)
        self._add(host, stream, keep + cut_note(self.cap))

    def _end(self, host: str, state: str, *, exit_status: int | None = None,
             kind: str | None = None, message: str = "", duration: float = 0.0,
             files: int = 0, size: int = 0, detail: bytes = b"") -> None:
        self._add(host, "end", detail)
        self._updates.append(HostUpdate(host, state, exit_status, kind, redact(message),
                                        duration, files, size, self._stored.get(host, 0),
                                        self._dropped.get(host, 0)))

    # ------------------------------------------------------------------ writing

    def flush(self) -> None:
        """Hand everything buffered to the writer thread, as one transaction."""
        store = self.store
        if store is None or self._failed() or not (self._chunks or self._updates):
            return
        chunks: list[NewChunk] = self._chunks  # type: ignore[assignment]
        updates, output = self._updates, self.output
        self._chunks, self._updates, self._pending, self._since = [], [], 0, None
        self._writer.submit(lambda: store.append(self.run_id, chunks, updates, output))

    def wait(self) -> None:
        """Return once everything handed to the writer thread is in the database."""
        self._writer.wait()

    def finish(self, exit_status: int | None, *, interrupted: bool, elapsed: float) -> None:
        """Write what is left and mark the run ended; ``exit_status`` ``None``: it broke off."""
        self.flush()
        store = self.store
        if store is None:
            return
        output = self.output
        if output is not None:
            self._writer.submit(output.close)
        self._writer.submit(lambda: store.finish_run(
            self.run_id, finished=time.time(), elapsed=elapsed, exit_status=exit_status,
            interrupted=interrupted))
        self._writer.close()
        if output is not None:
            output.abandon()  # a write failed before the close: just release the file
        self._failed()
        store.close()
        self.store = None

    def _failed(self) -> bool:
        """True once a write failed; the first time, warn and stop recording."""
        error = self._writer.error
        if error is None or self._warned:
            return self._warned
        self._warned = True
        assert self.store is not None
        _warn_failure(self.warn, self.store.path, error)
        self._chunks, self._updates = [], []
        return True


def _output_file(store: HistoryStore, warn: Callable[[str], None]) -> BlobWriter | None:
    """A new output file for the run; if none can be made, warn and keep the run's output in
    the database instead (slower, but the run is recorded whole)."""
    try:
        return store.new_output_file()
    except OSError as exc:
        where = exc.filename or store.path
        warn(f"warning: this run's output is kept inside the history database ({where}: "
             f"{exc.strerror or exc}); the run goes on")
        return None


def _discard(output: BlobWriter) -> None:
    """Close and remove the output file of a run whose start could not be recorded."""
    with contextlib.suppress(OSError):
        output.close()
        output.path.unlink()


def _warn_failure(warn: Callable[[str], None], path: Path, exc: BaseException) -> None:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, OSError) and exc.filename:
        path = Path(exc.filename)
    warn(f"warning: this run is not recorded in the history ({path}: {reason}); "
         "the run goes on (--no-history turns the history off)")
