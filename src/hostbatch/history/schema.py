"""The history database's tables, and how a database of an older schema is brought up to date.

Schema 1 kept every output row's bytes in ``output.data``. Schema 2 (this version) keeps the
bytes of stdout and stderr rows in one file per run (:mod:`hostbatch.history.blobs`), named in
``runs.output_file``, at ``output.blob_offset`` / ``output.blob_length``; such rows have an
empty ``data``. The upgrade only adds those three columns (no row is rewritten): rows of runs
recorded before it keep their bytes inline and are read as before, so an existing history
keeps every run. A schema-1 hostbatch refuses a schema-2 database as "written by a newer
hostbatch", as any older version refuses a newer schema.
"""

from __future__ import annotations

import sqlite3
import time

#: Bumped whenever the schema changes; a newer database is left alone.
SCHEMA_VERSION = 2

_TABLES = """
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
CREATE INDEX IF NOT EXISTS output_by_host ON output (run_id, host, seq)
"""

#: Schema 1 -> 2: where output bytes kept outside the database are.
_TO_2 = """
ALTER TABLE runs ADD COLUMN output_file TEXT;
ALTER TABLE output ADD COLUMN blob_offset INTEGER;
ALTER TABLE output ADD COLUMN blob_length INTEGER
"""


def use_wal(connection: sqlite3.Connection, timeout: float) -> None:
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


def upgrade(connection: sqlite3.Connection) -> None:
    """Create the tables, or bring a schema-1 database to :data:`SCHEMA_VERSION`, in one
    ``BEGIN IMMEDIATE`` transaction (statement by statement: ``executescript`` would commit
    half-way). The version is read again inside it: another run may have just upgraded."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        statements = ((_TABLES if version == 0 else "") + ";" +
                      (_TO_2 if version < 2 else ""))
        for statement in statements.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
