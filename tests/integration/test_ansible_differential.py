"""Differential: hostbatch reads Ansible INI inventories exactly as ``ansible-inventory`` does.

For each real-world-shaped inventory, the group tree (each group's direct hosts and children,
and its full membership), and every host's ``ansible_host``/``ansible_port``/``ansible_user``
as resolved by ``ansible-inventory -i FILE --list`` are compared with hostbatch's Inventory.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hostbatch.errors import InventoryError
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import Inventory

ANSIBLE_INVENTORY = shutil.which("ansible-inventory", path=str(Path(sys.executable).parent))
LOCAL_USER = "local-user-marker"

INVENTORIES = {
    "nested_children_and_vars": """
# A datacenter layout: regions > roles, vars on every level.
bastion.example.com ansible_user=jump

[web_eu]
web-eu-[01:04].example.com
[web_us]
web-us-[1:3].example.com ansible_port=2201
[db_eu]
db-eu-[a:c].example.com ansible_host=127.100.1.1
[db_us]
db-us-1.example.com:5522 ansible_user=postgres

[eu:children]
web_eu
db_eu
[us:children]
web_us
db_us
[web:children]
web_eu
web_us
[prod:children]
eu
us

[prod:vars]
ansible_user=deploy
ansible_port=22
[eu:vars]
ansible_port=2222
[web_eu:vars]
ansible_user=www
[all:vars]
ansible_user=fallback
ansible_python_interpreter=/usr/bin/python3
""",
    "hosts_in_many_groups": """
[app]
app1 ansible_host=127.192.2.10
app2 ansible_host=127.192.2.11 ansible_user=ops
shared
[monitoring]
shared ansible_port=9022
app1
[backup]
shared ansible_host="127.192.2.99"  # quoted, with a comment
app2:2022
[edge]
[edge:vars]
ansible_user=edge
""",
    "ungrouped_and_explicit_groups": """
solo1
solo2:2200 ansible_host=127.198.100.2
moved

[ungrouped]
explicit-ungrouped

[all]
in-all-only

[later]
moved ansible_user='later user'

[later:vars]
ansible_host=127.203.113.7
""",
    "ranges_and_strides": """
[even]
node[00:10:2]
[odd]
node[01:09:2].lab ansible_port=2000
[letters]
rack-[a:d]-[1:2]
[mixed:children]
even
letters
[mixed:vars]
ansible_user=rackuser
""",
    "odd_syntax": """
; semicolon comment
# hash comment
127.100.0.5 ansible_user="quoted user" ansible_port=2205
[web]   # a comment after the header
127.192.2.10:2210
web-a ansible_host=web-a.internal  ansible_user='single'
web-b ansible_host=web-b.internal#fragment

[web:vars]
ansible_user = spaced
ansible_port='2299'

[all]
127.100.0.6

[db]
db1 ansible_port=5432 # a comment
db1 ansible_user=second-line-wins
""",
    "children_before_definition": """
[top:children]
middle
[middle:children]
leaf
[leaf]
l1
l2 ansible_user=own
[middle]
m1
[leaf:vars]
ansible_port=7001
[middle:vars]
ansible_port=7000
ansible_user=mid
[top:vars]
ansible_user=top
""",
}


def _run_ansible(path: Path) -> subprocess.CompletedProcess[str]:
    assert ANSIBLE_INVENTORY is not None
    return subprocess.run([ANSIBLE_INVENTORY, "-i", str(path), "--list"], capture_output=True,
                          text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(path.parent),
                               "ANSIBLE_INVENTORY_ENABLED": "ini", "LC_ALL": "C.UTF-8",
                               "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})


def _ansible_view(path: Path) -> dict[str, Any]:
    proc = _run_ansible(path)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _groups_of(data: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    """Every group ansible lists: name -> (direct hosts, children); ``all`` excluded."""
    names: set[str] = set()
    stack = [name for name in data if name not in ("_meta", "all")]
    stack += data["all"].get("children", [])
    while stack:
        name = stack.pop()
        if name not in names:
            names.add(name)
            stack.extend(data.get(name, {}).get("children", []))
    return {name: (data.get(name, {}).get("hosts", []), data.get(name, {}).get("children", []))
            for name in names}


def _members(groups: dict[str, tuple[list[str], list[str]]], name: str) -> set[str]:
    hosts, children = groups[name]
    found = set(hosts)
    for child in children:
        found |= _members(groups, child)
    return found


@pytest.fixture(scope="module")
def have_ansible() -> None:
    if ANSIBLE_INVENTORY is None:
        pytest.skip("ansible-inventory is not installed in this venv "
                    "(pip install -e '.[test]' installs ansible-core)")


@pytest.mark.parametrize("name", sorted(INVENTORIES))
def test_hostbatch_resolves_what_ansible_resolves(name: str, tmp_path: Path,
                                                  have_ansible: None) -> None:
    path = tmp_path / f"{name}.ini"
    path.write_text(INVENTORIES[name].lstrip("\n"))
    path.chmod(0o600)
    expected = _ansible_view(path)
    ours: Inventory = load_inventory(path, local_user=LOCAL_USER)

    hostvars: dict[str, dict[str, Any]] = expected["_meta"]["hostvars"]
    groups = _groups_of(expected)
    all_hosts = _members(groups, "ungrouped") | {h for g in groups for h in _members(groups, g)}
    assert set(ours.hosts) == all_hosts
    assert set(ours.group_members("all")) == all_hosts
    for group, (hosts, children) in groups.items():
        if group == "ungrouped" and not hosts:
            assert "ungrouped" not in ours.groups
            continue
        assert group in ours.groups, group
        assert list(ours.groups[group].hosts) == hosts, group
        assert list(ours.groups[group].children) == children, group
        assert set(ours.group_members(group)) == _members(groups, group), group
    assert set(ours.groups) <= set(groups)
    for host, spec in ours.hosts.items():
        variables = hostvars.get(host, {})
        assert spec.hostname == variables.get("ansible_host", host), host
        assert spec.port == int(variables.get("ansible_port", 22)), host
        assert spec.user == variables.get("ansible_user", LOCAL_USER), host


BROKEN = {
    "stray_token": "[web]\nweb-a ansible_user='x'   ; comment\n",
    "undefined_child": "[p:children]\nmissing\n",
    "vars_for_nothing": "[ghost:vars]\nx=1\n",
    "unknown_section_type": "[web:hostz]\nweb1\n",
    "uneven_padding": "[web]\nweb[01:3]\n",
    "port_missing": "[web]\nweb1: x=1\n",
    "unclosed_quote": "[web]\nweb1 x='open\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_what_ansible_refuses_hostbatch_refuses(name: str, tmp_path: Path,
                                                have_ansible: None) -> None:
    path = tmp_path / f"{name}.ini"
    path.write_text(BROKEN[name])
    assert _run_ansible(path).returncode != 0
    with pytest.raises(InventoryError, match="read as an Ansible inventory"):
        load_inventory(path, local_user=LOCAL_USER, inventory_format="ansible")


def test_the_inventories_exercise_the_shapes(have_ansible: None, tmp_path: Path) -> None:
    """Guard against the comparison becoming vacuous: ansible sees the shapes we meant."""
    path = tmp_path / "inv.ini"
    path.write_text(INVENTORIES["nested_children_and_vars"])
    data = _ansible_view(path)
    hostvars = data["_meta"]["hostvars"]
    assert hostvars["web-eu-01.example.com"]["ansible_user"] == "www"
    assert hostvars["web-eu-01.example.com"]["ansible_port"] == 2222
    assert hostvars["db-us-1.example.com"]["ansible_port"] == 5522
    assert data["ungrouped"]["hosts"] == ["bastion.example.com"]
    assert set(data["prod"]["children"]) == {"eu", "us"}


def _random_inventory(seed: int) -> str:
    """A random but valid inventory: a DAG of groups, hosts in several groups, conflicting
    connection variables on every level (so precedence and tie-breaking by name matter)."""
    rng = random.Random(seed)
    groups = [f"g{n}" for n in range(rng.randint(3, 7))]
    hosts = [f"h{n}" for n in range(rng.randint(3, 9))]
    variables = ("ansible_host", "ansible_port", "ansible_user")

    def value(name: str) -> str:
        if name == "ansible_port":
            return str(rng.randint(1, 65535))
        return f"{name.split('_')[1]}{rng.randint(0, 99)}"

    lines = [f"{h} {name}={value(name)}" for h in rng.sample(hosts, rng.randint(0, 2))
             for name in rng.sample(variables, 1)]
    sections = []
    for group in groups:
        members = rng.sample(hosts, rng.randint(0, 3))
        body = []
        for host in members:
            extra = [f"{v}={value(v)}" for v in rng.sample(variables, rng.randint(0, 2))]
            port = f":{rng.randint(1, 65535)}" if rng.random() < 0.2 else ""
            body.append(" ".join([host + port, *extra]))
        if rng.random() < 0.3:
            body.append(f"r{group}[{rng.randint(0, 3):02d}:0{rng.randint(4, 9)}]")
        sections.append((f"[{group}]", body))
        later = groups[groups.index(group) + 1:]  # children only later: no cycles
        if later and rng.random() < 0.6:
            sections.append((f"[{group}:children]", rng.sample(later, rng.randint(1,
                                                                         min(2, len(later))))))
        if rng.random() < 0.7:
            sections.append((f"[{group}:vars]", [f"{v}={value(v)}" for v in
                                                 rng.sample(variables, rng.randint(1, 3))]))
    if rng.random() < 0.5:
        sections.append(("[all:vars]", [f"{v}={value(v)}" for v in variables]))
    rng.shuffle(sections)
    for header, body in sections:
        lines += ["", header, *body]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(int(os.environ.get("HB_SEEDS", "12"))))
def test_random_inventories(seed: int, tmp_path: Path, have_ansible: None) -> None:
    text = _random_inventory(seed)
    INVENTORIES[f"random{seed}"] = text
    try:
        test_hostbatch_resolves_what_ansible_resolves(f"random{seed}", tmp_path, have_ansible)
    finally:
        del INVENTORIES[f"random{seed}"]


@pytest.mark.parametrize("seed", range(int(os.environ.get("HB_SEEDS", "12"))))
def test_random_inventories_convert_round_trip(seed: int, tmp_path: Path) -> None:
    """``inventory convert`` of each random inventory loads back to the same hosts and groups."""
    from hostbatch.inventory.convert import to_hostbatch_ini

    source = tmp_path / "ansible.ini"
    source.write_text(_random_inventory(seed))
    original = load_inventory(source, local_user=LOCAL_USER)
    converted = tmp_path / "hostbatch.ini"
    converted.write_text(to_hostbatch_ini(original))
    again = load_inventory(converted, local_user=LOCAL_USER, inventory_format="hostbatch")
    assert again.hosts == original.hosts
    assert again.groups == original.groups
