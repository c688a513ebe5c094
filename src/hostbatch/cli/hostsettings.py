"""The command-line and ssh_config layers of host settings, for every command that resolves
hosts (``batch_run``, ``batch_scp``, ``hostbatch inventory explain``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from hostbatch.cli.environment import Environment
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.inventory.resolve import Resolver, SshLookup, ssh_config_lookup


def command_line_layer(args: argparse.Namespace) -> dict[str, Any]:
    """Per-host values given as flags: ``-l USER`` and ``--connect-timeout S``."""
    layer: dict[str, Any] = {}
    if getattr(args, "user", None):
        layer["user"] = args.user
    if getattr(args, "connect_timeout", None) is not None:
        layer["connect_timeout"] = args.connect_timeout
    return layer


def _lookup(args: argparse.Namespace, env: Environment,
            warn: Callable[[str], None]) -> SshLookup | None:
    # paramiko.config imports invoke when installed, only for "Match exec", which hostbatch
    # never runs: the CLI process does without it (asyncio, unittest.mock: ~30 ms).
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    return ssh_config_lookup(args.ssh_config, env.home, warn)


def resolver_for(inventory: Inventory, args: argparse.Namespace, env: Environment,
                 warn: Callable[[str], None]) -> Resolver:
    """A resolver with every layer: command line, inventory, ssh_config, built-in."""
    lookup = _lookup(args, env, warn)
    return Resolver.for_inventory(inventory, command_line=command_line_layer(args),
                                  ssh_lookup=lookup)


def resolve_selected(inventory: Inventory, hosts: list[HostSpec], args: argparse.Namespace,
                     env: Environment, warn: Callable[[str], None]) -> list[HostSpec]:
    """The selected hosts with the command-line and ssh_config layers applied.

    The loader already resolved the inventory's own layers; with no ssh_config in use and
    no ``-l``, that is the answer (``--connect-timeout`` is applied by the engine), so the
    common case does no more work than before.
    """
    lookup = _lookup(args, env, warn)
    if lookup is None and not args.user:
        return hosts
    resolver = Resolver.for_inventory(inventory, command_line=command_line_layer(args),
                                      ssh_lookup=lookup)
    return [resolver.resolve(spec.name).spec for spec in hosts]
