"""``hostbatch inventory convert``: Ansible INI -> hostbatch INI that loads back the same."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main
from hostbatch.inventory.convert import UNSET_USER, to_hostbatch_ini
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import Inventory

from .conftest import WriteInventory

ANSIBLE = """
bastion ansible_host=127.192.2.1 ansible_user=jump

[web]
web[01:03].example.com ansible_port=2222
web-legacy:2200 ansible_host=127.192.2.9 ansible_user=root ansible_password='p%w#;d'

[db]
db[a:b] ansible_ssh_private_key_file=/keys/db ansible_timeout=4.5

[prod:children]
web
db

[prod:vars]
ansible_user=deploy

[all:vars]
ansible_python_interpreter=/usr/bin/python3
"""

SHARED = """
[a]
h1 ansible_user=ops ansible_port=2200
h2 ansible_user=ops ansible_port=2200
[b:children]
a
"""

RELAYED = """
[relays]
relay1 ansible_host=127.0.0.50
[dc1]
web1 ansible_host=127.0.0.51
web2 ansible_host=127.0.0.52
[dc1:vars]
hostbatch_via=relay1
[relays:vars]
hostbatch_forward_agent=yes
hostbatch_relay_forks=16
"""


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={"HOME": str(cwd)}, stdout_isatty=False,
                      stderr_isatty=False)
    status = hostbatch_main(args, env)
    return status, out.getvalue().decode(), err.getvalue().decode()


def same(a: Inventory, b: Inventory) -> None:
    assert list(a.hosts) == list(b.hosts)
    for name in a.hosts:
        assert a.hosts[name] == b.hosts[name], name
    assert a.groups == b.groups


@pytest.mark.parametrize("text", [ANSIBLE, SHARED, RELAYED])
def test_round_trip(text: str, write_inventory: WriteInventory, tmp_path: Path) -> None:
    source = load_inventory(write_inventory(text, name="ansible.ini"), local_user="me")
    converted = tmp_path / "converted.ini"
    converted.write_text(to_hostbatch_ini(source, source="ansible.ini"))
    converted.chmod(0o600)  # it holds passwords
    same(source, load_inventory(converted, local_user="me", inventory_format="hostbatch"))


def test_shared_values_go_to_defaults_and_the_local_user_stays_unset(
        write_inventory: WriteInventory) -> None:
    text = to_hostbatch_ini(load_inventory(write_inventory(SHARED), local_user=UNSET_USER))
    assert "[defaults]\nport = 2200\nuser = ops\n" in text
    assert "identities_only" not in text  # the built-in value is left out, like the port
    assert "[host:" not in text
    assert "[group:a]\nhosts = h1, h2\n" in text and "[group:b]\nchildren = a\n" in text
    unset = to_hostbatch_ini(load_inventory(write_inventory("[g]\nh\n"), local_user=UNSET_USER))
    assert "user" not in unset and UNSET_USER not in unset


def test_relay_settings_are_written_only_where_they_differ(
        write_inventory: WriteInventory) -> None:
    text = to_hostbatch_ini(load_inventory(write_inventory(RELAYED), local_user=UNSET_USER))
    assert "[host:relay1]\nhostname = 127.0.0.50\nrelay_forks = 16\nforward_agent = yes\n" in text
    assert "[host:web1]\nhostname = 127.0.0.51\nvia = relay1\n\n" in text
    for built_in in ("keepalive", "relay_command", "forward_agent = no", "relay_forks = 64"):
        assert built_in not in text


def test_cli_writes_stdout_and_private_file(write_inventory: WriteInventory,
                                            tmp_path: Path) -> None:
    source = write_inventory(ANSIBLE, name="ansible.ini")
    status, out, err = run_cli(["inventory", "convert", str(source)], tmp_path)
    assert status == 0, err
    assert "password = p%w#;d" in out
    assert "ansible_python_interpreter" in err and "p%w#;d" not in err
    target = tmp_path / "out" / "hosts.ini"
    target.parent.mkdir()
    status, out, err = run_cli(["inventory", "convert", str(source), "-o", str(target)],
                               tmp_path)
    assert (status, out) == (0, ""), err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["hosts.ini"]  # no temporary left
    same(load_inventory(source, local_user="x"), load_inventory(target, local_user="x"))
    plain = write_inventory(SHARED, name="plain.ini")
    status, _, err = run_cli(["inventory", "convert", str(plain), "-o", str(target)], tmp_path)
    assert status == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_values_the_hostbatch_format_refuses_stop_the_conversion(
        write_inventory: WriteInventory, tmp_path: Path) -> None:
    source = write_inventory("[g]\nh ansible_user='two words'\n", name="bad.ini")
    status, out, err = run_cli(["inventory", "convert", str(source)], tmp_path)
    assert (status, out) == (2, "")
    assert "would not load: [host:h] user: invalid user 'two words'" in err
    status, _, err = run_cli(["inventory", "nope"], tmp_path)
    assert status == 2 and "unknown subcommand 'nope'" in err


def test_numbered_runs_become_ranges() -> None:
    from hostbatch.inventory.convert import compress
    from hostbatch.inventory.ranges import expand

    names = ["web01", "web02", "web03", "db", "n8", "n9", "n10", "n11", "x1", "x2",
             "r1-a", "r2-a", "r3-a", "web05", "web04", "web06"]
    compressed = compress(names)
    assert compressed == ["web[01-03]", "db", "n[8-11]", "x1", "x2", "r[1-3]-a", "web05",
                          "web04", "web06"]
    assert [n for item in compressed for n in expand(item)] == names


def test_convert_fixes_a_readable_file_with_a_warning(write_inventory: WriteInventory,
                                                      tmp_path: Path) -> None:
    """Other commands refuse a readable file with passwords; convert, the way to fix it,
    only warns."""
    source = write_inventory(ANSIBLE, name="ansible.ini", mode=0o644)
    target = tmp_path / "fixed.ini"
    status, _, err = run_cli(["inventory", "convert", str(source), "-o", str(target)], tmp_path)
    assert status == 0, err
    assert "chmod 600" in err and "p%w#;d" not in err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
