"""``-H``: hosts that are in no inventory, reached with nothing but ``~/.ssh/config`` (as
``pssh -H`` and ``clush -w``), or on top of an inventory's ``[defaults]``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import (
    TEST_USER,
    Cli,
    host_lines,
    write_inventory,
)
from tests.integration.test_keyscan import KeyscanCli
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration


def _ssh_config(cli: Cli, fleet: Fleet, names: list[str]) -> None:
    """``~/.ssh/config`` in the run's HOME naming each host's address, port, key and user."""
    ssh = cli.home / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    blocks = [f"Host {name}\n    HostName {fleet.host(name).address}\n"
              f"    Port {fleet.host(name).port}\n" for name in names]
    blocks.append(f"Host *\n    User {TEST_USER}\n    IdentityFile {fleet.client_key}\n"
                  f"    UserKnownHostsFile {fleet.known_hosts}\n")
    (ssh / "config").write_text("".join(blocks))


def test_minus_capital_h_runs_with_only_an_ssh_config(cli: Cli, main_fleet: Fleet) -> None:
    _ssh_config(cli, main_fleet, ["web01", "web02"])
    assert not (cli.cwd / "hosts.ini").exists()
    result = cli.run("-H", "web[01-02]", "-cmd", "echo up as $(id -un)")
    assert result.returncode == 0, result
    assert host_lines(result.stdout, ["web01", "web02"]) == {
        "web01": [f"up as {TEST_USER}"], "web02": [f"up as {TEST_USER}"]}


def test_user_and_port_written_in_minus_capital_h_win(cli: Cli, main_fleet: Fleet) -> None:
    _ssh_config(cli, main_fleet, ["web03"])
    (cli.home / ".ssh" / "config").write_text(
        (cli.home / ".ssh" / "config").read_text().replace(
            f"Port {main_fleet.host('web03').port}", "Port 1"))
    port = main_fleet.host("web03").port
    result = cli.run("-H", f"root@web03:{port}", "-cmd", "id -un")
    assert result.returncode == 0, result
    assert host_lines(result.stdout, ["web03"]) == {"web03": ["root"]}


def test_minus_capital_h_beside_an_inventory_takes_its_defaults(
        cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    host = main_fleet.host("db01")
    inventory = write_inventory(tmp_path / "hosts.ini", {"web01": {
        "hostname": main_fleet.host("web01").address, "port": str(host.port)}},
        defaults={"user": TEST_USER, "identity_file": str(main_fleet.client_key),
                  "known_hosts": str(main_fleet.known_hosts), "port": str(host.port)})
    result = cli.run("-i", inventory, "-h", "web01", "-H", host.address, "-cmd", "echo hi")
    assert result.returncode == 0, result
    assert host_lines(result.stdout, ["web01", host.address]) == {
        "web01": ["hi"], host.address: ["hi"]}


def test_batch_scp_and_keyscan_take_minus_capital_h(cli: Cli, main_fleet: Fleet,
                                                    tmp_path: Path) -> None:
    _ssh_config(cli, main_fleet, ["web02"])
    scp = Cli(cli.home, cli.cwd, command="scp")
    got = scp.run("-H", "web02", ":/etc/hostname", tmp_path / "out")  # scp's own shape
    assert got.returncode == 0, got
    assert (tmp_path / "out" / "web02" / "hostname").read_text()
    scan = KeyscanCli(cli).run("-H", "web02")
    assert scan.returncode == 0, scan
    assert "known" in scan.stdout and "web02" in scan.stdout, scan
