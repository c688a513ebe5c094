"""Hosts given on the command line with ``-H`` (pssh's flag), not in any inventory.

``-H 'web[01-03],root@db1:2222'``: a comma list of ``[user@]host[:port]``, ranges allowed.
Each becomes a host named after its ``host`` part (what an ssh_config ``Host`` block is
matched against), with the written user and port as its own section: above the inventory's
``[defaults]`` and ssh_config, below the command line (``-l``). A name that is an inventory
host is that host, with the written user and port on top of its own section. Without any
inventory, an empty one stands in, so ``batch_run -H web01 uptime`` works with nothing but
``~/.ssh/config``, as ``pssh -H`` and ``clush -w`` do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from hostbatch.errors import UsageError, excerpt
from hostbatch.inventory.model import Inventory
from hostbatch.inventory.ranges import RangeError, expand, is_range, split_list
from hostbatch.inventory.resolve import Resolver, parse_jump

#: What an inventory stands for when there is none (only ``-H`` hosts).
NO_INVENTORY = "(no inventory: -H hosts only)"


def adhoc_sections(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``-H`` values as host sections by name, in the order given (each name once)."""
    sections: dict[str, dict[str, Any]] = {}
    for value in items:
        for item in split_list(value):
            for text in _expanded(item):
                user, host, port = _parse(text)
                # No hostname: like an inventory host without one, the name is dialled unless
                # ssh_config's HostName says otherwise.
                section: dict[str, Any] = {}
                if user is not None:
                    section["user"] = user
                if port is not None:
                    section["port"] = port
                if sections.get(host, section) != section:
                    raise UsageError(f"-H names {excerpt(host)} twice with different users or "
                                     "ports: give each host once")
                sections[host] = section
    return sections


def _expanded(item: str) -> list[str]:
    if not is_range(item):
        return [item]
    try:
        return expand(item)
    except RangeError as exc:
        raise UsageError(f"bad -H range {excerpt(item)}: {exc}") from None


def _parse(text: str) -> tuple[str | None, str, int | None]:
    try:
        return parse_jump(text)
    except UsageError:
        raise UsageError(f"-H {excerpt(text)}: expected [user@]host[:port]") from None


def with_adhoc(inventory: Inventory | None, items: Iterable[str]) -> Inventory:
    """``inventory`` (or an empty one) with the ``-H`` hosts added after its own hosts.

    Each ad-hoc host is resolved with the inventory's layers (its section on top of
    ``[defaults]``); ssh_config and the command line come later, with every other host's.
    """
    base = inventory or Inventory(path=NO_INVENTORY)
    adhoc = adhoc_sections(items)
    if not adhoc:
        return base
    sections = dict(base.sections)
    for name, section in adhoc.items():
        if name in base.hosts:
            sections[name] = {**base.sections.get(name, {}), **section}
        else:
            sections[name] = section
    grown = dataclasses.replace(base, sections=sections)
    resolver = Resolver.for_inventory(grown)
    hosts = dict(base.hosts)
    for name in adhoc:
        hosts[name] = resolver.resolve(name).spec
    return dataclasses.replace(grown, hosts=hosts)
