"""``hostbatch history`` and the ``@failed``/``@ok`` shortcuts, in-process on a history written
by the recorder (no network)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from hostbatch import secrets
from hostbatch.actions import RunCommand
from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main, run_main
from hostbatch.cli.options import _size
from hostbatch.engine.events import Event, HostExited, HostFailed, OutputLines
from hostbatch.errors import FailureKind
from hostbatch.history.recorder import HistoryRecorder
from hostbatch.history.selectors import uses_history
from hostbatch.history.store import history_path
from hostbatch.inventory.model import HostSpec
from hostbatch.selection import Selection

from .conftest import WriteInventory

INVENTORY = """
[host:web01]
[host:web02]
[host:web03]
[host:db01]
"""


@pytest.fixture(autouse=True)
def no_known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test with no secret registered: other tests of the session register values
    (even one-letter ones) that would be masked in what these tests store."""
    monkeypatch.setattr(secrets, "_known_values", set())


def record(home: Path, command: str, events: list[Event], hosts: list[str]) -> None:
    recorder = HistoryRecorder.start(history_path({}, str(home)), RunCommand(command),
                                     [HostSpec(name, name) for name in hosts],
                                     {"hosts": [], "groups": ["all"], "exclude": []}, None,
                                     warn=print)
    assert recorder is not None
    for event in events:
        recorder.handle(event)
    recorder.finish(1, interrupted=False, elapsed=0.5)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with two runs: 1 (web02 exits 1, db01 unreachable) and 2 (web02 changed)."""
    hosts = ["web01", "web02", "web03", "db01"]
    record(tmp_path, "cat x", [
        OutputLines("web01", "stdout", b"a\n"), OutputLines("web02", "stdout", b"a\n"),
        HostExited("web01", 0, 0.1), HostExited("web02", 1, 0.1), HostExited("web03", 0, 0.1),
        HostFailed("db01", FailureKind.CONNECT, "refused", 0.1)], hosts)
    record(tmp_path, "cat x", [
        OutputLines("web01", "stdout", b"a\n"), OutputLines("web02", "stdout", b"b\n"),
        HostExited("web01", 0, 0.1), HostExited("web02", 0, 0.1)], hosts[:2])
    return tmp_path


def call(home: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={"HOME": str(home)},
                      stdout_isatty=False, stderr_isatty=False)
    status = hostbatch_main(list(argv), env)
    return status, out.getvalue().decode(), err.getvalue().decode()


def test_list_newest_first(home: Path) -> None:
    status, out, _ = call(home, "history")
    assert status == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["ID", "STARTED", "HOSTS", "OK", "FAILED", "EXIT", "COMMAND"]
    assert [(r[0], *r[3:]) for r in rows[1:]] == [("2", "2", "2", "0", "1", "cat", "x"),
                                                  ("1", "4", "2", "2", "1", "cat", "x")]
    status, out, _ = call(home, "history", "list", "-n", "1", "--json")
    assert status == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [2]


def test_show_and_diff(home: Path) -> None:
    status, out, err = call(home, "history", "show", "1", "-h", "web0[1-2]")
    assert (status, out) == (0, "web01: a\nweb02: a\n")
    assert "2 hosts in 0.50s: 1 ok, 1 failed" in err
    status, out, err = call(home, "history", "diff", "1", "2")
    assert status == 1
    assert out.splitlines() == ["==== web02: exit 1 -> exit 0", "--- run 1 web02 stdout",
                                "+++ run 2 web02 stdout", "@@ -1 +1 @@", "-a", "+b",
                                "==== web03: only in run 1 (exit 0)",
                                "==== db01: only in run 1 (unreachable (connect: refused))"]
    assert "3 of 4 hosts differ between runs 1 and 2" in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["show", "7"], "no run 7"),
    (["show", "x"], "not a run id"),
    (["diff", "1"], "required"),
    (["list", "--bogus"], "unrecognized"),
])
def test_errors_are_one_line(home: Path, argv: list[str], needle: str) -> None:
    status, out, err = call(home, "history", *argv)
    assert status == 2 and out == ""
    assert needle in err and len(err.splitlines()) == 1, err


def test_help_names_the_subcommands(home: Path) -> None:
    status, out, _ = call(home, "history", "--help")
    assert status == 0 and "history diff ID1 ID2" in out and "@failed" in out
    assert "history" in call(home, "--help")[1]


def test_shortcuts_resolve_to_hosts(home: Path, write_inventory: WriteInventory) -> None:
    inventory = str(write_inventory(INVENTORY))

    def listed(*argv: str) -> tuple[int, str, str]:
        out, err = io.BytesIO(), io.BytesIO()
        env = Environment(stdout=out, stderr=err, environ={"HOME": str(home)},
                          stdout_isatty=False, stderr_isatty=False)
        status = run_main(["-i", inventory, *argv, "--list"], env)
        return status, out.getvalue().decode(), err.getvalue().decode()

    assert listed("-h", "@failed:1")[1] == "web02\ndb01\n"
    assert listed("-h", "@ok:1,db01")[1] == "web01\nweb03\ndb01\n"
    assert listed("-g", "all", "-x", "@ok")[1] == "web03\ndb01\n"  # run 2: web01, web02 ok
    status, _, err = listed("-h", "@failed")
    assert status == 2 and "no host failed in run 2" in err


def test_uses_history_is_cheap_and_exact() -> None:
    assert uses_history(Selection(hosts=["web01,@failed"]))
    assert uses_history(Selection(groups=["all"], exclude=["@ok:3"]))
    assert not uses_history(Selection(hosts=["web[01-03]"], groups=["@g"]))


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("1048576", 1 << 20), ("512K", 512 << 10),
                                             ("4m", 4 << 20), ("1G", 1 << 30)])
def test_size_option(text: str, value: int) -> None:
    assert _size(text) == value


@pytest.mark.parametrize("text", ["", "K", "-1", "1.5M", "ten"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"size|negative"):
        _size(text)


def test_prune_keeps_the_newest(home: Path) -> None:
    status, _, err = call(home, "history", "prune", "--keep", "1")
    assert status == 0 and "deleted 1 run, kept the newest 1" in err
    status, out, _ = call(home, "history", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2]
    assert call(home, "history", "show", "1")[0] == 2
    assert call(home, "history", "prune")[0] == 2  # --keep is required
    assert call(home, "history", "prune", "--keep", "0")[0] == 0
    assert call(home, "history")[1].splitlines()[1:] == []


def test_list_keeps_one_line_per_run(tmp_path: Path) -> None:
    record(tmp_path, "printf 'a\\tb'\necho \x1b[31mred", [HostExited("h1", 0, 0.1)], ["h1"])
    status, out, _ = call(tmp_path, "history")
    assert status == 0 and len(out.splitlines()) == 2
    assert out.splitlines()[1].endswith("printf 'a\\tb'\\necho \\x1b[31mred")


def test_keyscan_takes_shortcuts_too(home: Path, write_inventory: WriteInventory) -> None:
    inventory = str(write_inventory(INVENTORY))
    status, out, err = call(home, "keyscan", "-i", inventory, "-h", "@failed:1", "--list")
    assert (status, out) == (0, "web02\ndb01\n"), err
