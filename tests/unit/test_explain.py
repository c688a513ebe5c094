"""``hostbatch inventory explain`` and ``-F``/``-l`` in-process: no network, nothing connects."""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from hostbatch.cli import execute as cli_execute
from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main, run_main
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import HostSpec

from .conftest import WriteInventory

INVENTORY = """
[defaults]
user = deploy
connect_timeout = 8

[host:bastion]
hostname = 127.192.2.1
password = pw%#;secret

[host:web1]
hostname = 127.100.0.1
proxy_jump = bastion, admin@gw2:2222

[host:alias]
"""
ROW = re.compile(r"^(?P<key>\S+)\s+(?P<value>.*?)  \((?P<source>[^()]*)\)$")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return home


def run(home: Path, *argv: str | Path,
        main: Callable[[list[str], Environment], int] = hostbatch_main) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={"HOME": str(home)},
                      stdout_isatty=False, stderr_isatty=False)
    status = main([str(a) for a in argv], env)
    return int(status), out.getvalue().decode(), err.getvalue().decode()


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in stdout.splitlines():
        match = ROW.match(line)
        assert match, line
        found[match["key"]] = (match["value"], match["source"])
    return found


def test_explain_shows_values_sources_jump_chain_and_hides_passwords(
        home: Path, write_inventory: WriteInventory) -> None:
    inventory = write_inventory(INVENTORY)
    (home / ".ssh" / "config").write_text("Host gw2\n    HostName 127.198.100.7\n"
                                          "Host *\n    Port 2200\n")
    status, out, err = run(home, "inventory", "explain", "-i", inventory, "web1")
    assert status == 0, err
    table = rows(out)
    assert table["address"] == ("127.100.0.1", "host section")
    assert table["port"] == ("2200", "ssh_config")
    assert table["user"] == ("deploy", "defaults")
    assert table["connect_timeout"] == ("8s", "defaults")
    assert table["jump"] == ("bastion (deploy@127.192.2.1:2200) -> gw2 (admin@127.198.100.7:2222)",
                             "host section")
    assert table["jump1.auth"] == ("password", "host section")
    assert table["jump2.port"] == ("2222", "proxy_jump of web1")
    assert table["jump2.address"] == ("127.198.100.7", "ssh_config")
    assert table["ssh_config"] == (str(home / ".ssh" / "config"), "default")
    assert "pw%#;secret" not in out + err


def test_explain_command_line_layer_and_auth_order(home: Path,
                                                   write_inventory: WriteInventory) -> None:
    inventory = write_inventory(INVENTORY)
    status, out, _ = run(home, "inventory", "explain", "-i", inventory, "-F", "none",
                         "-l", "me", "--connect-timeout", "3", "alias")
    table = rows(out)
    assert status == 0
    assert table["user"] == ("me", "command line")
    assert table["connect_timeout"] == ("3s", "command line")
    assert table["address"] == ("alias", "built-in")
    assert table["auth"] == ("the ssh-agent's keys, ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, "
                             "~/.ssh/id_rsa", "built-in")
    assert table["jump"] == ("none (direct)", "built-in")


@pytest.mark.parametrize(("argv", "message"), [
    (["inventory", "explain", "nosuch"], "not in"),
    (["inventory", "explain", "-F", "/nonexistent/config", "web1"], "ssh_config file"),
    (["inventory", "frobnicate"], "unknown subcommand"),
    (["inventory"], "usage"),
])
def test_explain_errors_are_one_line_exit_2(home: Path, write_inventory: WriteInventory,
                                            argv: list[str], message: str) -> None:
    inventory = write_inventory(INVENTORY)
    status, _, err = run(home, *argv, "-i", inventory) if argv != ["inventory"] else run(
        home, *argv)
    assert status == ExitStatus.USAGE
    assert message in err
    assert "Traceback" not in err


def test_run_applies_ssh_config_and_minus_l(home: Path, write_inventory: WriteInventory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[HostSpec] = []

    def fake_execute(hosts: list[HostSpec], action: object, args: argparse.Namespace,
                     *rest: object) -> int:
        seen.extend(hosts)
        return ExitStatus.OK

    monkeypatch.setattr(cli_execute, "execute", fake_execute)
    inventory = write_inventory(INVENTORY)
    (home / ".ssh" / "config").write_text("Host alias\n    HostName 127.203.113.5\n"
                                          "    IdentityFile ~/.ssh/k1\n    IdentityFile /k2\n")
    status, _, err = run(home, "-i", inventory, "-h", "alias,web1", "-l", "ops", "--no-stdin",
                         "-cmd", "true",
                         main=run_main)
    assert status == 0, err
    by_name = {spec.name: spec for spec in seen}
    alias, web1 = by_name["alias"], by_name["web1"]
    assert (alias.hostname, alias.user) == ("127.203.113.5", "ops")
    assert alias.identity_files == (f"{home}/.ssh/k1", "/k2")
    assert [hop.user for hop in web1.jump_chain] == ["deploy", "admin"]
    seen.clear()
    status, _, err = run(home, "-i", inventory, "-h", "alias", "-F", home / "missing",
                         "--no-stdin", "-cmd",
                         "true", main=run_main)
    assert status == ExitStatus.USAGE and "ssh_config file" in err and not seen


def test_explain_an_ansible_inventory_host_with_a_jump(home: Path,
                                                       write_inventory: WriteInventory) -> None:
    jump = "ansible_ssh_common_args='-o ProxyJump=ops@bastion:2222'"
    inventory = write_inventory(f"""
        [web]
        web1 ansible_host=127.100.0.5 ansible_user=deploy {jump}
        """, name="ansible.ini")
    status, out, err = run(home, "inventory", "explain", "-i", inventory, "web1")
    assert status == 0, err
    table = rows(out)
    assert table["address"] == ("127.100.0.5", "host section")
    assert table["jump"] == ("bastion (ops@bastion:2222)", "host section")
    assert table["jump1.user"] == ("ops", "proxy_jump of web1")
