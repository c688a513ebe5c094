"""Properties of the history database as ``hostbatch history`` and ``-h @failed`` read it:
corrupted, truncated, locked, read-only or of an unknown schema, it gives one short error that
names the file and how to move it aside (exit 2), never a traceback or a hang; and a damaged
database never stops a run from starting (the recorder warns once)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostbatch.actions import RunCommand
from hostbatch.cli.history import history_main
from hostbatch.engine.events import HostExited, OutputLines
from hostbatch.history.blobs import BlobReader, BlobWriter
from hostbatch.history.recorder import HistoryRecorder
from hostbatch.history.store import HistoryStore, NewRun
from hostbatch.inventory.model import HostSpec

from .properties import (
    check_message,
    fast,
    forget_secrets,  # noqa: F401  (autouse fixture)
    run_cli,
    time_limit,
)

COMMANDS = (["list"], ["show"], ["show", "1"], ["diff", "1", "2"], ["prune", "--keep", "1"],
            [], ["list", "--json"])


def _healthy(path: Path) -> bytes:
    """A history with two finished runs; its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = HistoryStore.open(path, create=True)
    for number in (1, 2):
        run_id = store.begin_run(NewRun(started=float(number), user="me", action="run",
                                        command="uptime", selection={"hosts": ["h1"]},
                                        inventory="hosts.ini", hosts=[("h1", "127.0.0.21")],
                                        output_cap=1000))
        store.finish_run(run_id, finished=number + 1.0, elapsed=1.0, exit_status=0,
                         interrupted=False)
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return path.read_bytes()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _healthy(tmp_path_factory.mktemp("pristine") / "history.db")


def _check_damaged(home: Path, argv: list[str]) -> None:
    path = home / ".local" / "state" / "hostbatch" / "history.db"
    outcome = run_cli(history_main, argv, {"HOME": str(home)})
    if outcome.status == 2 and "no run" not in outcome.stderr:
        assert f"mv {path} {path}.broken" in outcome.stderr, outcome.stderr


@given(st.data(), st.sampled_from(COMMANDS))
@fast(80, seconds=5)
def test_a_damaged_history_gives_one_short_error(tmp_path_factory: pytest.TempPathFactory,
                                                  pristine: bytes, data: st.DataObject,
                                                  argv: list[str]) -> None:
    damaged = bytearray(pristine)
    how = data.draw(st.sampled_from(["truncate", "flip", "garbage", "zero-page"]))
    if how == "truncate":
        damaged = damaged[:data.draw(st.integers(1, len(damaged) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 20))):
            spot = data.draw(st.integers(0, len(damaged) - 1))
            damaged[spot] = data.draw(st.integers(0, 255))
    elif how == "garbage":
        damaged = bytearray(data.draw(st.binary(min_size=1, max_size=4096)))
    else:
        page = data.draw(st.integers(0, len(damaged) // 4096 - 1))
        damaged[page * 4096:(page + 1) * 4096] = bytes(4096)
    home = tmp_path_factory.mktemp("home")
    path = home / ".local" / "state" / "hostbatch" / "history.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(damaged))
    _check_damaged(home, argv)


@pytest.mark.parametrize("argv", COMMANDS)
@pytest.mark.parametrize("damage", ["schema 99", "schema -3", "no tables", "bad selection",
                                    "read-only", "wrong types"])
def test_named_damage_gives_one_short_error(tmp_path: Path, argv: list[str],
                                            damage: str) -> None:
    path = tmp_path / ".local" / "state" / "hostbatch" / "history.db"
    _healthy(path)
    db = sqlite3.connect(path)
    statements = {"schema 99": "PRAGMA user_version = 99",
                  "schema -3": "PRAGMA user_version = -3",
                  "no tables": "DROP TABLE output; DROP TABLE hosts; DROP TABLE runs",
                  "bad selection": "UPDATE runs SET selection = '{not json'",
                  "wrong types": "UPDATE runs SET selection = '[1, 2]', started = 'x'",
                  "read-only": ""}
    db.executescript(statements[damage])
    db.close()
    if damage == "read-only":
        path.chmod(0o400)
        path.parent.chmod(0o500)
    try:
        _check_damaged(tmp_path, argv)
    finally:
        path.parent.chmod(0o700)


def test_a_locked_history_is_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / ".local" / "state" / "hostbatch" / "history.db"
    _healthy(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("BEGIN EXCLUSIVE")
    try:
        for argv in (["list"], ["show"], ["prune", "--keep", "1"]):
            _check_damaged(tmp_path, argv)
    finally:
        db.execute("ROLLBACK")
        db.close()


@given(st.binary(max_size=2048))
@example(b"SQLite format 3\x00" + bytes(84))
@fast(40, seconds=15)
def test_a_damaged_history_never_stops_a_run(tmp_path_factory: pytest.TempPathFactory,
                                             data: bytes) -> None:
    path = tmp_path_factory.mktemp("run") / "history.db"
    path.write_bytes(data)
    warnings: list[str] = []
    with time_limit(15):
        recorder = HistoryRecorder.start(path, RunCommand("true"), [HostSpec("h1", "h1")],
                                         {"hosts": ["h1"]}, "hosts.ini", warn=warnings.append,
                                         busy_timeout=1.0)
        if recorder is not None:
            recorder.finish(0, interrupted=False, elapsed=0.1)
    assert len(warnings) <= 1
    for warning in warnings:
        check_message(warning)
        assert "the run goes on" in warning
    os.chmod(path, 0o600)


# ------------------------------------------------------------------ the runs' output files


@given(st.lists(st.tuples(st.lists(st.integers(0, 70_000), max_size=4), st.booleans()),
                max_size=25), st.booleans())
@fast(40, seconds=10)
def test_an_output_file_gives_back_every_row(tmp_path_factory: pytest.TempPathFactory,
                                             rows: list[tuple[list[int], bool]],
                                             direct: bool) -> None:
    """Rows of any sizes, synced at any points (as the recorder's flushes are), read back
    exactly, while the file is written and once it is closed; its size is the bytes written."""
    directory = tmp_path_factory.mktemp("out")
    writer = BlobWriter.create(directory)
    if not direct and writer._direct:  # the buffered path, on the same file
        writer._buffered()
    written: list[tuple[int, int, bytes]] = []
    for n, (sizes, sync) in enumerate(rows):
        pieces = [bytes([(n + size) % 256]) * size for size in sizes]
        offset, length = writer.append(pieces)
        written.append((offset, length, b"".join(pieces)))
        if sync:
            writer.sync()
            reader = BlobReader(directory)
            assert [reader.read(1, writer.name, o, ln) for o, ln, _ in written] == \
                [data for *_, data in written]
            reader.close()
    writer.close()
    reader = BlobReader(directory)
    assert [reader.read(1, writer.name, o, ln) for o, ln, _ in written] == \
        [data for *_, data in written]
    assert not reader.problems
    reader.close()
    total = sum(len(data) for *_, data in written)
    file = directory / writer.name
    assert (file.stat().st_size if total else file.exists()) == total


def _with_output(path: Path) -> Path:
    """A history with one run that printed; the run's output file."""
    recorder = HistoryRecorder.start(path, RunCommand("seq"), [HostSpec("h1", "h1")],
                                     {"hosts": ["h1"]}, None, warn=print)
    assert recorder is not None and recorder.output is not None
    for n in range(50):
        recorder.handle(OutputLines("h1", "stdout" if n % 3 else "stderr", b"%d\n" % n))
    recorder.handle(HostExited("h1", 0, 0.1))
    recorder.finish(0, interrupted=False, elapsed=0.1)
    return recorder.output.path


@given(st.data(), st.sampled_from([*COMMANDS, ["show", "-q"], ["show", "--json"]]))
@fast(40, seconds=5)
def test_a_damaged_output_file_is_a_warning_not_an_error(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject,
        argv: list[str]) -> None:
    home = tmp_path_factory.mktemp("home")
    path = home / ".local" / "state" / "hostbatch" / "history.db"
    output = _with_output(path)
    _with_output(path)
    how = data.draw(st.sampled_from(["truncate", "garbage", "remove", "directory"]))
    if how == "truncate":
        os.truncate(output, data.draw(st.integers(0, output.stat().st_size - 1)))
    elif how == "garbage":
        output.write_bytes(data.draw(st.binary(max_size=400)))
    elif how == "remove":
        output.unlink()
    else:
        output.unlink()
        output.mkdir()
    # 1: history diff found a difference; never 2 (the database is fine) nor a traceback.
    outcome = run_cli(history_main, argv, {"HOME": str(home)}, seconds=5, statuses=(0, 1))
    if how != "garbage" and argv in (["show", "1"], ["diff", "1", "2"]):
        assert "some output of run 1 is lost" in outcome.stderr, outcome.stderr
