"""A damaged history database never changes a run's result, against real sshd hosts.

Corrupted, truncated, zeroed, of an unknown schema, locked by another process, or on a
read-only mount: the run prints one warning naming the history, goes on, and ends with the
same exit status and the same host output as a run with ``--no-history``. The damaged file is
left as it was (the user may want it back), and ``hostbatch history`` then says how to move it
aside."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    Cli,
    Result,
    address,
    assert_no_traceback,
    host_lines,
    on_address,
    split_lines,
)
from tests.integration.test_history import _read_only, db_path, history
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

#: Damage done to the database file itself, after one healthy run recorded into it.
FILE_DAMAGE = ("garbage", "truncated", "zeroed header", "schema 99")


def _run(cli: Cli, main_inventory: Path, command: str, *extra: str,
         wrapper: tuple[str, ...] = ()) -> Result:
    return cli.run("-i", main_inventory, "-g", "all", *extra, "-cmd", command, wrapper=wrapper,
                   timeout=90)


def _history_warnings(result: Result) -> list[str]:
    return [line for line in split_lines(result.stderr) if "history" in line]


def _same_result(damaged: Result, baseline: Result) -> None:
    """Exit status and every host's output as without history; one warning line about it."""
    assert_no_traceback(damaged)
    assert damaged.returncode == baseline.returncode, damaged
    hosts = ["web01", "web02", "web03", "db01"]
    assert host_lines(damaged.stdout, hosts) == host_lines(baseline.stdout, hosts), damaged
    warnings = _history_warnings(damaged)
    assert len(warnings) == 1, damaged
    assert "not recorded" in warnings[0] and "the run goes on" in warnings[0], warnings
    assert len(warnings[0]) < 600
    others = [line for line in split_lines(damaged.stderr) if "history" not in line]
    assert _timeless(others) == _timeless(split_lines(baseline.stderr)), damaged


def _timeless(lines: list[str]) -> list[str]:
    """Stderr lines in order of text, durations masked and the timing line left out: hosts
    interleave, times differ."""
    return sorted(re.sub(r"\d+(\.\d+)?\s?(ms|s)\b", "T", line) for line in lines
                  if not line.lstrip().startswith("slowest:"))


def _damage(path: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    if how == "garbage":
        data = bytearray((i * 131 + 7) % 256 for i in range(len(data)))
    elif how == "truncated":
        data = data[:len(data) // 2 + 1234]
    elif how == "zeroed header":
        data[:4096] = bytes(4096)
    path.write_bytes(bytes(data))
    if how == "schema 99":
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 99")
        db.close()


@pytest.fixture
def recorded(cli: Cli, main_inventory: Path) -> Iterator[Path]:
    """A history holding one healthy run, checkpointed into the main file."""
    first = _run(cli, main_inventory, "true")
    assert first.returncode == 0 and not _history_warnings(first), first
    path = db_path(cli)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    yield path


@pytest.mark.parametrize("how", FILE_DAMAGE)
def test_a_damaged_file_changes_nothing_but_one_warning(
        cli: Cli, main_fleet: Fleet, main_inventory: Path, recorded: Path, how: str) -> None:
    command = on_address(address(main_fleet, "db01"), "echo db; exit 5", "seq 1 3")
    baseline = _run(cli, main_inventory, command, "--no-history")
    assert baseline.returncode == 1, baseline
    _damage(recorded, how)
    before = recorded.read_bytes()
    damaged = _run(cli, main_inventory, command)
    _same_result(damaged, baseline)
    assert recorded.read_bytes()[:len(before)] == before or how == "schema 99"
    listed = history(cli)
    assert listed.returncode == 2, listed
    (line,) = split_lines(listed.stderr)
    assert f"mv {recorded} {recorded}.broken" in line, line


def test_a_locked_history_changes_nothing_but_one_warning(
        cli: Cli, main_fleet: Fleet, main_inventory: Path, recorded: Path) -> None:
    """Another process holds the database locked for the whole run: the run waits at most the
    busy timeout for it, then warns and goes on."""
    command = on_address(address(main_fleet, "web02"), "exit 3", "echo up")
    baseline = _run(cli, main_inventory, command, "--no-history")
    holder = sqlite3.connect(recorded, isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        damaged = _run(cli, main_inventory, command)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _same_result(damaged, baseline)
    assert damaged.duration < 40, damaged
    with sqlite3.connect(f"file:{recorded}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    db.close()


def test_a_read_only_history_changes_nothing_but_one_warning(
        cli: Cli, main_fleet: Fleet, main_inventory: Path, recorded: Path) -> None:
    """The database and its directory on a read-only mount (root ignores modes)."""
    command = on_address(address(main_fleet, "web01"), "echo one >&2; exit 1", "echo two")
    baseline = _run(cli, main_inventory, command, "--no-history")
    assert baseline.returncode == 1, baseline
    damaged = _run(cli, main_inventory, command, wrapper=tuple(_read_only(recorded.parent)))
    _same_result(damaged, baseline)
    with sqlite3.connect(f"file:{recorded}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    db.close()


# ------------------------------------------------------------------ the runs' output files


def _output_file(recorded: Path, run_id: int) -> Path:
    with sqlite3.connect(f"file:{recorded}?mode=ro", uri=True) as db:
        (name,) = db.execute("SELECT output_file FROM runs WHERE id = ?", (run_id,)).fetchone()
    db.close()
    return recorded.parent / "history-output" / name


@pytest.mark.parametrize("how", ["read-only directory", "a file in its place"])
def test_an_unusable_output_directory_changes_nothing_but_one_warning(
        cli: Cli, main_fleet: Fleet, main_inventory: Path, recorded: Path, how: str) -> None:
    """The run's output is then kept inside the database: recorded whole, shown whole."""
    command = on_address(address(main_fleet, "web03"), "seq 1 5; exit 4", "seq 1 3")
    baseline = _run(cli, main_inventory, command, "--no-history")
    assert baseline.returncode == 1, baseline
    directory = recorded.parent / "history-output"
    wrapper: tuple[str, ...] = ()
    if how == "read-only directory":
        wrapper = tuple(_read_only(directory))
    else:
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
        directory.write_text("not a directory")
    damaged = _run(cli, main_inventory, command, wrapper=wrapper)
    assert_no_traceback(damaged)
    assert damaged.returncode == baseline.returncode, damaged
    hosts = ["web01", "web02", "web03", "db01"]
    assert host_lines(damaged.stdout, hosts) == host_lines(baseline.stdout, hosts), damaged
    (warning,) = _history_warnings(damaged)
    assert "kept inside the history database" in warning and "the run goes on" in warning
    shown = history(cli, "show")
    assert shown.returncode == 0 and not _history_warnings(shown), shown
    assert host_lines(shown.stdout, hosts) == host_lines(baseline.stdout, hosts), shown


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage"])
def test_a_damaged_output_file_changes_no_later_run_and_history_says_so(
        cli: Cli, main_fleet: Fleet, main_inventory: Path, recorded: Path, how: str) -> None:
    first = _run(cli, main_inventory, "seq 1 2000")
    assert first.returncode == 0 and not _history_warnings(first), first
    damaged_file = _output_file(recorded, 2)
    if how == "missing":
        damaged_file.unlink()
    elif how == "truncated":
        damaged_file.write_bytes(damaged_file.read_bytes()[:5000])
    else:
        damaged_file.write_bytes(b"garbage\n" * (damaged_file.stat().st_size // 8 + 1))
    command = on_address(address(main_fleet, "db01"), "echo db; exit 5", "seq 1 3")
    baseline = _run(cli, main_inventory, command, "--no-history")
    later = _run(cli, main_inventory, command)
    assert later.returncode == baseline.returncode == 1, later
    assert not _history_warnings(later), later
    hosts = ["web01", "web02", "web03", "db01"]
    assert host_lines(later.stdout, hosts) == host_lines(baseline.stdout, hosts), later
    listed = history(cli)
    assert listed.returncode == 0 and len(split_lines(listed.stdout)) == 4, listed
    shown = history(cli, "show", "2")
    assert_no_traceback(shown)
    assert shown.returncode == 0, shown
    if how == "garbage":  # undetectable without checksums: shown as it is, never a crash
        assert not _history_warnings(listed), listed
        return
    (warning,) = _history_warnings(listed)
    assert "the output of run 2 is damaged" in warning and str(damaged_file) in warning
    assert "[hostbatch: output lost from the history]" in shown.stdout, shown
    (warning,) = _history_warnings(shown)
    assert "some output of run 2 is lost" in warning, warning
    later_shown = history(cli, "show", "3")
    assert host_lines(later_shown.stdout, hosts) == host_lines(baseline.stdout, hosts)
