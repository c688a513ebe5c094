"""Routes through relays: ``via`` in [defaults], groups and [host:NAME] (the host's own value
wins), ``via = none``, ``--via``, relay settings, and how a run is split into shards."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hostbatch.actions import RunCommand
from hostbatch.engine.jobs import Job, ShardJob, job_hosts, plan
from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import DEFAULT_RELAY_COMMAND, DEFAULT_RELAY_FORKS, Inventory
from hostbatch.prepare import HostOverrides, host_resolver, resolve_settings

INVENTORY = """\
[defaults]
user = ops
via = relay0

[host:relay0]
hostname = 10.9.0.1
[host:relay1]
hostname = 10.1.0.1
relay_command = /opt/hostbatch/bin/hostbatch relay --stdio
relay_forks = 200
forward_agent = yes
[host:relay2]
hostname = 10.1.0.2
[host:own]
via = relay2
[host:direct]
via = none

[group:dc1]
hosts = a1, a2, own, direct
via = relay1, relay2
[group:dc1_web]
hosts = a1
via = relay2
[group:other]
hosts = b1
"""


def load(tmp_path: Path, text: str = INVENTORY) -> Inventory:
    path = tmp_path / "hosts.ini"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    return load_inventory(path, local_user="me")


def route(inventory: Inventory, name: str) -> tuple[str, ...]:
    return tuple(relay.name for relay in inventory.hosts[name].relays)


def test_the_host_wins_then_the_first_group_then_defaults(tmp_path: Path) -> None:
    inventory = load(tmp_path)
    assert route(inventory, "a1") == ("relay1", "relay2")  # dc1 comes first in the file
    assert route(inventory, "own") == ("relay2",)
    assert route(inventory, "direct") == ()
    assert route(inventory, "b1") == ("relay0",)  # [defaults]
    # A host is never its own relay; a relay *selected as a host* follows its own via, and
    # as a relay it is always dialled directly.
    assert route(inventory, "relay0") == ()
    assert route(inventory, "relay1") == ("relay0",)
    assert all(relay.relays == () for relay in inventory.hosts["a1"].relays)
    assert inventory.hosts["a1"].via == ("relay1", "relay2")


def test_relays_carry_their_own_settings(tmp_path: Path) -> None:
    relay1, relay2 = load(tmp_path).hosts["a1"].relays
    assert (relay1.hostname, relay1.user, relay1.relays) == ("10.1.0.1", "ops", ())
    assert relay1.relay_command == "/opt/hostbatch/bin/hostbatch relay --stdio"
    assert relay1.relay_forks == 200
    assert relay1.forward_agent and not relay2.forward_agent
    assert (relay2.relay_command, relay2.relay_forks) == (DEFAULT_RELAY_COMMAND,
                                                         DEFAULT_RELAY_FORKS)


def test_sources_name_the_group(tmp_path: Path) -> None:
    inventory = load(tmp_path)
    resolver = host_resolver(inventory, HostOverrides(), str(tmp_path))
    assert resolver.resolve("a2").sources["via"] == "group dc1"
    assert resolver.resolve("own").sources["via"] == "host section"
    assert resolver.resolve("b1").sources["via"] == "defaults"


@pytest.mark.parametrize(("text", "key", "message"), [
    ("[host:a]\nvia = nowhere\n", "via", "relay 'nowhere' is not a host of this inventory"),
    ("[group:g]\nhosts = a\nvia = relya\n[host:relay]\n", "via", "did you mean 'relay'"),
    ("[host:a]\nrelay_forks = 0\n", "relay_forks", "must be at least 1"),
    ("[host:a]\nrelay_forks = many\n", "relay_forks", "is not a whole number"),
    ("[host:a]\nrelay_command = 'open\n", "relay_command", "cannot split"),
    ("[host:a]\nforward_agent = maybe\n", "forward_agent", "is not yes or no"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, text: str, key: str,
                                        message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, text)
    assert caught.value.key == key
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_command_line_via_overrides_the_inventory(tmp_path: Path) -> None:
    inventory = load(tmp_path)
    hosts = [inventory.hosts[name] for name in ("a1", "b1", "direct")]
    forced = resolve_settings(inventory, hosts, HostOverrides(via=("relay2",)), {})
    assert [tuple(r.name for r in spec.relays) for spec in forced] == [("relay2",)] * 3
    none = resolve_settings(inventory, hosts, HostOverrides(via=()), {})
    assert all(spec.relays == () for spec in none)
    with pytest.raises(UsageError, match="--via: relay 'ghost' is not a host"):
        resolve_settings(inventory, hosts, HostOverrides(via=("ghost",)), {})


def test_a_run_is_split_into_one_shard_per_route(tmp_path: Path) -> None:
    inventory = load(tmp_path)
    hosts = [inventory.hosts[name] for name in ("relay0", "a1", "b1", "a2", "direct", "own")]
    jobs = plan(hosts, RunCommand("true"))
    assert [type(job).__name__ for job in jobs] == ["Job", "ShardJob", "ShardJob", "Job",
                                                    "ShardJob"]
    assert [job_hosts(job) for job in jobs] == [("relay0",), ("a1", "a2"), ("b1",),
                                                ("direct",), ("own",)]
    shard = jobs[1]
    assert isinstance(shard, ShardJob) and isinstance(jobs[0], Job)
    assert [relay.name for relay in shard.relays] == ["relay1", "relay2"]
    # The relay reaches its hosts directly: their own route is not sent along.
    assert all(spec.via == () and spec.relays == () for spec in shard.hosts)


def test_a_rollout_plans_every_relayed_host_as_its_own_shard(tmp_path: Path) -> None:
    inventory = load(tmp_path)
    hosts = [inventory.hosts[name] for name in ("relay0", "a1", "b1", "a2", "direct")]
    jobs = plan(hosts, RunCommand("true"), host_by_host=True)
    assert [job_hosts(job) for job in jobs] == [("relay0",), ("a1",), ("b1",), ("a2",),
                                                ("direct",)]  # selection order, one each
    assert [type(job).__name__ for job in jobs] == ["Job", "ShardJob", "ShardJob", "ShardJob",
                                                    "Job"]


def test_ansible_inventories_take_hostbatch_via_from_hosts_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "inventory.ini"
    path.write_text(textwrap.dedent("""\
        [relays]
        gw1 ansible_host=10.0.0.1 hostbatch_relay_forks=16
        gw2 ansible_host=10.0.0.2

        [dc1]
        web1
        web2 hostbatch_via=none

        [dc1:vars]
        hostbatch_via=gw1,gw2
        """))
    inventory = load_inventory(path, local_user="me", inventory_format="ansible")
    assert route(inventory, "web1") == ("gw1", "gw2")
    assert route(inventory, "web2") == ()
    assert inventory.hosts["web1"].relays[0].relay_forks == 16
    path.write_text("[dc1]\nweb1 hostbatch_via=gw9\n")
    with pytest.raises(InventoryError, match="relay 'gw9' is not a host"):
        load_inventory(path, local_user="me", inventory_format="ansible")
