"""The run history database: where it lives, its schema, and short reads and writes.

One SQLite file (``$XDG_STATE_HOME/hostbatch/history.db``, by default
``~/.local/state/hostbatch/history.db``) in WAL mode, so that several runs at once append to
it without corrupting it and readers never block writers. Every write is one short
``BEGIN IMMEDIATE`` transaction, and waits for another writer are bounded by a busy timeout.
Nothing here redacts: :mod:`hostbatch.history.recorder` scrubs secrets before calling in.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostbatch.errors import HostbatchError, clip

#: Bumped whenever the schema changes; a newer database is left alone.
SCHEMA_VERSION = 1
#: How long a write waits for another run's transaction before it gives up.
BUSY_TIMEOUT = 10.0
#: How long ``hostbatch history`` and ``@failed`` wait for a database another process holds
#: locked, before saying so (a person is waiting for the answer).
READ_BUSY_TIMEOUT = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started     REAL NOT NULL,
    finished    REAL,
    elapsed     REAL,
    user        TEXT NOT NULL,
    action      TEXT NOT NULL,
    command     TEXT NOT NULL,
    selection   TEXT NOT NULL,
    inventory   TEXT,
    host_count  INTEGER NOT NULL,
    exit_status INTEGER,
    interrupted INTEGER NOT NULL DEFAULT 0,
    output_cap  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    host          TEXT NOT NULL,
    address       TEXT NOT NULL DEFAULT '',
    state         TEXT,
    exit_status   INTEGER,
    kind          TEXT,
    message       TEXT NOT NULL DEFAULT '',
    duration      REAL,
    files         INTEGER NOT NULL DEFAULT 0,
    bytes         INTEGER NOT NULL DEFAULT 0,
    output_bytes  INTEGER NOT NULL DEFAULT 0,
    dropped_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, host)
);
CREATE TABLE IF NOT EXISTS output (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    host   TEXT NOT NULL,
    stream TEXT NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS output_by_host ON output (run_id, host, seq);
"""

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

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path

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
                _use_wal(connection, busy_timeout)
                connection.execute("PRAGMA synchronous = NORMAL")
                if version < SCHEMA_VERSION:
                    _create_schema(connection)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path)

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    # ------------------------------------------------------------------ writing

    def begin_run(self, run: NewRun) -> int:
        """Record a starting run and its hosts (no result yet); return its id."""
        with _transaction(self.connection) as db:
            cursor = db.execute(
                "INSERT INTO runs (started, user, action, command, selection, inventory, "
                "host_count, output_cap) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.started, run.user, run.action, run.command,
                 json.dumps({k: list(v) for k, v in run.selection.items()}), run.inventory,
                 len(run.hosts), run.output_cap))
            run_id = cursor.lastrowid
            assert run_id is not None
            db.executemany("INSERT INTO hosts (run_id, position, host, address) "
                           "VALUES (?, ?, ?, ?)",
                           [(run_id, n, host, address)
                            for n, (host, address) in enumerate(run.hosts)])
        return run_id

    def append(self, run_id: int, chunks: Iterable[Chunk],
               updates: Iterable[HostUpdate]) -> None:
        """Add output rows and host results in one short transaction."""
        with _transaction(self.connection) as db:
            db.executemany("INSERT INTO output (run_id, seq, host, stream, data) "
                           "VALUES (?, ?, ?, ?, ?)",
                           [(run_id, seq, host, stream, data)
                            for seq, host, stream, data in chunks])
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
        """Delete all but the newest ``keep`` runs, then compact the file; return how many
        runs were deleted."""
        with _transaction(self.connection) as db:
            cutoff = db.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?",
                                (max(keep - 1, 0),)).fetchone()
            if cutoff is None:
                return 0
            operator = "<" if keep > 0 else "<="
            deleted = db.execute(f"DELETE FROM runs WHERE id {operator} ?", (cutoff[0],))
            count = deleted.rowcount
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

    def output(self, run_id: int, host: str | None = None) -> Iterator[Chunk]:
        """Output rows of a run (or of one host) in arrival order, read lazily."""
        if host is None:
            cursor = self.connection.execute(
                "SELECT seq, host, stream, data FROM output WHERE run_id = ? ORDER BY seq",
                (run_id,))
        else:
            cursor = self.connection.execute(
                "SELECT seq, host, stream, data FROM output WHERE run_id = ? AND host = ? "
                "ORDER BY seq", (run_id, host))
        for seq, name, stream, data in cursor:
            yield seq, name, stream, bytes(data)


def _use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Switch the database to WAL mode (a no-op once any run did).

    The switch needs the database to itself and SQLite does not wait for that (no busy
    handler), so when another run is creating the file at the same moment, retry until
    ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if connection.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
            problem = "the history database cannot use WAL mode"
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in (sqlite3.SQLITE_BUSY,
                                                             sqlite3.SQLITE_LOCKED):
                raise
            problem = str(exc)
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(problem)
        time.sleep(0.02)


def _create_schema(connection: sqlite3.Connection) -> None:
    """Create the tables in one transaction (statement by statement: ``executescript``
    would commit half-way)."""
    with _transaction(connection) as db:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


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
