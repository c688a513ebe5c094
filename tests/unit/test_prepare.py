"""hostbatch.prepare: hosts finished in one function, from real inventory and ssh_config files.

The precedence order (command line > host section > defaults > ssh_config > built-in) is
checked end to end for each layer, then the fast path, then credentials and the sudo password.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.prepare import HostOverrides, prepare_hosts, settle_credentials
from hostbatch.secrets import Secret

from .conftest import Answers, WriteInventory

#: Each layer's value of ``user`` and ``connect_timeout``.
LAYERS = {"cli": ("c", 1.0), "section": ("h", 2.0), "defaults": ("d", 3.0),
          "ssh": ("s", 4.0)}



def _setup(tmp_path: Path, write_inventory: WriteInventory, layers: set[str]
           ) -> tuple[Inventory, HostOverrides, dict[str, str]]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    text = ""
    if "defaults" in layers:
        text += "[defaults]\nuser = d\nconnect_timeout = 3\n"
    text += "[host:web]\n" + ("user = h\nconnect_timeout = 2\n" if "section" in layers else "")
    if "ssh" in layers:
        (home / ".ssh" / "config").write_text("Host web\n    User s\n    ConnectTimeout 4\n")
    inventory = load_inventory(write_inventory(text), local_user="me")
    overrides = HostOverrides(user="c", connect_timeout=1.0) if "cli" in layers else \
        HostOverrides()
    return inventory, overrides, {"HOME": str(home)}


@pytest.mark.parametrize(("layers", "winner"), [
    (set(), None),
    ({"ssh"}, "ssh"),
    ({"ssh", "defaults"}, "defaults"),
    ({"ssh", "defaults", "section"}, "section"),
    ({"ssh", "defaults", "section", "cli"}, "cli"),
    ({"cli"}, "cli"),
    ({"defaults", "cli"}, "cli"),
    ({"section", "ssh"}, "section"),
])
def test_precedence_command_line_host_defaults_ssh_config_built_in(
        tmp_path: Path, write_inventory: WriteInventory, layers: set[str],
        winner: str | None) -> None:
    inventory, overrides, environ = _setup(tmp_path, write_inventory, layers)
    [spec] = prepare_hosts(inventory, [inventory.hosts["web"]], overrides, environ)
    assert (spec.user, spec.connect_timeout) == (LAYERS[winner] if winner else ("me", 10.0))


def test_minus_l_is_not_for_jump_hosts_but_connect_timeout_is(
        tmp_path: Path, write_inventory: WriteInventory) -> None:
    inventory = load_inventory(write_inventory(
        "[defaults]\nuser = d\n[host:web]\nproxy_jump = gw, u@gw2\n[host:gw]\n"), local_user="me")
    overrides = HostOverrides(user="c", connect_timeout=5.0, ssh_config="none")
    [web] = prepare_hosts(inventory, [inventory.hosts["web"]], overrides, {"HOME": "/nonexistent"})
    assert web.user == "c" and [hop.user for hop in web.jump_chain] == ["d", "u"]
    assert {spec.connect_timeout for spec in (web, *web.jump_chain)} == {5.0}
    assert web.jump_chain[1].jump_chain == (web.jump_chain[0],)


def test_fast_path_keeps_the_loaded_hosts(tmp_path: Path, write_inventory: WriteInventory) -> None:
    inventory = load_inventory(write_inventory("[host:a]\n[host:b]\nproxy_jump = a\n"))
    hosts = list(inventory.hosts.values())
    environ = {"HOME": str(tmp_path)}  # no ~/.ssh/config
    finished = prepare_hosts(inventory, hosts, HostOverrides(), environ)
    assert all(new is old for new, old in zip(finished, hosts, strict=True))
    timed = prepare_hosts(inventory, hosts, HostOverrides(connect_timeout=7.0), environ)
    assert [s.connect_timeout for s in timed] == [7.0, 7.0]
    assert timed[1].jump_chain[0].connect_timeout == 7.0
    # Hosts that already have the command-line values pass through unchanged.
    again = prepare_hosts(None, timed, HostOverrides(connect_timeout=7.0), environ)
    assert all(new is old for new, old in zip(again, timed, strict=True))


def test_without_an_inventory_the_command_line_goes_on_top_and_ssh_config_is_not_read(
        tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host *\n    Port 2200\n")
    [spec] = prepare_hosts(None, [HostSpec("web", "web", user="x")],
                           HostOverrides(user="c"), {"HOME": str(tmp_path)})
    assert (spec.user, spec.port) == ("c", 22)


def test_password_env_comes_from_the_given_environment(
        tmp_path: Path, write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_inventory("[host:web]\npassword_env = HB_PREPARE_PW\n")
    inventory = load_inventory(path)
    monkeypatch.setenv("HB_PREPARE_PW", "from os.environ")
    environ = {"HOME": str(tmp_path), "HB_PREPARE_PW": "injected"}
    [spec] = prepare_hosts(inventory, list(inventory.hosts.values()), environ=environ)
    assert spec.password == Secret("injected") and spec.password_env is None
    with pytest.raises(InventoryError, match="HB_PREPARE_PW") as caught:
        prepare_hosts(inventory, list(inventory.hosts.values()), environ={"HOME": str(tmp_path)})
    assert caught.value.path == str(path)


def test_ask_pass_then_sudo_password_each_asked_once(tmp_path: Path,
                                                    write_inventory: WriteInventory) -> None:
    inventory = load_inventory(write_inventory(
        "[host:a]\nproxy_jump = gw\n[host:b]\npassword = pb\nsudo_password = sb\n[host:gw]\n"))
    hosts = [inventory.hosts["a"], inventory.hosts["b"]]
    prompt = Answers("pw", "sudo")
    a, b = prepare_hosts(inventory, hosts, HostOverrides(ask_pass=True, ask_sudo_pass=True),
                         {"HOME": str(tmp_path)}, prompt=prompt)
    assert prompt.questions == ["Password for hosts without one: ", "sudo password: "]
    assert (a.password, a.sudo_password) == (Secret("pw"), Secret("sudo"))
    assert (b.password, b.sudo_password) == (Secret("pb"), Secret("sb"))
    assert a.jump_chain[0].password == Secret("pw") and a.jump_chain[0].sudo_password is None


@pytest.mark.parametrize(("prompt", "message"), [
    (None, "needs a terminal"),
    (Answers(), "no sudo password given"),
])
def test_ask_sudo_pass_without_terminal_or_answer_is_a_usage_error(
        prompt: Answers | None, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        prepare_hosts(None, [HostSpec("a", "a")], HostOverrides(ask_sudo_pass=True), {},
                      prompt=prompt)


def test_nothing_is_asked_when_nothing_is_missing() -> None:
    prompt = Answers()
    spec = HostSpec("a", "a", password=Secret("p"), sudo_password=Secret("s"))
    assert prepare_hosts(None, [spec], HostOverrides(ask_pass=True, ask_sudo_pass=True), {},
                         prompt=prompt) == [spec]
    assert prompt.questions == []


def _imports_after(code: str) -> str:
    script = (f"import sys\n{code}\n"
              "print('paramiko' in sys.modules, sys.modules.get('invoke', 'absent') is None)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout.strip()


def test_paramiko_reaches_the_parent_only_with_an_ssh_config(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[host:web]\nidentity_file = /no/such/key\n")
    prepare = ("from pathlib import Path\n"
               "from hostbatch.inventory.loader import load_inventory\n"
               "from hostbatch.prepare import prepare_hosts\n"
               f"inv = load_inventory(Path({str(inventory)!r}))\n"
               "prepare_hosts(inv, list(inv.hosts.values()), "
               f"environ={{'HOME': {str(tmp_path)!r}}}, warn=print)")
    assert _imports_after(prepare) == "False False"
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host *\n    Port 2200\n")
    # paramiko parses the file; invoke was hidden only while paramiko was imported.
    assert _imports_after(prepare) == "True False"


def test_the_sudo_password_may_have_a_prompt_of_its_own() -> None:
    sudo_prompt = Answers("sudo")
    [spec] = settle_credentials([HostSpec("a", "a")], HostOverrides(ask_sudo_pass=True), {},
                                prompt=None, sudo_prompt=sudo_prompt)
    assert spec.sudo_password == Secret("sudo") and sudo_prompt.questions == ["sudo password: "]
