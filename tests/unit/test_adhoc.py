"""``-H`` ad-hoc hosts: parsing, layering on an inventory's ``[defaults]``, selection with
and without an inventory (no network)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hostbatch.cli.environment import Environment
from hostbatch.cli.main import run_main
from hostbatch.errors import SelectionError, UsageError
from hostbatch.inventory.adhoc import NO_INVENTORY, adhoc_sections, with_adhoc
from hostbatch.inventory.loader import load_inventory
from hostbatch.selection import Selection, select

from .conftest import WriteInventory


def test_sections_from_the_pssh_forms() -> None:
    assert adhoc_sections(["web[01-02],root@db1:2222", "[::1]:2200"]) == {
        "web01": {}, "web02": {}, "db1": {"user": "root", "port": 2222},
        "::1": {"port": 2200}}


@pytest.mark.parametrize(("value", "message"), [
    ("a@b@c", "expected \\[user@\\]host\\[:port\\]"),
    ("db1:99999", "expected"),
    ("web[03-01]", "bad -H range"),
    ("root@db1,db1:22", "twice"),
])
def test_bad_forms_are_one_line_usage_errors(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        adhoc_sections([value])


def test_adhoc_hosts_take_the_inventory_defaults(write_inventory: WriteInventory) -> None:
    inventory = load_inventory(write_inventory(
        "[defaults]\nuser = deploy\nport = 2022\nconnect_timeout = 4\n"
        "[host:db1]\nhostname = 127.0.0.21\nuser = dba\n"))
    grown = with_adhoc(inventory, ["extra1,ops@extra2:2200,root@db1"])
    hosts = select(grown, Selection(adhoc=["extra1,ops@extra2:2200,root@db1"]))
    got = {h.name: (h.hostname, h.user, h.port, h.connect_timeout) for h in hosts}
    assert got == {"db1": ("127.0.0.21", "root", 2022, 4.0),
                   "extra1": ("extra1", "deploy", 2022, 4.0),
                   "extra2": ("extra2", "ops", 2200, 4.0)}
    assert list(grown.hosts) == ["db1", "extra1", "extra2"]  # inventory order, then -H


def test_without_an_inventory_an_empty_one_stands_in() -> None:
    grown = with_adhoc(None, ["web01"])
    assert grown.path == NO_INVENTORY
    (host,) = select(grown, Selection(adhoc=["web01"]))
    assert (host.name, host.hostname, host.port) == ("web01", "web01", 22)


def test_minus_h_points_at_minus_capital_h(write_inventory: WriteInventory) -> None:
    inventory = load_inventory(write_inventory("[host:web01]\n"))
    with pytest.raises(SelectionError, match="use -H NAME for a host that is not in the"):
        select(inventory, Selection(hosts=["nothere"]))


def _run(argv: list[str], cwd: Path, home: Path) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdin=io.BytesIO(), stdout=out, stderr=err, environ={"HOME": str(home)},
                      stdout_isatty=False, stderr_isatty=False)
    status = run_main(argv, env)
    return int(status), out.getvalue().decode(), err.getvalue().decode()


def test_list_with_only_minus_capital_h_needs_no_inventory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(["-H", "web[01-03],root@db1:2222", "-x", "web02", "--list"],
                            tmp_path, tmp_path)
    assert (status, out, err) == (0, "web01\nweb03\ndb1\n", "")


def test_minus_h_without_an_inventory_still_needs_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(["-h", "web01", "-H", "db1", "--list"], tmp_path, tmp_path)
    assert status == 2 and "no inventory found" in err and err.count("\n") == 1
