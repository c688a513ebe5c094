"""hostbatch.selection.select: -h / -g / -x against an inventory."""

from __future__ import annotations

import pytest

from hostbatch.errors import HostbatchError, SelectionError, UsageError
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import Inventory
from hostbatch.selection import Selection, select

from .conftest import WriteInventory

INVENTORY = """
[defaults]
user = deploy

[host:web1]
hostname = 127.100.0.1

[group:web_clusters]
hosts = web1, web[02-04]

[host:db1]
[host:db2]

[group:db_servers]
hosts = db1, db2

[group:everything]
children = web_clusters, db_servers

[group:web_old]
hosts = web04

[group:lonely]

[host:mail]
"""

ORDER = ["web1", "web02", "web03", "web04", "db1", "db2", "mail"]


@pytest.fixture
def inventory(write_inventory: WriteInventory) -> Inventory:
    return load_inventory(write_inventory(INVENTORY), local_user="me")


def names(inventory: Inventory, hosts: tuple[str, ...] = (), groups: tuple[str, ...] = (),
          exclude: tuple[str, ...] = (), warn: list[str] | None = None) -> list[str]:
    chosen = select(inventory, Selection(hosts, groups, exclude),
                    warn=None if warn is None else warn.append)
    return [spec.name for spec in chosen]


def test_inventory_order_is_as_expected(inventory: Inventory) -> None:
    assert list(inventory.hosts) == ORDER


@pytest.mark.parametrize(
    ("hosts", "groups", "expected"),
    [
        # names
        (("web1",), (), ["web1"]),
        (("db2,web1",), (), ["web1", "db2"]),
        (("db2", "web1"), (), ["web1", "db2"]),  # -h given twice
        ((" mail , db1 ",), (), ["db1", "mail"]),
        # globs
        (("web*",), (), ["web1", "web02", "web03", "web04"]),
        (("web0?",), (), ["web02", "web03", "web04"]),
        (("*1",), (), ["web1", "db1"]),
        (("d??",), (), ["db1", "db2"]),
        (("db[!x]",), (), ["db1", "db2"]),  # a non-numeric bracket is a glob class
        (("web0[!2]",), (), ["web03", "web04"]),
        (("*",), (), ORDER),
        # ranges
        (("web[02-03]",), (), ["web02", "web03"]),
        (("web[01-04]",), (), ["web02", "web03", "web04"]),  # web01 is not a host
        (("db[1-2],web[03-04]",), (), ["web03", "web04", "db1", "db2"]),
        (("web[02,04]",), (), ["web02", "web04"]),
        # groups
        ((), ("db_servers",), ["db1", "db2"]),
        ((), ("web_clusters,db_servers",), ["web1", "web02", "web03", "web04", "db1", "db2"]),
        ((), ("everything",), ["web1", "web02", "web03", "web04", "db1", "db2"]),
        ((), ("all",), ORDER),
        # group globs
        ((), ("web_*",), ["web1", "web02", "web03", "web04"]),
        ((), ("*_servers",), ["db1", "db2"]),
        ((), ("*",), ORDER),
        # union, each host once, inventory order
        (("mail,db1",), ("db_servers",), ["db1", "db2", "mail"]),
        (("web*,web1,web[02-03]",), ("web_clusters,web_old",), ["web1", "web02", "web03",
                                                                "web04"]),
        (("mail",), ("everything", "web_clusters"), ORDER),
    ],
)
def test_select(inventory: Inventory, hosts: tuple[str, ...], groups: tuple[str, ...],
                expected: list[str]) -> None:
    assert names(inventory, hosts, groups) == expected


def test_select_returns_host_specs(inventory: Inventory) -> None:
    (spec,) = select(inventory, Selection(["web1"]))
    assert spec is inventory.hosts["web1"]
    assert (spec.hostname, spec.user) == ("127.100.0.1", "deploy")


@pytest.mark.parametrize(
    ("exclude", "expected"),
    [
        (("db1",), ["web1", "web02", "web03", "web04", "db2", "mail"]),
        (("web*",), ["db1", "db2", "mail"]),
        (("web[02-03],mail",), ["web1", "web04", "db1", "db2"]),
        (("web[02-03]", "mail"), ["web1", "web04", "db1", "db2"]),
        (("db?,web0*",), ["web1", "mail"]),
    ],
)
def test_exclude(inventory: Inventory, exclude: tuple[str, ...], expected: list[str]) -> None:
    assert names(inventory, groups=("all",), exclude=exclude) == expected


def test_exclude_matching_nothing_warns(inventory: Inventory) -> None:
    warnings: list[str] = []
    got = names(inventory, hosts=("web1,db1",), exclude=("web9", "nosuch*"), warn=warnings)
    assert got == ["web1", "db1"]
    assert len(warnings) == 2
    assert "'web9'" in warnings[0] and "web1" in warnings[0]  # suggests the nearest name
    assert "'nosuch*'" in warnings[1]


def test_exclude_matching_nothing_without_warn_callback_is_fine(inventory: Inventory) -> None:
    assert names(inventory, hosts=("web1",), exclude=("zzz",)) == ["web1"]


def test_exclude_outside_the_selection_is_fine(inventory: Inventory) -> None:
    warnings: list[str] = []
    assert names(inventory, hosts=("web1",), exclude=("db1",), warn=warnings) == ["web1"]
    assert warnings == []


@pytest.mark.parametrize(
    ("hosts", "groups", "unmatched", "suggested"),
    [
        (("web5",), (), "web5", "web1"),
        (("wbe1",), (), "wbe1", "web1"),
        (("db1,db3",), (), "db3", "db1"),
        (("dbx*",), (), "dbx*", None),
        (("web[05-09]",), (), "web[05-09]", None),
        ((), ("web_cluster",), "web_cluster", "web_clusters"),
        ((), ("db_server",), "db_server", "db_servers"),
        ((), ("al",), "al", "all"),
        ((), ("nothing*",), "nothing*", None),
        (("web1",), ("db_servers,nope",), "nope", None),
    ],
)
def test_unmatched_host_or_group_is_an_error(
    inventory: Inventory, hosts: tuple[str, ...], groups: tuple[str, ...], unmatched: str,
    suggested: str | None,
) -> None:
    with pytest.raises(SelectionError) as caught:
        names(inventory, hosts, groups)
    error = caught.value
    assert error.unmatched == (unmatched,)
    message = str(error)
    assert repr(unmatched) in message
    assert inventory.path in message
    if suggested is not None:
        assert "did you mean" in message and suggested in message


def test_a_host_given_to_minus_g_and_a_group_given_to_minus_h_say_so(
        inventory: Inventory) -> None:
    with pytest.raises(SelectionError, match="'db1' is a host: use -h db1"):
        names(inventory, (), ("db1",))
    with pytest.raises(SelectionError, match="'db_servers' is a group: use -g db_servers"):
        names(inventory, ("db_servers",), ())


def test_an_unknown_group_lists_the_groups_nearest_first(inventory: Inventory) -> None:
    with pytest.raises(SelectionError) as caught:
        names(inventory, (), ("dbservers",))
    listed = str(caught.value).split("its groups: ", 1)[1].split(", ")
    assert listed[0] == "db_servers" and "web_clusters" in listed


def test_selection_error_types() -> None:
    assert issubclass(SelectionError, HostbatchError)
    assert issubclass(SelectionError, LookupError)
    assert issubclass(UsageError, HostbatchError)


@pytest.mark.parametrize(
    "selection",
    [Selection(), Selection([], [], ["web1"]), Selection([""], [" , "]), Selection([","])],
)
def test_no_hosts_and_no_groups_is_a_usage_error(inventory: Inventory,
                                                 selection: Selection) -> None:
    assert selection.is_empty()
    with pytest.raises(UsageError, match="-h") as caught:
        select(inventory, selection)
    assert "-g" in str(caught.value)


def test_everything_excluded_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(SelectionError, match="empty"):
        names(inventory, groups=("db_servers",), exclude=("db*",))


def test_empty_group_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(SelectionError, match="empty"):
        names(inventory, groups=("lonely",))


def test_backwards_range_in_selection_is_a_usage_error(inventory: Inventory) -> None:
    with pytest.raises(HostbatchError, match="backwards"):
        names(inventory, hosts=("web[04-02]",))


def test_host_and_group_with_the_same_name(write_inventory: WriteInventory) -> None:
    inv = load_inventory(write_inventory("[host:x]\n[group:x]\nhosts = y\n"), local_user="me")
    assert names(inv, hosts=("x",)) == ["x"]
    assert names(inv, groups=("x",)) == ["y"]


def test_children_cycle_free_deep_group(write_inventory: WriteInventory) -> None:
    text = "".join(f"[group:g{i}]\nchildren = g{i + 1}\n" for i in range(50))
    text += "[group:g50]\nhosts = leaf\n"
    inv = load_inventory(write_inventory(text), local_user="me")
    assert names(inv, groups=("g0",)) == ["leaf"]
