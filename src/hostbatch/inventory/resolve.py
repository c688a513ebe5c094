"""Effective per-host settings, computed in one documented order, with where each came from.

Order, highest first: command line > ``[host:NAME]`` > ``[defaults]`` > ssh_config > the
user's config file (:mod:`hostbatch.userconfig`) > built-in.
The first layer that sets a key wins for that key, so a value and its source are decided in
one place (:func:`merge_layers`), for the hosts that run and for ``hostbatch inventory
explain`` alike. Jump hosts (``proxy_jump``) are resolved by the same rules into
``HostSpec.jump_chain``.

Pure data in, pure data out: the ssh_config layer is a lookup function handed in by the
caller (:func:`hostbatch.prepare.ssh_config_lookup`, made only when an ssh_config file is in
use), so nothing here reads files or imports the SSH layer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hostbatch.errors import UsageError, clip, excerpt
from hostbatch.inventory.model import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_COUNT_MAX,
    DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_RELAY_COMMAND,
    DEFAULT_RELAY_FORKS,
    Group,
    HostSpec,
    Inventory,
)

COMMAND_LINE = "command line"
HOST_SECTION = "host section"
DEFAULTS = "defaults"
SSH_CONFIG = "ssh_config"
CONFIG_FILE = "config file"
BUILT_IN = "built-in"
#: Layers in precedence order, highest first.
LAYER_ORDER = (COMMAND_LINE, HOST_SECTION, DEFAULTS, SSH_CONFIG, CONFIG_FILE, BUILT_IN)

#: A function from a host name to the settings ssh_config gives it (HostSpec keys, typed).
SshLookup = Callable[[str], Mapping[str, Any]]

_FIELDS = frozenset(f.name for f in dataclasses.fields(HostSpec)) - {"name", "jump_chain",
                                                                      "relays"}
#: Where a password comes from; a host has at most one, so a section's replaces the defaults'.
PASSWORD_KEYS = ("password", "password_env", "password_cmd")
_HOP = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]\s]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Resolved:
    """A host's effective settings (``spec``), the layer each came from (``sources``), and its
    resolved jump hosts, first hop first."""

    spec: HostSpec
    sources: Mapping[str, str]
    hops: tuple[Resolved, ...] = ()
    relays: tuple[Resolved, ...] = ()


def built_in(name: str, local_user: str) -> dict[str, Any]:
    """The built-in defaults of host ``name``: what applies when no layer sets a key."""
    return {"hostname": name, "port": DEFAULT_PORT, "user": local_user, "password": None,
            "identity_files": (), "identities_only": True,
            "connect_timeout": DEFAULT_CONNECT_TIMEOUT, "known_hosts": None, "proxy_jump": (),
            "sudo_password": None, "keepalive_interval": DEFAULT_KEEPALIVE_INTERVAL,
            "keepalive_count_max": DEFAULT_KEEPALIVE_COUNT_MAX, "via": (),
            "relay_command": DEFAULT_RELAY_COMMAND, "relay_forks": DEFAULT_RELAY_FORKS,
            "forward_agent": False}


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An inventory section's typed values in HostSpec vocabulary (``identity_file`` becomes
    the one-element ``identity_files``; keys that are no HostSpec field are dropped)."""
    layer = dict(raw)
    if "identity_file" in layer:
        layer["identity_files"] = (layer.pop("identity_file"),)
    return {key: value for key, value in layer.items() if key in _FIELDS}


def merge_layers(layers: Sequence[tuple[str, Mapping[str, Any]]]
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """Values and their sources: for each key, the first layer (highest first) that sets it."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if key not in values:
                values[key] = value
                sources[key] = source
    return values, sources


def parse_jump(text: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` as (user, host, port); a bracketed IPv6 host loses its brackets."""
    match = _HOP.match(text.strip())
    if not match:
        raise UsageError(f"invalid jump host {excerpt(text)}: expected [user@]host[:port]")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"invalid jump host {excerpt(text)}: port {clip(str(port))} is out "
                         "of range")
    return match["user"], match["host"].strip("[]"), port


def relay_list(value: str) -> tuple[str, ...]:
    """A ``via`` value as relay names, first tried first; ``none`` means direct."""
    names = tuple(item.strip() for item in value.split(",") if item.strip())
    return () if names in ((), ("none",)) else names


def group_via(groups: Mapping[str, Group]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """For each host that some group gives a ``via``: (that group's name, its ``via``).

    The first group in file order that sets ``via`` and holds the host (directly or through
    its children) wins; a host's own ``via`` wins over every group's (see :class:`Resolver`).
    """
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for group in groups.values():
        if group.via is None:
            continue
        stack, seen = [group.name], set()
        while stack:
            current = groups.get(stack.pop())
            if current is None or current.name in seen:
                continue
            seen.add(current.name)
            for host in current.hosts:
                found.setdefault(host, (group.name, group.via))
            stack.extend(current.children)
    return found


def jump_list(value: str) -> tuple[str, ...]:
    """A ``proxy_jump``/``ProxyJump`` value as hops, first first; ``none`` means no jump."""
    hops = tuple(item.strip() for item in value.split(",") if item.strip())
    if hops in ((), ("none",)):
        return ()
    for hop in hops:
        parse_jump(hop)
    return hops


class Resolver:
    """Resolves inventory hosts (and jump hosts) through every layer."""

    def __init__(self, *, defaults: Mapping[str, Any], sections: Mapping[str, Mapping[str, Any]],
                 local_user: str, command_line: Mapping[str, Any] | None = None,
                 ssh_lookup: SshLookup | None = None,
                 user_config: Mapping[str, Any] | None = None,
                 groups: Mapping[str, Group] | None = None) -> None:
        self.defaults = normalize(defaults)
        #: The user's personal defaults (HostSpec fields), just above the built-in ones.
        self.user_config = dict(user_config or {})
        self.group_via = group_via(groups or {})
        self.sections = {name: normalize(raw) for name, raw in sections.items()}
        self.local_user = local_user
        self.command_line = dict(command_line or {})
        self.ssh_lookup = ssh_lookup
        self._base: tuple[dict[str, Any], dict[str, str]] | None = None

    @classmethod
    def for_inventory(cls, inventory: Inventory, *, command_line: Mapping[str, Any] | None = None,
                      ssh_lookup: SshLookup | None = None,
                      user_config: Mapping[str, Any] | None = None) -> Resolver:
        """A resolver over ``inventory``'s own layers plus the given outer ones."""
        return cls(defaults=inventory.defaults, sections=inventory.sections,
                   local_user=inventory.local_user, command_line=command_line,
                   ssh_lookup=ssh_lookup, user_config=user_config, groups=inventory.groups)

    def resolve(self, name: str) -> Resolved:
        """Host ``name``'s effective settings, its sources and its resolved jump chain."""
        values, sources = self._merge(name, self.command_line, self._section(name))
        grouped = self.group_via.get(name)
        if (sources.get("via") == HOST_SECTION and grouped is not None
                and "via" not in self.sections.get(name, {})):
            sources["via"] = f"group {grouped[0]}"
        hops = self._hops(name, values["proxy_jump"])
        relays = self._relays(name, values["via"])
        spec = HostSpec(name=name, jump_chain=tuple(hop.spec for hop in hops),
                        relays=tuple(relay.spec for relay in relays), **values)
        return Resolved(spec, sources, hops, relays)

    def _section(self, name: str) -> Mapping[str, Any]:
        """Host ``name``'s section, with the ``via`` of its first group that sets one when
        the section sets none (so a group's ``via`` sits between the section and defaults)."""
        section = self.sections.get(name, {})
        grouped = self.group_via.get(name)
        if grouped is None or "via" in section:
            return section
        return {**section, "via": grouped[1]}

    def _relays(self, target: str, names: tuple[str, ...]) -> tuple[Resolved, ...]:
        """Resolve each relay as a host of its own, reached directly (its own ``via`` is not
        followed, and ``-l`` does not apply to it). A host is never its own relay."""
        outer = {k: v for k, v in self.command_line.items() if k not in ("user", "via")}
        resolved: list[Resolved] = []
        for relay in names:
            if relay == target:
                return ()  # a relay selected as a host is reached directly
            values, sources = self._merge(relay, outer, self.sections.get(relay, {}))
            values["via"] = ()
            hops = self._hops(relay, values["proxy_jump"])
            spec = HostSpec(name=relay, jump_chain=tuple(hop.spec for hop in hops), **values)
            resolved.append(Resolved(spec, sources, hops))
        return tuple(resolved)

    def _merge(self, name: str, command_line: Mapping[str, Any],
               section: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        if any(key in section for key in PASSWORD_KEYS):
            section = {**dict.fromkeys(PASSWORD_KEYS), **section}  # masks the defaults' source
        if self.ssh_lookup is not None:
            return merge_layers([(COMMAND_LINE, command_line), (HOST_SECTION, section),
                                 (DEFAULTS, self.defaults), (SSH_CONFIG, self.ssh_lookup(name)),
                                 (CONFIG_FILE, self.user_config),
                                 (BUILT_IN, built_in(name, self.local_user))])
        # Without ssh_config the two lower layers are the same for every host: merge them
        # once (the same order, as a precomputed base), so 500 hosts cost no more than before.
        if self._base is None:
            self._base = merge_layers([(DEFAULTS, self.defaults),
                                       (CONFIG_FILE, self.user_config),
                                       (BUILT_IN, built_in("", self.local_user))])
        base_values, base_sources = self._base
        values = {**base_values, **section, **command_line}
        sources = {**base_sources, **dict.fromkeys(section, HOST_SECTION),
                   **dict.fromkeys(command_line, COMMAND_LINE)}
        if sources["hostname"] == BUILT_IN:
            values["hostname"] = name
        return values, sources

    def _hops(self, target: str, chain: tuple[str, ...]) -> tuple[Resolved, ...]:
        """Resolve each hop as a host of its own; hop N is reached through hops 1..N-1.

        A hop's ``user@`` and ``:port`` win over everything else; ``-l`` does not apply to
        jump hosts (as with ssh), ``--connect-timeout`` does. A hop's own ``proxy_jump`` is not
        followed: the target's chain is the whole path.
        """
        resolved: list[Resolved] = []
        outer = {k: v for k, v in self.command_line.items() if k != "user"}
        for hop in chain:
            user, host, port = parse_jump(hop)
            if host == target:
                break  # a host is never its own jump host (think [defaults] proxy_jump)
            given = {key: value for key, value in (("user", user), ("port", port))
                     if value is not None}
            values, sources = self._merge(host, {**outer, **given},
                                          self.sections.get(host, {}))
            for key in given:
                sources[key] = f"proxy_jump of {target}"
            if sources.get("hostname") == BUILT_IN:  # an address written in proxy_jump
                sources["hostname"] = f"proxy_jump of {target}"
            values["proxy_jump"] = ()
            spec = HostSpec(name=host, jump_chain=tuple(r.spec for r in resolved), **values)
            resolved.append(Resolved(spec, sources))
        return tuple(resolved)
