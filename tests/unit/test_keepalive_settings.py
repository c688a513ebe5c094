"""Keepalive settings (``--keepalive``/``--keepalive-count``, ``keepalive_interval`` /
``keepalive_count_max``, ssh_config ``ServerAlive*``): validated like every other key and
layered in the usual order, jump hosts included."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.loader import load_inventory
from hostbatch.inventory.model import (
    DEFAULT_KEEPALIVE_COUNT_MAX,
    DEFAULT_KEEPALIVE_INTERVAL,
    HostSpec,
)
from hostbatch.prepare import HostOverrides, prepare_hosts

from .conftest import WriteInventory

SSH_CONFIG = "Host web\n    ServerAliveInterval 40\n    ServerAliveCountMax 5\n"


def _prepared(tmp_path: Path, write_inventory: WriteInventory, text: str,
              overrides: HostOverrides | None = None, ssh_config: str = "") -> HostSpec:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    if ssh_config:
        (home / ".ssh" / "config").write_text(ssh_config)
    inventory = load_inventory(write_inventory(text), local_user="me")
    (spec,) = prepare_hosts(inventory, [inventory.hosts["web"]], overrides or HostOverrides(),
                            {"HOME": str(home)})
    return spec


@pytest.mark.parametrize(("text", "overrides", "ssh_config", "expected"), [
    ("[host:web]\n", HostOverrides(), "", (DEFAULT_KEEPALIVE_INTERVAL,
                                           DEFAULT_KEEPALIVE_COUNT_MAX)),
    ("[host:web]\n", HostOverrides(), SSH_CONFIG, (40.0, 5)),
    ("[defaults]\nkeepalive_interval = 20\n[host:web]\n", HostOverrides(), SSH_CONFIG,
     (20.0, 5)),
    ("[defaults]\nkeepalive_interval = 20\n[host:web]\nkeepalive_interval = 0\n"
     "keepalive_count_max = 7\n", HostOverrides(), SSH_CONFIG, (0.0, 7)),
    ("[host:web]\nkeepalive_interval = 9\n",
     HostOverrides(keepalive_interval=2.0, keepalive_count_max=1), SSH_CONFIG, (2.0, 1)),
], ids=["built-in", "ssh_config", "defaults-over-ssh_config", "host-over-defaults",
        "command-line"])
def test_keepalive_precedence(tmp_path: Path, write_inventory: WriteInventory, text: str,
                              overrides: HostOverrides, ssh_config: str,
                              expected: tuple[float, int]) -> None:
    spec = _prepared(tmp_path, write_inventory, text, overrides, ssh_config)
    assert (spec.keepalive_interval, spec.keepalive_count_max) == expected


def test_the_command_line_keepalive_reaches_jump_hosts(tmp_path: Path,
                                                       write_inventory: WriteInventory) -> None:
    text = "[host:bastion]\nhostname = 127.0.0.5\n[host:web]\nproxy_jump = bastion\n"
    for overrides in (HostOverrides(keepalive_interval=3.0),
                      HostOverrides(keepalive_interval=3.0, user="ops")):
        spec = _prepared(tmp_path, write_inventory, text, overrides)
        assert spec.keepalive_interval == 3.0
        assert [hop.keepalive_interval for hop in spec.jump_chain] == [3.0]


@pytest.mark.parametrize(("line", "message"), [
    ("keepalive_interval = soon", "not a number of seconds"),
    ("keepalive_interval = -1", r"between 0 \(off\) and 86400"),
    ("keepalive_count_max = 0", "at least 1"),
    ("keepalive_count_max = x", "not a whole number"),
])
def test_bad_keepalive_keys_are_one_line_errors(write_inventory: WriteInventory, line: str,
                                                message: str) -> None:
    with pytest.raises(InventoryError, match=message) as caught:
        load_inventory(write_inventory(f"[host:web]\n{line}\n"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("config", "message"), [
    ("Host web\n    ServerAliveInterval never\n", "is not a number"),
    ("Host web\n    ServerAliveCountMax 0\n", "must be at least 1"),
])
def test_bad_server_alive_in_ssh_config_is_a_usage_error(
        tmp_path: Path, write_inventory: WriteInventory, config: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _prepared(tmp_path, write_inventory, "[host:web]\n", ssh_config=config)
