"""Output kept outside the database: the per-run files (direct and buffered writes), the
upgrade of a schema-1 database, damaged or missing files, and pruning (no network)."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from hostbatch import secrets
from hostbatch.actions import RunCommand
from hostbatch.engine.events import HostExited, OutputLines
from hostbatch.history import blobs
from hostbatch.history.blobs import BLOCK, BUFFER, BlobReader, BlobWriter, output_dir
from hostbatch.history.recorder import HistoryRecorder
from hostbatch.history.replay import replay
from hostbatch.history.store import HistoryStore
from hostbatch.inventory.model import HostSpec

from .test_history_cli import call


@pytest.fixture(autouse=True)
def no_known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret registered by other tests may mask what these tests store."""
    monkeypatch.setattr(secrets, "_known_values", set())


@pytest.fixture(params=["direct", "buffered"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each writer test with O_DIRECT (where the platform has it) and without."""
    if request.param == "buffered":
        monkeypatch.setattr(blobs, "_DIRECT", 0)
    return str(request.param)


def pieces(seed: int, sizes: list[int]) -> list[bytes]:
    return [bytes((seed + n + i) % 251 for i in range(size)) for n, size in enumerate(sizes)]


def test_a_file_gives_back_every_row_exactly(tmp_path: Path, mode: str) -> None:
    """Rows of odd sizes, across block and buffer boundaries, synced now and then as the
    recorder does, read back while the file is still being written and after it is closed."""
    writer = BlobWriter.create(tmp_path / "out")
    rows: list[tuple[int, int, bytes]] = []
    sizes = [1, BLOCK - 1, 2, 3 * BLOCK + 5, BUFFER + 7, 100, BUFFER - 3, 0, 17]
    for n, size in enumerate(sizes):
        data = pieces(n, [size // 2, size - size // 2])
        offset, length = writer.append(data)
        rows.append((offset, length, b"".join(data)))
        if n % 2:
            writer.sync()
            reader = BlobReader(tmp_path / "out")
            assert all(reader.read(1, writer.name, o, ln) == d for o, ln, d in rows)
            assert not reader.problems
            reader.close()
    writer.close()
    writer.close()  # closing twice is harmless
    path = tmp_path / "out" / writer.name
    assert path.stat().st_size == sum(size for size in sizes)
    reader = BlobReader(tmp_path / "out")
    assert [reader.read(1, writer.name, o, ln) for o, ln, _ in rows] == [d for *_, d in rows]
    reader.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700


def test_a_run_without_output_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record(path, {})
    assert list(output_dir(path).iterdir()) == []
    assert shown(path, 1) == ([], [])
    store = HistoryStore.open(path, create=False)
    assert store.output_problem(1) is None
    store.close()


def test_a_file_system_refusing_direct_writes_gets_buffered_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = BlobWriter.create(tmp_path)
    writer._direct = True  # as if the O_DIRECT open had been accepted
    real = os.pwrite
    calls: list[int] = []

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    assert writer.append([b"abc\n", b"def\n"]) == (0, 8)
    writer.sync()
    assert writer.append([b"gh\n"]) == (8, 3)
    writer.close()
    assert (tmp_path / writer.name).read_bytes() == b"abc\ndef\ngh\n"
    assert calls[0] == BLOCK and calls[1:] == [8, 3]


def record(path: Path, lines: dict[str, bytes], *, warn: list[str] | None = None) -> None:
    seen: list[str] = [] if warn is None else warn
    recorder = HistoryRecorder.start(path, RunCommand("cat log"),
                                     [HostSpec(name, name) for name in lines],
                                     {"hosts": list(lines)}, None, warn=seen.append)
    assert recorder is not None, seen
    for host, data in lines.items():
        recorder.handle(OutputLines(host, "stdout", data))
        recorder.handle(OutputLines(host, "stderr", b"err " + data))
    for host in lines:
        recorder.handle(HostExited(host, 0, 0.1))
    recorder.finish(0, interrupted=False, elapsed=0.2)
    if warn is None:
        assert not seen, seen


def shown(path: Path, run_id: int) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    store = HistoryStore.open(path, create=False)
    try:
        events = [(e.host, e.stream, e.data) for e in replay(store, store.run(run_id))
                  if isinstance(e, OutputLines)]
        return events, list(store.problems)
    finally:
        store.close()


def test_output_goes_to_the_file_and_the_database_keeps_no_bytes(tmp_path: Path,
                                                                 mode: str) -> None:
    path = tmp_path / "history.db"
    record(path, {"web01": b"one\n" * 1000, "web02": b"two\n"})
    with sqlite3.connect(path) as db:
        inline = db.execute("SELECT sum(length(data)) FROM output WHERE stream IN "
                            "('stdout', 'stderr')").fetchone()
        (name,) = db.execute("SELECT output_file FROM runs").fetchone()
    db.close()
    assert inline == (0,)
    assert (output_dir(path) / name).stat().st_size == 4000 + 4004 + 4 + 8
    events, problems = shown(path, 1)
    assert events == [("web01", "stdout", b"one\n" * 1000),
                      ("web01", "stderr", b"err " + b"one\n" * 1000),
                      ("web02", "stdout", b"two\n"), ("web02", "stderr", b"err two\n")]
    assert not problems


V1_TABLES = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, finished REAL,
    elapsed REAL, user TEXT NOT NULL, action TEXT NOT NULL, command TEXT NOT NULL,
    selection TEXT NOT NULL, inventory TEXT, host_count INTEGER NOT NULL, exit_status INTEGER,
    interrupted INTEGER NOT NULL DEFAULT 0, output_cap INTEGER NOT NULL);
CREATE TABLE hosts (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, host TEXT NOT NULL, address TEXT NOT NULL DEFAULT '',
    state TEXT, exit_status INTEGER, kind TEXT, message TEXT NOT NULL DEFAULT '',
    duration REAL, files INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
    output_bytes INTEGER NOT NULL DEFAULT 0, dropped_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, host));
CREATE TABLE output (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, host TEXT NOT NULL, stream TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq));
CREATE INDEX output_by_host ON output (run_id, host, seq);
INSERT INTO runs VALUES (1, 1.0, 2.0, 1.0, 'u', 'run', 'cat log', '{}', NULL, 1, 0, 0, 1048576);
INSERT INTO hosts VALUES (1, 0, 'web01', 'web01', 'ok', 0, NULL, '', 0.1, 0, 0, 4, 0);
INSERT INTO output VALUES (1, 0, 'web01', 'stdout', X'6f6c640a');
INSERT INTO output VALUES (1, 1, 'web01', 'end', X'');
PRAGMA user_version = 1;
"""


def test_a_schema_1_history_is_read_then_upgraded_in_place(tmp_path: Path) -> None:
    """Today's users' databases: read as they are; the next run adds the columns, and the
    old run's inline output stays readable beside the new run's file."""
    path = tmp_path / "history.db"
    with sqlite3.connect(path) as db:
        db.executescript(V1_TABLES)
    db.close()
    assert shown(path, 1) == ([("web01", "stdout", b"old\n")], [])
    record(path, {"web01": b"new\n"})
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()
    assert shown(path, 1) == ([("web01", "stdout", b"old\n")], [])
    assert shown(path, 2)[0][0] == ("web01", "stdout", b"new\n")
    store = HistoryStore.open(path, create=False)
    assert store.prune(0) == 2
    store.close()
    assert list(output_dir(path).iterdir()) == []


@pytest.mark.parametrize("damage", ["missing", "truncated", "unreadable name"])
def test_a_damaged_file_is_marked_in_the_replay_and_named(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "history.db"
    record(path, {"web01": b"a\n" * 100, "web02": b"b\n"})
    (file,) = output_dir(path).iterdir()
    if damage == "missing":
        file.unlink()
    elif damage == "truncated":
        os.truncate(file, 250)
    else:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE runs SET output_file = '../history.db'")
        db.close()
    events, problems = shown(path, 1)
    lost = b"[hostbatch: output lost from the history]\n"
    assert len(events) == 4 and lost in [data for *_, data in events], events
    if damage == "truncated":  # what is there is still shown
        assert events[0] == ("web01", "stdout", b"a\n" * 100)
    assert len(problems) == 1 and "run 1" in problems[0], problems


def test_history_list_and_show_say_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / ".local" / "state" / "hostbatch" / "history.db"
    record(path, {"web01": b"a\n"})
    record(path, {"web01": b"b\n"})
    with sqlite3.connect(path) as db:
        (name,) = db.execute("SELECT output_file FROM runs WHERE id = 1").fetchone()
    db.close()
    first = output_dir(path) / name
    first.unlink()
    status, out, err = call(tmp_path, "history")
    assert status == 0 and len(out.splitlines()) == 3, (out, err)
    (line,) = err.splitlines()
    assert line.startswith("hostbatch: warning: the output of run 1 is damaged (") and \
        str(first) in line and "No such file" in line, line
    status, out, err = call(tmp_path, "history", "show", "1")
    assert status == 0
    assert out == "web01: [hostbatch: output lost from the history]\n", out
    assert "web01: [hostbatch: output lost from the history]\n" in err, err
    assert "hostbatch: warning: some output of run 1 is lost" in err, err
    status, out, err = call(tmp_path, "history", "show", "2")
    assert status == 0 and "warning" not in err and out == "web01: b\n", (out, err)


def test_an_unusable_output_directory_keeps_the_output_in_the_database(
        tmp_path: Path) -> None:
    """One warning, and the run is recorded whole, its bytes inline as in schema 1."""
    path = tmp_path / "history.db"
    output_dir(path).write_text("not a directory")
    warnings: list[str] = []
    record(path, {"web01": b"kept\n"}, warn=warnings)
    assert len(warnings) == 1 and "kept inside the history database" in warnings[0], warnings
    assert shown(path, 1) == ([("web01", "stdout", b"kept\n"),
                               ("web01", "stderr", b"err kept\n")], [])


def test_a_failing_output_write_stops_recording_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: BlobWriter, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(BlobWriter, "_pwrite", full)
    warnings: list[str] = []
    record(tmp_path / "history.db", {"web01": b"x\n", "web02": b"y\n"}, warn=warnings)
    assert len(warnings) == 1, warnings
    assert "not recorded" in warnings[0] and "No space left" in warnings[0]
    assert "history-output" in warnings[0], warnings


def test_prune_removes_old_orphans_but_not_a_starting_run(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    record(path, {"web01": b"a\n"})
    directory = output_dir(path)
    old, young = directory / "run-old.out", directory / "run-young.out"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    store = HistoryStore.open(path, create=False)
    assert store.prune(1) == 0
    store.close()
    assert not old.exists() and young.exists()
    assert len(list(directory.iterdir())) == 2
