"""The run history database: where it lives, and short reads and writes.

One SQLite file (``$XDG_STATE_HOME/hostbatch/history.db``, by default
``~/.local/state/hostbatch/history.db``) in WAL mode, so that several runs at once append to
it without corrupting it and readers never block writers. Every write is one short
``BEGIN IMMEDIATE`` transaction, and waits for another writer are bounded by a busy timeout.
The bytes of each run's stdout and stderr go to a file of the run's own beside it
(:mod:`hostbatch.history.blobs`, schema in :mod:`hostbatch.history.schema`), written once.
Nothing here redacts: :mod:`hostbatch.history.recorder` scrubs secrets before calling in.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostbatch.errors import HostbatchError, clip
from hostbatch.history.blobs import BlobReader, BlobWriter, output_dir, remove
from hostbatch.history.schema import SCHEMA_VERSION, upgrade, use_wal

#: How long a write waits for another run's transaction before it gives up.
BUSY_TIMEOUT = 10.0
#: How long ``hostbatch history`` and ``@failed`` wait for a database another process holds
#: locked, before saying so (a person is waiting for the answer).
READ_BUSY_TIMEOUT = 2.0

#: Host states, in the words of the summary; ``None`` (no result recorded) counts as failed.
OK = "ok"
HOST_STATES = (OK, "failed", "unreachable", "interrupted", "skipped", "unknown")


class HistoryError(HostbatchError):
    """The history cannot answer: no database yet, an unknown run, an unreadable file."""


class NoHistory(HistoryError):
    """Nothing was ever recorded (no database yet, or an empty one)."""


def unusable(path: Path, exc: BaseException | str) -> HistoryError:
    """The one-line error for a history database that cannot be read: what is wrong and how
    to move the file aside (the next run then starts a new one)."""
    problem = exc if isinstance(exc, str) else str(exc) or type(exc).__name__
    if "locked" in problem:
        problem += " (another hostbatch is using it: try again)"
    return HistoryError(f"cannot read the history {path}: {clip(problem)}; to start a new "
                        f"history, move it aside: mv {path} {path}.broken")


def history_path(environ: Mapping[str, str], home: str) -> Path:
    """``$XDG_STATE_HOME/hostbatch/history.db``, else ``HOME/.local/state/hostbatch/...``.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG base directory spec asks.
    """
    state = environ.get("XDG_STATE_HOME", "")
    base = Path(state) if state and os.path.isabs(state) else Path(home) / ".local" / "state"
    return base / "hostbatch" / "history.db"


@dataclass(frozen=True, slots=True)
class NewRun:
    """What is known of a run before it starts; ``hosts`` are (name, address) pairs."""

    started: float
    user: str
    action: str
    command: str
    selection: Mapping[str, Sequence[str]]
    inventory: str | None
    hosts: Sequence[tuple[str, str]]
    output_cap: int
    #: The name of the run's output file (see :mod:`hostbatch.history.blobs`), if it has one.
    output_file: str | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    """One recorded run, with its host counts."""

    id: int
    started: float
    finished: float | None
    elapsed: float | None
    user: str
    action: str
    command: str
    selection: dict[str, list[str]]
    inventory: str | None
    host_count: int
    exit_status: int | None
    interrupted: bool
    ok: int

    @property
    def failed(self) -> int:
        """Hosts that did not succeed, including hosts with no recorded result."""
        return self.host_count - self.ok

    def to_json(self) -> dict[str, Any]:
        """The ``hostbatch history --json`` object of this run."""
        return {"id": self.id, "started": self.started, "finished": self.finished,
                "elapsed": self.elapsed, "user": self.user, "action": self.action,
                "command": self.command, "selection": self.selection,
                "inventory": self.inventory, "hosts": self.host_count, "ok": self.ok,
                "failed": self.failed, "exit_status": self.exit_status,
                "interrupted": self.interrupted}


@dataclass(frozen=True, slots=True)
class HostRow:
    """How one host of a run ended (``state`` is ``None`` if no result was recorded)."""

    host: str
    state: str | None
    exit_status: int | None
    kind: str | None
    message: str
    duration: float | None
    files: int
    bytes: int
    output_bytes: int
    dropped_bytes: int
    address: str

    @property
    def ok(self) -> bool:
        """The host succeeded."""
        return self.state == OK


@dataclass(frozen=True, slots=True)
class HostUpdate:
    """A host's final state, written when its terminal event arrives."""

    host: str
    state: str
    exit_status: int | None
    kind: str | None
    message: str
    duration: float
    files: int
    bytes: int
    output_bytes: int
    dropped_bytes: int


#: One stored output row: (seq, host, stream, data); stream is stdout, stderr, file, planned
#: (a ``--dry-run`` change, JSON) or end (a host's terminal event; for a copy, JSON of its
#: ``done`` fields beyond files and bytes, empty in runs recorded before they were kept).
Chunk = tuple[int, str, str, bytes]
#: A row to store: its bytes may still be in pieces (joined, or copied to the run's output
#: file, only when written).
NewChunk = tuple[int, str, str, bytes | Sequence[bytes]]

_RUN_COLUMNS = ("id, started, finished, elapsed, user, action, command, selection, inventory, "
                "host_count, exit_status, interrupted, "
                "(SELECT count(*) FROM hosts h WHERE h.run_id = runs.id AND h.state = 'ok')")


def _run_row(row: Sequence[Any]) -> RunRow:
    return RunRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]),
                  row[8], row[9], row[10], bool(row[11]), row[12])


def _create_private(path: Path) -> None:
    """Create the directory (0700) and the empty database file (0600) if they are missing.

    SQLite gives its -wal and -shm files the database file's mode, so they stay private too.
    """
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


class HistoryStore:
    """An open history database; use :meth:`open`, and :meth:`close` when done."""

    def __init__(self, connection: sqlite3.Connection, path: Path, version: int) -> None:
        self.connection = connection
        self.path = path
        #: The database's schema: 1 has no output files (every byte is inline).
        self.version = version
        self.blobs = BlobReader(output_dir(path))

    @classmethod
    def open(cls, path: Path, *, create: bool,
             busy_timeout: float = BUSY_TIMEOUT) -> HistoryStore:
        """Open (with ``create``, also create) the database at ``path``.

        Without ``create`` a missing file is a :class:`HistoryError`. A write-side failure
        (read-only directory, locked beyond the timeout) raises ``sqlite3.Error``/``OSError``.
        """
        if create:
            _create_private(path)
        elif not path.is_file():
            raise NoHistory(f"no run history yet ({path} does not exist)")
        # Used by one thread at a time, but not always the one that opened it (the recorder
        # writes from a background thread).
        connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        try:
            connection.execute("PRAGMA foreign_keys = ON")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION or version < 0:
                raise unusable(path, f"written by a newer hostbatch or damaged (schema "
                                     f"{version}, this one reads {SCHEMA_VERSION})")
            if not create and version == 0:
                raise NoHistory(f"no run history yet ({path} holds no runs)")
            if create:
                use_wal(connection, busy_timeout)
                connection.execute("PRAGMA synchronous = NORMAL")
                if version < SCHEMA_VERSION:
                    upgrade(connection)
                    version = SCHEMA_VERSION
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, version)

    def close(self) -> None:
        """Close the connection and the output files read."""
        self.blobs.close()
        self.connection.close()

    @property
    def problems(self) -> list[str]:
        """What was wrong with the output files read so far (one line each): their rows came
        back as a marker line instead of the bytes."""
        return self.blobs.problems

    def new_output_file(self) -> BlobWriter:
        """A new file for a starting run's output, beside the database."""
        return BlobWriter.create(output_dir(self.path))

    # ------------------------------------------------------------------ writing

    def begin_run(self, run: NewRun) -> int:
        """Record a starting run and its hosts (no result yet); return its id."""
        with _transaction(self.connection) as db:
            cursor = db.execute(
                "INSERT INTO runs (started, user, action, command, selection, inventory, "
                "host_count, output_cap, output_file) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.started, run.user, run.action, run.command,
                 json.dumps({k: list(v) for k, v in run.selection.items()}), run.inventory,
                 len(run.hosts), run.output_cap, run.output_file))
            run_id = cursor.lastrowid
            assert run_id is not None
            db.executemany("INSERT INTO hosts (run_id, position, host, address) "
                           "VALUES (?, ?, ?, ?)",
                           [(run_id, n, host, address)
                            for n, (host, address) in enumerate(run.hosts)])
        return run_id

    def append(self, run_id: int, chunks: Iterable[NewChunk],
               updates: Iterable[HostUpdate], output: BlobWriter | None = None) -> None:
        """Add output rows and host results in one short transaction.

        With ``output`` (the run's file), the bytes of stdout and stderr rows go to it, and
        reach it before the rows that point at them are committed.
        """
        rows: list[tuple[int, int, str, str, bytes, int | None, int | None]] = []
        for seq, host, stream, data in chunks:
            pieces = [data] if isinstance(data, bytes) else data
            if output is not None and stream in ("stdout", "stderr"):
                offset, length = output.append(pieces)
                rows.append((run_id, seq, host, stream, b"", offset, length))
            else:
                rows.append((run_id, seq, host, stream, b"".join(pieces), None, None))
        if output is not None:
            output.sync()
        with _transaction(self.connection) as db:
            db.executemany("INSERT INTO output (run_id, seq, host, stream, data, blob_offset, "
                           "blob_length) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.executemany(
                "UPDATE hosts SET state = ?, exit_status = ?, kind = ?, message = ?, "
                "duration = ?, files = ?, bytes = ?, output_bytes = ?, dropped_bytes = ? "
                "WHERE run_id = ? AND host = ?",
                [(u.state, u.exit_status, u.kind, u.message, u.duration, u.files, u.bytes,
                  u.output_bytes, u.dropped_bytes, run_id, u.host) for u in updates])

    def finish_run(self, run_id: int, *, finished: float, elapsed: float,
                   exit_status: int | None,
                   interrupted: bool) -> None:
        """Mark a run as ended."""
        with _transaction(self.connection) as db:
            db.execute("UPDATE runs SET finished = ?, elapsed = ?, exit_status = ?, "
                       "interrupted = ? WHERE id = ?",
                       (finished, elapsed, exit_status, int(interrupted), run_id))

    def prune(self, keep: int) -> int:
        """Delete all but the newest ``keep`` runs and their output files, then compact the
        database; return how many runs were deleted."""
        files_of = "output_file" if self.version >= 2 else "NULL"
        with _transaction(self.connection) as db:
            cutoff = db.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?",
                                (max(keep - 1, 0),)).fetchone()
            if cutoff is None:
                return 0
            operator = "<" if keep > 0 else "<="
            names = [name for (name,) in db.execute(
                f"SELECT {files_of} FROM runs WHERE id {operator} ?", (cutoff[0],))]
            deleted = db.execute(f"DELETE FROM runs WHERE id {operator} ?", (cutoff[0],))
            count = deleted.rowcount
            kept = {name for (name,) in db.execute(f"SELECT {files_of} FROM runs")}
        remove(output_dir(self.path), [name for name in names if name], kept)
        self.connection.execute("VACUUM")
        return count

    # ------------------------------------------------------------------ reading

    def runs(self, limit: int) -> list[RunRow]:
        """The newest ``limit`` runs, newest first."""
        rows = self.connection.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_run_row(row) for row in rows]

    def run(self, run_id: int) -> RunRow:
        """One run; an unknown id is a :class:`HistoryError`."""
        row = self.connection.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",
                                      (run_id,)).fetchone()
        if row is None:
            raise HistoryError(f"no run {run_id} in the history ({self.path})")
        return _run_row(row)

    def last_run(self) -> RunRow:
        """The newest run that has ended (a run still going, or killed, is skipped)."""
        row = self.connection.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE finished IS NOT NULL "
            "ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            raise HistoryError(f"no finished run in the history ({self.path})")
        return _run_row(row)

    def hosts(self, run_id: int) -> list[HostRow]:
        """Every host of a run, in selection order."""
        rows = self.connection.execute(
            "SELECT host, state, exit_status, kind, message, duration, files, bytes, "
            "output_bytes, dropped_bytes, address FROM hosts WHERE run_id = ? ORDER BY position",
            (run_id,)).fetchall()
        return [HostRow(*row) for row in rows]

    def end_details(self, run_id: int) -> dict[str, bytes]:
        """Each host's ``end`` row data (see :data:`Chunk`), by host."""
        rows = self.connection.execute(
            "SELECT host, data FROM output WHERE run_id = ? AND stream = 'end'", (run_id,))
        return {host: bytes(data) for host, data in rows}

    def output_problem(self, run_id: int) -> str | None:
        """What is wrong with a run's output file (missing, unreadable, shorter than its rows
        say), as ``FILE: REASON``; ``None`` if nothing is (or the run has no such file)."""
        if self.version < 2:
            return None
        row = self.connection.execute(
            "SELECT output_file, (SELECT max(blob_offset + blob_length) FROM output "
            "WHERE run_id = runs.id) FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or not row[1]:
            return None
        name, end = row
        path = self.blobs.directory / str(name)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
        return None if size >= end else f"{path}: truncated ({size} of {end} bytes)"

    def output(self, run_id: int, host: str | None = None) -> Iterator[Chunk]:
        """Output rows of a run (or of one host) in arrival order, read lazily; bytes that
        cannot be read from the run's file come back as a marker line (see
        :attr:`problems`)."""
        columns = "seq, host, stream, data, blob_offset, blob_length"
        name = None
        params: tuple[object, ...]
        if self.version < 2:
            columns = "seq, host, stream, data, NULL, NULL"
        else:
            row = self.connection.execute("SELECT output_file FROM runs WHERE id = ?",
                                          (run_id,)).fetchone()
            name = row[0] if row else None
        where, params = "run_id = ?", (run_id,)
        if host is not None:
            where, params = "run_id = ? AND host = ?", (run_id, host)
        cursor = self.connection.execute(
            f"SELECT {columns} FROM output WHERE {where} ORDER BY seq", params)
        for seq, name_of_host, stream, data, offset, length in cursor:
            if length is None:
                yield seq, name_of_host, stream, bytes(data)
            else:
                yield seq, name_of_host, stream, self.blobs.read(run_id, name, offset, length)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): waits for other writers up
    front, within the busy timeout, instead of failing half-way through."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.connection.execute("COMMIT")
        elif self.connection.in_transaction:
            self.connection.execute("ROLLBACK")
