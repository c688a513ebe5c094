"""Ansible INI inventories: parsing rules, variable precedence, mapping to HostSpec, detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostbatch.errors import InventoryError
from hostbatch.inventory.ansible import ssh_options
from hostbatch.inventory.ansible_ini import (
    AnsibleSyntaxError,
    expand_range,
    parse_ansible_ini,
    parse_value,
    split_host_port,
)
from hostbatch.inventory.detect import looks_like_ansible
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import Inventory
from hostbatch.secrets import Secret

from .conftest import WriteInventory


def load(path: Path, warnings: list[str] | None = None, fmt: str = "auto") -> Inventory:
    sink = warnings.append if warnings is not None else None
    return load_inventory(path, warn=sink, local_user="localme", inventory_format=fmt)


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(("pattern", "expected"), [
    ("web[01:03]", ["web01", "web02", "web03"]),
    ("web[1:3]", ["web1", "web2", "web3"]),
    ("db[a:c].example.com", ["dba.example.com", "dbb.example.com", "dbc.example.com"]),
    ("n[01:09:4]", ["n01", "n05", "n09"]),
    ("r[1:2]-n[a:b]", ["r1-na", "r1-nb", "r2-na", "r2-nb"]),
    ("[:2]x", ["0x", "1x", "2x"]),
    ("plain", ["plain"]),
])
def test_expand_range(pattern: str, expected: list[str]) -> None:
    assert expand_range(pattern) == expected


@pytest.mark.parametrize("pattern", ["web[01:3]", "web[1]", "web[1:]", "web[c:a]", "web[1:2",
                                     "web[1:99999999]", "web[1:5:0]"])
def test_bad_ranges_are_errors(pattern: str) -> None:
    with pytest.raises(AnsibleSyntaxError):
        expand_range(pattern)


@pytest.mark.parametrize(("token", "expected"), [
    ("host:2222", ("host", 2222)),
    ("[host]:2222", ("host", 2222)),
    ("web[01:03]:2200", ("web[01:03]", 2200)),
    ("web[01:03]", ("web[01:03]", None)),
    ("::1", ("::1", None)),
    ("[::1]:22", ("::1", 22)),
])
def test_split_host_port(token: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(token) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("2222", 2222), ("'quoted # x'", "quoted # x"), ("plain text", "plain text"),
    ("[1, 2]", [1, 2]), ("True", True), ("...", "..."), ("1j", "1j"),
])
def test_values_are_read_like_ansible(text: str, expected: object) -> None:
    assert parse_value(text) == expected


def test_ssh_options() -> None:
    assert ssh_options("-o ProxyJump=u@b:22 -oUserKnownHostsFile=/k -J x -v") == {
        "proxyjump": "u@b:22", "userknownhostsfile": "/k", "": "-v"}


# --------------------------------------------------------------------------- semantics


def test_groups_children_vars_and_precedence() -> None:
    parsed = parse_ansible_ini("""
top1 ansible_port=2000
[web]
w1 ansible_user=hostuser
w2
[db]
d1
[prod:children]
web
db
[prod:vars]
ansible_user=produser
ansible_port=2001
[web:vars]
ansible_user=webuser
[all:vars]
ansible_user=alluser
ansible_port=2002
""")
    assert parsed.groups["prod"].children == ["web", "db"]
    assert parsed.groups["ungrouped"].hosts == ["top1"]
    assert parsed.resolved_vars("w1")["ansible_user"] == "hostuser"  # host beats groups
    assert parsed.resolved_vars("w2")["ansible_user"] == "webuser"  # child beats parent
    assert parsed.resolved_vars("d1")["ansible_user"] == "produser"  # parent beats all
    assert parsed.resolved_vars("top1") == {"ansible_user": "alluser", "ansible_port": 2000}
    assert parsed.resolved_vars("w2")["ansible_port"] == 2001


def test_host_in_several_groups_and_leaving_ungrouped() -> None:
    parsed = parse_ansible_ini("h1\nh2\n[a]\nh1 x=1\n[b]\nh1 x=2\nh3\n")
    assert parsed.groups["ungrouped"].hosts == ["h2"]
    assert parsed.groups["a"].hosts == ["h1"] and parsed.groups["b"].hosts == ["h1", "h3"]
    assert parsed.host_vars["h1"] == {"x": 2}  # the later line wins


def test_host_line_quotes_and_comments() -> None:
    parsed = parse_ansible_ini("[g]\nh1 a='x y' b=\"p#q\" c=1 # comment d=2\nh2 e=f#g\n")
    assert parsed.host_vars["h1"] == {"a": "x y", "b": "p#q", "c": 1}
    assert parsed.host_vars["h2"] == {"e": "f"}  # as shlex, and so Ansible, split it


def test_children_may_come_before_their_definition() -> None:
    parsed = parse_ansible_ini("[p:children]\nc\n[c]\nh\n")
    assert parsed.groups["p"].children == ["c"] and parsed.groups["c"].parents == ["p"]


@pytest.mark.parametrize(("text", "message"), [
    ("[p:children]\nmissing\n", "never defined"),
    ("[ghost:vars]\nx=1\n", "never defined"),
    ("[g:weird]\n", "unknown type"),
    ("[a b]\n", "no spaces"),
    ("[g:vars]\n[g]\nh\n[g:vars]\nnot a pair\n", "key=value"),
    ("[g]\nh notpair\n", "key=value"),
    ("[g]\nhost: a=1\n", "ends in ':'"),
    ("[a:children]\nb\n[b:children]\na\n", "loop"),
    ("[g]\nh a='unclosed\n", "cannot split"),
])
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(AnsibleSyntaxError, match=message):
        parse_ansible_ini(text)


# --------------------------------------------------------------------------- HostSpec


ANSIBLE_EXAMPLE = """
[web]
web[01:02] ansible_host=127.192.2.1
web03:2222 ansible_user=root ansible_password='pa ss#1'

[web:vars]
ansible_ssh_private_key_file=~/.ssh/web_key
ansible_ssh_common_args='-o ProxyJump=jump@bastion:2200,inner -o StrictHostKeyChecking=no'
ansible_become_password=sudo-secret
ansible_python_interpreter=/usr/bin/python3
http_port=80

[db]
db1 ansible_connection=local ansible_timeout=7
"""


def test_hosts_become_hostspecs(write_inventory: WriteInventory) -> None:
    warnings: list[str] = []
    inv = load(write_inventory(ANSIBLE_EXAMPLE), warnings)
    assert list(inv.hosts) == ["web01", "web02", "web03", "db1"]
    web01, web03, db1 = inv.hosts["web01"], inv.hosts["web03"], inv.hosts["db1"]
    assert (web01.hostname, web01.port, web01.user) == ("127.192.2.1", 22, "localme")
    assert (web03.hostname, web03.port, web03.user) == ("web03", 2222, "root")
    assert web03.password == Secret("pa ss#1") and web01.password is None
    assert web01.identity_file == str(Path("~/.ssh/web_key").expanduser())
    assert web01.proxy_jump == ("jump@bastion:2200", "inner")
    assert web01.sudo_password == Secret("sudo-secret")
    assert db1.connect_timeout == 7.0 and db1.proxy_jump == ()
    assert inv.group_members("web") == ["web01", "web02", "web03"]
    assert inv.group_members("all") == list(inv.hosts)
    assert "ungrouped" not in inv.groups
    assert len(warnings) == 1, warnings
    assert "ansible_connection=local" in warnings[0]
    assert "ansible_python_interpreter" in warnings[0] and "http_port" in warnings[0]
    assert "pa ss" not in warnings[0] and "sudo-secret" not in warnings[0]


def test_proxy_command_becomes_a_hop(write_inventory: WriteInventory) -> None:
    inv = load(write_inventory(
        "[g]\nh ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p -q -p 2200 "
        "ops@bastion\"'\n"))
    assert inv.hosts["h"].proxy_jump == ("ops@bastion:2200",)


def test_unusable_ssh_args_are_named(write_inventory: WriteInventory) -> None:
    warnings: list[str] = []
    path = write_inventory("[g]\nh ansible_ssh_common_args='-o Compression=yes -v'\n")
    load(path, warnings)
    assert warnings == [f"{path}: Ansible variables not supported by hostbatch, ignored: "
                        "ansible_ssh_common_args(-o compression), "
                        "ansible_ssh_common_args(arguments)"]


def test_bad_port_names_host_and_variable(write_inventory: WriteInventory) -> None:
    with pytest.raises(InventoryError, match=r"\[h\]: ansible_port: port 70000 is out of range"):
        load(write_inventory("[g]\nh ansible_port=70000\n"))


def test_syntax_error_is_one_line_with_line_number(write_inventory: WriteInventory) -> None:
    with pytest.raises(InventoryError, match=r"hosts.ini: line 4: .*never defined"):
        load(write_inventory("[g]\nh\n[p:children]\nnope\n"))


def test_readable_file_with_password_is_refused(write_inventory: WriteInventory) -> None:
    path = write_inventory("[g]\nh ansible_password=x\n", mode=0o644)
    with pytest.raises(InventoryError, match="chmod 600"):
        load(path)
    warnings: list[str] = []
    load_inventory(path, warn=warnings.append, local_user="me", insecure=True)
    assert any("chmod 600" in w for w in warnings), warnings


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(("text", "ansible"), [
    ("[defaults]\nuser = x\n[host:a]\nhostname = b\n[group:g]\nhosts = a\n", False),
    ("", False),
    ("[hots:a]\nhostname = b\n", False),  # a typo in a hostbatch file stays a hostbatch error
    ("web1\nweb2\n", True),
    ("[web]\nweb1\n", True),
    ("[web]\nweb1 ansible_host=x\n", True),
    ("[web:children]\ndb\n[db]\n", True),
    ("[web]\nweb1:2222\n", True),
    ("[all:vars]\nansible_user=x\n", True),
])
def test_detection(text: str, ansible: bool) -> None:
    assert looks_like_ansible(text) is ansible


def test_format_can_be_forced(write_inventory: WriteInventory) -> None:
    path = write_inventory("[web]\nweb1\n")
    assert list(load(path).hosts) == ["web1"]
    with pytest.raises(InventoryError, match="cannot parse"):
        load(path, fmt="hostbatch")
    assert list(load(path, fmt="ansible").hosts) == ["web1"]
    with pytest.raises(InventoryError, match="unknown inventory format"):
        load(path, fmt="yaml")


def test_port_in_host_name_counts_where_the_host_first_appears() -> None:
    parsed = parse_ansible_ini("[a]\nh1\nh2:2200\n[b]\nh1:2022\nh2:2300\n")
    assert parsed.host_vars == {"h1": {}, "h2": {"ansible_port": 2200}}


def test_yaml_inventory_gets_a_clear_error(write_inventory: WriteInventory) -> None:
    with pytest.raises(InventoryError, match="looks like a YAML inventory"):
        load(write_inventory("---\nall:\n  hosts:\n    web1:\n", name="hosts.yml"))


def test_group_vars_directories_are_named(write_inventory: WriteInventory,
                                          tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    warnings: list[str] = []
    load(write_inventory("[web]\nweb1\n"), warnings)
    assert warnings == [f"{tmp_path / 'hosts.ini'}: the group_vars/ directory beside it is "
                        "not read (Ansible reads it)"]


def test_large_ranges_stay_fast(write_inventory: WriteInventory) -> None:
    """20,000 hosts under 20 nested groups: linear work (quadratic took about a minute)."""
    import time

    lines = ["[web]", "web[00001:20000] ansible_user=u"]
    for n in range(20):
        lines += [f"[g{n}]", f"web0000{n % 9 + 1}", f"[g{n}:children]",
                  "web" if n == 0 else f"g{n - 1}", f"[g{n}:vars]", f"ansible_port={1000 + n}"]
    started = time.monotonic()
    inv = load(write_inventory("\n".join(lines) + "\n"))
    assert len(inv.group_members("g19")) == 20000
    assert inv.hosts["web00001"].port == 1000  # g0 is the deepest group holding it
    assert inv.hosts["web20000"].port == 1000
    assert time.monotonic() - started < 30


def test_a_hostbatch_inventory_does_not_import_the_ansible_parser(
        write_inventory: WriteInventory) -> None:
    """The fast path stays fast: detection is cheap, the parser is imported only when needed."""
    import subprocess
    import sys

    path = write_inventory("[host:a]\nhostname = x\n[group:g]\nhosts = a\n")
    code = ("import sys; from pathlib import Path; "
            "from hostbatch.inventory.loader import load_inventory; "
            f"load_inventory(Path({str(path)!r}), local_user='u'); "
            "print(sorted(m for m in sys.modules if 'ansible' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"
