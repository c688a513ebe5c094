"""The history database and its recorder: paths, schema, caps, redaction, failures, and
concurrent writers from two processes (no network)."""

from __future__ import annotations

import io
import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from hostbatch import secrets
from hostbatch.actions import GetFiles, RunCommand, action_kind, describe
from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    HostStarted,
    OutputLines,
    TransferDone,
)
from hostbatch.errors import FailureKind
from hostbatch.history import recorder as recorder_module
from hostbatch.history.recorder import HistoryRecorder, cut_note
from hostbatch.history.replay import host_specs, match_hosts, replay, replayed_result
from hostbatch.history.store import SCHEMA_VERSION, HistoryError, HistoryStore, history_path
from hostbatch.inventory.model import HostSpec
from hostbatch.render.jsonl import JsonRenderer
from hostbatch.render.lines import LineRenderer
from hostbatch.render.output import SafeStream
from hostbatch.secrets import Secret

HOSTS = ["web01", "web02", "db01"]


@pytest.fixture(autouse=True)
def no_known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test with no secret registered: other tests of the session register values
    (even one-letter ones) that would be masked in what these tests store."""
    monkeypatch.setattr(secrets, "_known_values", set())


def specs(names: list[str]) -> list[HostSpec]:
    return [HostSpec(name, f"127.100.0.{n}") for n, name in enumerate(names, 1)]


def start(path: Path, warnings: list[str], *, hosts: list[str] = HOSTS, cap: int = 1 << 20,
          command: str = "uptime", busy_timeout: float = 10.0) -> HistoryRecorder:
    recorder = HistoryRecorder.start(path, RunCommand(command), specs(hosts),
                                     {"hosts": [], "groups": ["all"], "exclude": []}, None,
                                     cap=cap, warn=warnings.append, busy_timeout=busy_timeout)
    assert recorder is not None, warnings
    return recorder


def stored(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql, params).fetchall()


def output_rows(path: Path, run_id: int = 1) -> list[tuple[str, str, bytes]]:
    """(host, stream, bytes) of a run's output rows, read as ``history show`` reads them."""
    store = HistoryStore.open(path, create=False)
    try:
        rows = [(host, stream, data) for _, host, stream, data in store.output(run_id)]
        assert not store.problems, store.problems
        return rows
    finally:
        store.close()


# ------------------------------------------------------------------ where and what


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "/home/u/.local/state/hostbatch/history.db"),
    ({"XDG_STATE_HOME": "/var/state"}, "/var/state/hostbatch/history.db"),
    ({"XDG_STATE_HOME": "relative/state"}, "/home/u/.local/state/hostbatch/history.db"),
    ({"XDG_STATE_HOME": ""}, "/home/u/.local/state/hostbatch/history.db"),
])
def test_history_path(environ: dict[str, str], expected: str) -> None:
    assert str(history_path(environ, "/home/u")) == expected


def test_created_private_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state" / "hostbatch" / "history.db"
    store = HistoryStore.open(path, create=True)
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert stored(path, "PRAGMA journal_mode") == [("wal",)]
    assert stored(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {row[0] for row in stored(path, "SELECT name FROM sqlite_master WHERE type = "
                                             "'table'")}
    assert {"runs", "hosts", "output"} <= tables


def test_creation_waits_for_another_run_creating_the_file(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.touch()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another run, half-way through creating the schema
    other.execute("CREATE TABLE early (x)")
    timer = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    timer.start()
    store = HistoryStore.open(path, create=True, busy_timeout=10)
    timer.join()
    other.close()
    assert store.connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()
    assert {"early", "runs"} <= {row[0] for row in stored(
        path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_missing_or_newer_database_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    with pytest.raises(HistoryError, match="no run history yet"):
        HistoryStore.open(path, create=False)
    path.write_bytes(b"")  # created, but the schema never was
    with pytest.raises(HistoryError, match="no run history yet"):
        HistoryStore.open(path, create=False)
    HistoryStore.open(path, create=True).close()
    stored(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match="newer hostbatch"):
        HistoryStore.open(path, create=False)


# ------------------------------------------------------------------ recording


def test_records_results_in_order(tmp_path: Path, warnings_seen: list[str]) -> None:
    path = tmp_path / "history.db"
    recorder = start(path, warnings_seen)
    events: list[Event] = [
        HostStarted("web01", 0),
        OutputLines("web01", "stdout", b"a\n"),
        OutputLines("web01", "stdout", b"b\n"),  # joins the row before
        OutputLines("web02", "stderr", b"oops\n"),
        OutputLines("web01", "stdout", b"c\n"),
        HostExited("web01", 0, 1.5),
        HostExited("web02", 2, 0.5, "note"),
        HostFailed("db01", FailureKind.CONNECT, "refused", 0.1),
    ]
    for event in events:
        recorder.handle(event)
    recorder.finish(3, interrupted=False, elapsed=2.25)
    assert warnings_seen == []
    store = HistoryStore.open(path, create=False)
    (run,) = store.runs(10)
    assert (run.command, run.host_count, run.ok, run.failed, run.exit_status, run.elapsed) == (
        "uptime", 3, 1, 2, 3, 2.25)
    assert store.last_run() == run
    assert [(h.host, h.state, h.exit_status, h.kind, h.message) for h in store.hosts(run.id)] \
        == [("web01", "ok", 0, None, ""), ("web02", "failed", 2, None, "note"),
            ("db01", "unreachable", None, "connect", "refused")]
    assert [(host, stream, data) for _, host, stream, data in store.output(run.id)] == [
        ("web01", "stdout", b"a\nb\n"), ("web02", "stderr", b"oops\n"),
        ("web01", "stdout", b"c\n"), ("web01", "end", b""), ("web02", "end", b""),
        ("db01", "end", b"")]
    replayed = list(replay(store, run))
    assert replayed == [OutputLines("web01", "stdout", b"a\nb\n"),
                        OutputLines("web02", "stderr", b"oops\n"),
                        OutputLines("web01", "stdout", b"c\n"), *events[5:]]
    result = replayed_result(store, run, HOSTS)
    assert int(result.exit_status) == 3 and [o.host for o in result.ok] == ["web01"]
    assert match_hosts(store, run, ["web0*"]) == ["web01", "web02"]
    assert host_specs(store, run, ["db01", "web01"]) == [HostSpec("web01", "127.100.0.1"),
                                                         HostSpec("db01", "127.100.0.3")]
    with pytest.raises(HistoryError):
        store.run(run.id + 1)
    store.close()


def test_replay_renders_like_the_live_run(tmp_path: Path, warnings_seen: list[str]) -> None:
    events: list[Event] = [OutputLines(h, s, f"{h} {s} {n}\n".encode())
                           for n in range(50) for h in HOSTS for s in ("stdout", "stderr")]
    events += [HostExited("web01", 0, 1.0), HostFailed("web02", FailureKind.TIMEOUT, "t", 2.0),
               HostExited("db01", 9, 3.0)]

    def render(stream: list[Event]) -> tuple[bytes, bytes, bytes]:
        out, err, js = io.BytesIO(), io.BytesIO(), io.BytesIO()
        lines = LineRenderer(SafeStream(out), SafeStream(err), color_stdout=False,
                             color_stderr=False)
        as_json = JsonRenderer(SafeStream(js))
        for event in stream:
            lines.handle(event)
            as_json.handle(event)
        return out.getvalue(), err.getvalue(), js.getvalue()

    path = tmp_path / "history.db"
    recorder = start(path, warnings_seen)
    for event in events:
        recorder.handle(event)
    recorder.finish(3, interrupted=False, elapsed=1.0)
    store = HistoryStore.open(path, create=False)
    assert render(list(replay(store, store.last_run()))) == render(events)
    store.close()


def test_copies_replay_file_and_done_events(tmp_path: Path, warnings_seen: list[str]) -> None:
    path = tmp_path / "history.db"
    recorder = HistoryRecorder.start(path, GetFiles("/etc/hostname", "/tmp/got"), specs(["h1"]),
                                     {}, None, warn=warnings_seen.append)
    assert recorder is not None
    events: list[Event] = [FileTransferred("h1", "get", "/etc/hostname", "/tmp/got/h1/x", 5,
                                           0.25), TransferDone("h1", 1, 5, 0.5)]
    for event in events:
        recorder.handle(event)
    recorder.finish(0, interrupted=False, elapsed=0.5)
    store = HistoryStore.open(path, create=False)
    run = store.last_run()
    assert (run.action, run.command) == ("get", "/etc/hostname -> /tmp/got")
    assert list(replay(store, run)) == events
    store.close()


def test_cap_keeps_whole_lines_and_marks_the_cut(tmp_path: Path,
                                                 warnings_seen: list[str]) -> None:
    path = tmp_path / "history.db"
    recorder = start(path, warnings_seen, cap=10)
    recorder.handle(OutputLines("web01", "stdout", b"1234\n"))
    recorder.handle(OutputLines("web01", "stderr", b"abc\ndefgh\n"))  # 5 + 4 fit, 6 do not
    recorder.handle(OutputLines("web01", "stdout", b"more\n"))
    recorder.handle(OutputLines("web02", "stdout", b"x" * 30 + b"\n"))  # one long line
    recorder.handle(HostExited("web01", 0, 1.0))
    recorder.handle(HostExited("web02", 0, 1.0))
    recorder.finish(0, interrupted=False, elapsed=1.0)
    rows = [row for row in output_rows(path) if row[1] != "end"]
    assert rows == [("web01", "stdout", b"1234\n"),
                    ("web01", "stderr", b"abc\n" + cut_note(10)),
                    ("web02", "stdout", b"x" * 10 + b"\n" + cut_note(10))]
    assert b"10 B of each host" in cut_note(10)
    assert stored(path, "SELECT host, output_bytes, dropped_bytes FROM hosts ORDER BY position"
                  ) == [("web01", 9, 11), ("web02", 11, 21), ("db01", 0, 0)]


def test_secrets_are_scrubbed_before_storing(tmp_path: Path, warnings_seen: list[str]) -> None:
    secret = Secret("Unit-Secret-9876")
    value = secret.reveal()
    path = tmp_path / "history.db"
    recorder = HistoryRecorder.start(
        path, RunCommand(f"echo {value}"), specs(HOSTS),
        {"hosts": [f"web01,{value}"], "groups": [], "exclude": []}, f"/inv/{value}.ini",
        warn=warnings_seen.append)
    assert recorder is not None
    recorder.handle(OutputLines("web01", "stdout", f"{value}\n".encode()))
    recorder.handle(FileTransferred("web01", "put", f"/a/{value}", f"/b/{value}", 1, 0.1))
    recorder.handle(HostFailed("web02", FailureKind.AUTH, f"bad {value}", 0.1))
    recorder.finish(3, interrupted=False, elapsed=1.0)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.parent.name == "history-output" for p in files), files
    raw = b"".join(p.read_bytes() for p in files)
    assert value.encode() not in raw
    assert stored(path, "SELECT command, inventory FROM runs") == [("echo ***", "/inv/***.ini")]
    assert [row for row in output_rows(path) if row[1] == "stdout"] == [
        ("web01", "stdout", b"***\n")]


# ------------------------------------------------------------------ flushing and failures


def test_writes_as_the_run_goes(tmp_path: Path, warnings_seen: list[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "history.db"
    now = [0.0]
    recorder = start(path, warnings_seen)
    recorder.clock = lambda: now[0]
    recorder.handle(OutputLines("web01", "stdout", b"x\n"))
    count = "SELECT count(*) FROM output"
    recorder.wait()
    assert stored(path, count) == [(0,)]  # buffered
    now[0] = 0.6
    recorder.handle(OutputLines("web02", "stdout", b"y\n"))
    recorder.wait()
    assert stored(path, count) == [(2,)]  # half a second passed: written
    monkeypatch.setattr(recorder_module, "FLUSH_BYTES", 100)
    recorder.handle(OutputLines("web02", "stdout", b"z" * 99 + b"\n"))
    recorder.wait()
    assert stored(path, count) == [(3,)]  # enough bytes waiting: written
    assert stored(path, "SELECT finished FROM runs") == [(None,)]
    recorder.finish(0, interrupted=False, elapsed=1.0)
    assert stored(path, "SELECT finished IS NOT NULL FROM runs") == [(1,)]


def test_unwritable_history_warns_once(tmp_path: Path, warnings_seen: list[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert HistoryRecorder.start(blocker / "history.db", RunCommand("true"), specs(HOSTS), {}, None,
                                 warn=warnings_seen.append) is None
    assert len(warnings_seen) == 1 and "not recorded" in warnings_seen[0]


def test_locked_beyond_the_timeout_warns_once_and_stops(tmp_path: Path,
                                                        warnings_seen: list[str]) -> None:
    path = tmp_path / "history.db"
    recorder = start(path, warnings_seen, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    for n in range(3):
        recorder.handle(OutputLines("web01", "stdout", b"x\n"))
        recorder.flush()
        recorder.wait()
        recorder.handle(HostExited(f"web0{n}", 0, 1.0))
    assert len(warnings_seen) == 1 and "locked" in warnings_seen[0], warnings_seen
    recorder.finish(0, interrupted=False, elapsed=1.0)
    other.execute("ROLLBACK")
    other.close()
    assert len(warnings_seen) == 1, warnings_seen
    assert stored(path, "SELECT count(*), max(finished) FROM runs") == [(1, None)]


def test_a_bug_in_a_write_only_stops_recording(tmp_path: Path,
                                               warnings_seen: list[str]) -> None:
    path = tmp_path / "history.db"
    recorder = start(path, warnings_seen)
    recorder.handle(HostExited("web01", 0, 1.0))
    assert recorder.store is not None
    recorder.store.append = None  # type: ignore[assignment,method-assign]
    recorder.flush()
    recorder.finish(0, interrupted=False, elapsed=1.0)
    assert len(warnings_seen) == 1 and "not recorded" in warnings_seen[0], warnings_seen


def _writer(path: str, name: str, events: int) -> None:
    warnings: list[str] = []
    recorder = HistoryRecorder.start(Path(path), RunCommand(name),
                                     specs([f"{name}-{n}" for n in range(10)]), {}, None,
                                     warn=warnings.append)
    assert recorder is not None
    recorder.clock = iter(range(10**9)).__next__  # every event is "late": flush each time
    for n in range(events):
        recorder.handle(OutputLines(f"{name}-{n % 10}", "stdout", f"{n}\n".encode()))
    for n in range(10):
        recorder.handle(HostExited(f"{name}-{n}", 0, 1.0))
    recorder.finish(0, interrupted=False, elapsed=1.0)
    assert not warnings, warnings


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    HistoryStore.open(path, create=True).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), name, 400))
               for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert stored(path, "PRAGMA integrity_check") == [("ok",)]
    assert sorted(stored(path, "SELECT command, exit_status FROM runs")) == [("a", 0),
                                                                            ("b", 0)]
    assert stored(path, "SELECT count(*) FROM hosts WHERE state = 'ok'") == [(20,)]
    for run_id in (1, 2):
        numbers = sorted(int(line) for _, stream, data in output_rows(path, run_id)
                         if stream == "stdout" for line in data.decode().split())
        assert numbers == list(range(400))


@pytest.mark.parametrize(("action", "expected"), [
    (RunCommand("uptime"), ("run", "uptime")),
    (RunCommand("make", env=(("A", "1"), ("B", "x y"))), ("run", "A=1 B='x y' make")),
    (RunCommand("id", sudo=True), ("run", "sudo id")),
    (RunCommand("", script="fix.sh", script_args=("--now", "a b")),
     ("run", "script fix.sh --now 'a b'")),
    (GetFiles("/etc/os-release", "out"), ("get", "/etc/os-release -> out")),
])
def test_action_kind_and_description(action: RunCommand | GetFiles,
                                     expected: tuple[str, str]) -> None:
    assert (action_kind(action), describe(action)) == expected
