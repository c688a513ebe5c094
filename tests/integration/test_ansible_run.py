"""batch_run end to end through an Ansible INI inventory, against the main session fleet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import (
    MAIN_NAMES,
    TEST_USER,
    Cli,
    assert_no_traceback,
    host_lines,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration


def ansible_inventory(path: Path, fleet: Fleet) -> Path:
    """The main fleet as Ansible would have it: a range, children, vars at every level."""
    web = [fleet.host(name) for name in ("web01", "web02", "web03")]
    db = fleet.host("db01")
    lines = [
        "# written for Ansible; read by hostbatch as is",
        "[web]",
        *(f"{h.name} ansible_host={h.address}" for h in web),
        "",
        "[db]",
        f"db01:{db.port} ansible_host={db.address}  # port in the host name",
        "",
        "[servers:children]",
        "web",
        "db",
        "",
        "[web:vars]",
        f"ansible_port={fleet.port}",
        "",
        "[all:vars]",
        "ansible_user=nobody-would-work",
        f"ansible_ssh_private_key_file={fleet.client_key}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={fleet.known_hosts}'",
        "ansible_python_interpreter=/usr/bin/python3",
        "",
        "[servers:vars]",
        f"ansible_user={TEST_USER}",
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def test_batch_run_through_an_ansible_inventory(cli: Cli, main_fleet: Fleet,
                                                tmp_path: Path) -> None:
    inventory = ansible_inventory(tmp_path / "inventory.ini", main_fleet)
    # The server address of the connection: proves each host was reached at its ansible_host.
    result = cli.run("-i", inventory, "-g", "servers", "-cmd",
                     "echo $(whoami)@$(echo $SSH_CONNECTION | cut -d' ' -f3)")
    assert_no_traceback(result)
    assert result.returncode == 0, result
    lines = host_lines(result.stdout, MAIN_NAMES)
    for name in MAIN_NAMES:
        assert lines[name] == [f"{TEST_USER}@{main_fleet.host(name).address}"], result
    warnings = [line for line in result.stderr.splitlines() if "not supported" in line]
    assert len(warnings) == 1 and "ansible_python_interpreter" in warnings[0], result.stderr

    listed = cli.run("-i", inventory, "-g", "web", "--list")
    assert listed.stdout.split() == ["web01", "web02", "web03"], listed
    forced = cli.run("-i", inventory, "--inventory-format", "hostbatch", "-g", "web", "--list")
    assert forced.returncode == 2 and "cannot parse" in forced.stderr, forced
