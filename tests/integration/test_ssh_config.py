"""ssh_config (``~/.ssh/config`` and ``-F``) against the real main fleet, and the documented
precedence: command line > host section > defaults > ssh_config > built-in, checked both in
``hostbatch inventory explain`` and in who a real connection logs in as.

The main fleet authorizes its client key for every user, so ``whoami`` on the host tells which
layer's ``User`` won: ``hbtest`` or a second plain user, ``hbconfig`` (not root: root's shell
start-up on this machine is slow, and under load it outlasts the test's patience).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    HOSTBATCH,
    TEST_USER,
    Cli,
    ThrowawayKeys,
    silent_listener,
    write_inventory,
)
from tests.support.fleet import Fleet, ensure_test_user

pytestmark = pytest.mark.integration

OTHER = "hbconfig"


@pytest.fixture(scope="module", autouse=True)
def other_user(test_user: str) -> str:
    ensure_test_user(OTHER, "hbconfig-unused-password")
    return OTHER

ROW = re.compile(r"^(?P<key>\S+)\s+(?P<value>.*?)  \((?P<source>[^()]*)\)$")


def ssh_config(cli: Cli, text: str, name: str = "config") -> Path:
    directory = cli.home / ".ssh"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def host_block(fleet: Fleet, pattern: str, name: str, **extra: str) -> str:
    host = fleet.host(name)
    options = {"HostName": host.address, "Port": str(host.port), **extra}
    return f"Host {pattern}\n" + "".join(f"    {k} {v}\n" for k, v in options.items())


def key_options(fleet: Fleet) -> str:
    return (f"    IdentityFile {fleet.client_key}\n"
            f"    UserKnownHostsFile {fleet.known_hosts}\n")


def explain(cli: Cli, *args: str | Path) -> dict[str, tuple[str, str]]:
    proc = subprocess.run([HOSTBATCH, "inventory", "explain", *map(str, args)],
                          env=cli.env(), cwd=cli.cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        match = ROW.match(line)
        assert match, line
        rows[match["key"]] = (match["value"], match["source"])
    return rows


def whoami(cli: Cli, inventory: Path, hosts: str, *args: str) -> dict[str, str]:
    result = cli.run("-i", inventory, "-h", hosts, *args, "-cmd",
                     "echo $(whoami)@$(echo $SSH_CONNECTION | cut -d' ' -f3)")
    assert result.returncode == 0, result
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def test_an_inventory_host_without_hostname_is_an_ssh_config_alias(
        cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    ssh_config(cli, host_block(main_fleet, "myweb", "web02", User=TEST_USER)
               + key_options(main_fleet))
    inventory = write_inventory(tmp_path / "hosts.ini", {"myweb": {}})
    assert whoami(cli, inventory, "myweb") == {"myweb": f"{TEST_USER}@127.0.10.11"}
    rows = explain(cli, "-i", inventory, "myweb")
    assert rows["address"] == ("127.0.10.11", "ssh_config")
    assert rows["user"] == (TEST_USER, "ssh_config")
    assert rows["auth"] == (f"identity file {main_fleet.client_key} (or the ssh-agent's copy of "
                            "it)", "ssh_config")
    assert rows["known_hosts"][1] == "ssh_config"


def test_wildcards_and_include(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    # Host patterns: web* log in as hbtest, db* as hbconfig; the web block comes from an Include
    # (relative to ~/.ssh, with a glob), the defaults for everything from "Host *".
    ssh_config(cli, "Host web*\n    User " + TEST_USER + "\n", "conf.d/web.conf")
    ssh_config(cli, f"Include conf.d/*.conf\nHost db*\n    User {OTHER}\nHost *\n"
               + key_options(main_fleet) + f"    Port {main_fleet.port}\n")
    inventory = write_inventory(tmp_path / "hosts.ini", {
        name: {"hostname": main_fleet.host(name).address} for name in ("web01", "db01")})
    assert whoami(cli, inventory, "web01,db01") == {"web01": f"{TEST_USER}@127.0.10.10",
                                                    "db01": f"{OTHER}@127.0.10.13"}


def test_explicit_file_with_F_and_F_none(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    other = tmp_path / "other_config"
    other.write_text(host_block(main_fleet, "alias", "web03", User=TEST_USER)
                     + key_options(main_fleet))
    ssh_config(cli, "Host alias\n    HostName 127.0.23.99\n")  # what -F replaces
    inventory = write_inventory(tmp_path / "hosts.ini", {"alias": {}})
    assert whoami(cli, inventory, "alias", "-F", str(other)) == {
        "alias": f"{TEST_USER}@127.0.10.12"}
    ignored = explain(cli, "-i", inventory, "-F", "none", "alias")
    assert ignored["address"] == ("alias", "built-in")
    assert ignored["ssh_config"] == ("none", "-F")
    missing = cli.run("-i", inventory, "-h", "alias", "-F", str(tmp_path / "nope"), "-cmd", "true")
    assert missing.returncode == 2, missing
    assert missing.stderr.strip().count("\n") == 0 and "does not exist" in missing.stderr


def test_precedence_each_layer_overrides_the_next(cli: Cli, main_fleet: Fleet,
                                                   tmp_path: Path) -> None:
    web = main_fleet.host("web01")
    ssh_config(cli, f"Host web01 solo\n    HostName {web.address}\n    User {OTHER}\n"
               f"    Port {web.port}\n    ConnectTimeout 7\n" + key_options(main_fleet))
    plain = write_inventory(tmp_path / "plain.ini", {"web01": {}})
    with_defaults = write_inventory(tmp_path / "defaults.ini", {"web01": {}},
                                    defaults={"user": TEST_USER, "connect_timeout": "9"})
    with_section = write_inventory(tmp_path / "section.ini", {"web01": {"user": OTHER}},
                                   defaults={"user": TEST_USER, "connect_timeout": "9"})

    # ssh_config > built-in
    assert explain(cli, "-i", plain, "web01")["user"] == (OTHER, "ssh_config")
    assert whoami(cli, plain, "web01") == {"web01": f"{OTHER}@127.0.10.10"}
    # defaults > ssh_config
    rows = explain(cli, "-i", with_defaults, "web01")
    assert rows["user"] == (TEST_USER, "defaults")
    assert rows["connect_timeout"] == ("9s", "defaults")
    assert rows["port"] == (str(web.port), "ssh_config")
    assert rows["identities_only"] == ("yes", "built-in")
    assert whoami(cli, with_defaults, "web01") == {"web01": f"{TEST_USER}@127.0.10.10"}
    # host section > defaults
    assert explain(cli, "-i", with_section, "web01")["user"] == (OTHER, "host section")
    assert whoami(cli, with_section, "web01") == {"web01": f"{OTHER}@127.0.10.10"}
    # command line > host section
    rows = explain(cli, "-i", with_section, "-l", TEST_USER, "--connect-timeout", "4", "web01")
    assert rows["user"] == (TEST_USER, "command line")
    assert rows["connect_timeout"] == ("4s", "command line")
    assert whoami(cli, with_section, "web01", "-l", TEST_USER) == {
        "web01": f"{TEST_USER}@127.0.10.10"}


def test_identities_only(cli: Cli, main_fleet: Fleet, tmp_path: Path,
                         throwaway_keys: ThrowawayKeys, agent_factory: Any) -> None:
    agent = agent_factory()
    agent.add(main_fleet.client_key)
    wrong = throwaway_keys.agent_keys[0]
    block = host_block(main_fleet, "web01", "web01", User=TEST_USER,
                       UserKnownHostsFile=str(main_fleet.known_hosts), IdentityFile=str(wrong))
    inventory = write_inventory(tmp_path / "hosts.ini", {"web01": {}})
    ssh_config(cli, block + "    IdentitiesOnly yes\n")
    only = cli.run("-i", inventory, "-h", "web01", "--json", "-cmd", "true", env=agent.env)
    assert only.returncode == 3, only
    assert only.terminals(["web01"])["web01"]["kind"] == "auth"
    ssh_config(cli, block + "    IdentitiesOnly no\n")
    rows = explain(cli, "-i", inventory, "web01")
    assert rows["auth"] == (f"identity file {wrong} (or the ssh-agent's copy of it), the "
                            "ssh-agent's keys", "ssh_config")
    also_agent = cli.run("-i", inventory, "-h", "web01", "-cmd", "echo in", env=agent.env)
    assert also_agent.returncode == 0, also_agent
    assert also_agent.stdout == "web01: in\n"


def test_connect_timeout_from_ssh_config(cli: Cli, tmp_path: Path, main_fleet: Fleet) -> None:
    with silent_listener("127.0.23.50") as (_sock, port):
        ssh_config(cli, f"Host frozen\n    HostName 127.0.23.50\n    Port {port}\n"
                   "    ConnectTimeout 1\n" + key_options(main_fleet))
        inventory = write_inventory(tmp_path / "hosts.ini", {"frozen": {}})
        result = cli.run("-i", inventory, "-h", "frozen", "--json", "-cmd", "true", timeout=30)
    assert result.returncode == 3, result
    event = result.terminals(["frozen"])["frozen"]
    assert event["kind"] == "timeout" and "1s" in event["error"], event
    assert event["duration"] < 8, event


def test_match_exec_is_never_run(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    marker = tmp_path / "exec-ran"
    ssh_config(cli, f'Match exec "touch {marker}"\n    User {OTHER}\n'
               + host_block(main_fleet, "web01", "web01", User=TEST_USER)
               + key_options(main_fleet))
    inventory = write_inventory(tmp_path / "hosts.ini", {"web01": {}})
    result = cli.run("-i", inventory, "-h", "web01", "-cmd", "whoami")
    assert result.returncode == 0, result
    assert result.stdout == f"web01: {TEST_USER}\n"
    assert "Match exec" in result.stderr and not marker.exists()
