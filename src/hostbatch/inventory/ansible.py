"""Read an Ansible INI inventory into hostbatch's :class:`Inventory` of :class:`HostSpec`.

The file is parsed with Ansible's own rules (:mod:`hostbatch.inventory.ansible_ini`); each
host's resolved variables then become a HostSpec. Connection variables hostbatch has no use
for are named in ONE warning (names only: values may be secrets), never silently dropped.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hostbatch.errors import InventoryError, UsageError, clip
from hostbatch.inventory.ansible_ini import AnsibleInventory, AnsibleSyntaxError, parse_ansible_ini
from hostbatch.inventory.model import Group, Inventory
from hostbatch.inventory.resolve import Resolver, relay_list
from hostbatch.inventory.source import read_inventory_text
from hostbatch.secrets import Secret

#: Each supported HostSpec field and the Ansible variables that set it, strongest first.
FIELD_VARIABLES: Mapping[str, tuple[str, ...]] = {
    "hostname": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "password": ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"),
    "identity_file": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "connect_timeout": ("ansible_timeout", "ansible_ssh_timeout"),
    "sudo_password": ("ansible_become_password", "ansible_become_pass"),
    "via": ("hostbatch_via",),
    "relay_command": ("hostbatch_relay_command",),
    "relay_forks": ("hostbatch_relay_forks",),
    "forward_agent": ("hostbatch_forward_agent",),
}
#: Variables read but not mapped one-to-one: ssh options (ProxyJump, UserKnownHostsFile)
#: and the connection type, which must be ssh-like.
SPECIAL_VARIABLES = ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_connection")
SSH_CONNECTIONS = frozenset({"ssh", "paramiko", "paramiko_ssh", "smart"})

_YAML_KEY = re.compile(r"^[\w.-]+:\s*(#.*)?$")
#: Directories beside an inventory that Ansible reads and hostbatch does not.
VARS_DIRECTORIES = ("group_vars", "host_vars")


def _looks_like_yaml(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return line == "---" or _YAML_KEY.match(line) is not None
    return False


def parse_file(path: Path) -> AnsibleInventory:
    """Parse the Ansible inventory at ``path``; problems raise a one-line InventoryError."""
    text = read_inventory_text(path)
    try:
        return parse_ansible_ini(text)
    except AnsibleSyntaxError as exc:
        if _looks_like_yaml(text):
            raise InventoryError("this looks like a YAML inventory; hostbatch reads INI "
                                 "inventories (Ansible's or its own)", path=str(path)) from None
        where = f"line {exc.line}: " if exc.line else ""
        raise InventoryError(f"{where}{exc} (read as an Ansible inventory)",
                             path=str(path)) from None


def ssh_options(args: str) -> dict[str, str]:
    """The ``-o Key=Value`` / ``-J hops`` options of an ``ansible_ssh_common_args`` string,
    keys lower-cased; ``-J`` is reported as ``proxyjump``. Other words are under ``""``."""
    options: dict[str, str] = {}
    other: list[str] = []
    words = shlex.split(args)
    index = 0
    while index < len(words):
        word = words[index]
        value: str | None = None
        if word in ("-o", "-J") and index + 1 < len(words):
            value, index = words[index + 1], index + 1
        elif word.startswith(("-o", "-J")) and len(word) > 2:
            value = word[2:]
        if value is None:
            other.append(word)
        elif word.startswith("-J"):
            options.setdefault("proxyjump", value)
        else:
            key, sep, setting = value.partition("=")
            if not sep:
                key, _, setting = value.partition(" ")
            options.setdefault(key.strip().lower(), setting.strip())
        index += 1
    if other:
        options[""] = " ".join(other)
    return options


def _proxy_command_hop(command: str) -> str | None:
    """``ssh -W %h:%p [-p PORT] [-l USER] [USER@]HOST`` as a ProxyJump hop, else None."""
    words = shlex.split(command)
    if len(words) < 3 or os.path.basename(words[0]) != "ssh" or "-W" not in words:
        return None
    port = user = None
    rest: list[str] = []
    index = 1
    while index < len(words):
        word = words[index]
        if word in ("-W", "-p", "-l") and index + 1 < len(words):
            if word == "-p":
                port = words[index + 1]
            elif word == "-l":
                user = words[index + 1]
            index += 2
            continue
        if word.startswith("-"):
            if word != "-q":
                return None
        else:
            rest.append(word)
        index += 1
    if len(rest) != 1:
        return None
    hop = rest[0] if user is None or "@" in rest[0] else f"{user}@{rest[0]}"
    return f"{hop}:{port}" if port else hop


def _some(names: set[str], shown: int = 8) -> str:
    """The first ``shown`` of ``names`` in order, each clipped, and how many more: a warning
    stays one short line however many variables a file sets."""
    ordered = sorted(names)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(clip(name, 40) for name in ordered[:shown]) + more


class _HostBuilder:
    """Turns one host's resolved variables into hostbatch settings, noting what it cannot use.

    The settings are typed values under the keys of a hostbatch ``[host:NAME]`` section, only
    those the variables set: each Ansible host is, in effect, a host section of its own.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unsupported: set[str] = set()
        self.playbook: set[str] = set()

    def warning(self, ignored_directories: list[str]) -> str | None:
        """One line naming every variable that was ignored (names only, never values)."""
        parts = []
        if ignored_directories:
            several = len(ignored_directories) > 1
            parts.append(f"the {' and '.join(ignored_directories)} "
                         f"{'directories' if several else 'directory'} beside it "
                         f"{'are' if several else 'is'} not read (Ansible reads "
                         f"{'them' if several else 'it'})")
        if self.unsupported:
            parts.append("Ansible variables not supported by hostbatch, ignored: "
                         + _some(self.unsupported))
        if self.playbook:
            parts.append("variables for playbooks, not used by hostbatch: "
                         + _some(self.playbook))
        return "; ".join(parts) or None

    def fail(self, host: str, variable: str, message: str) -> InventoryError:
        return InventoryError(f"{variable}: {message}", path=str(self.path), section=host)

    def settings(self, name: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field_name, names in FIELD_VARIABLES.items():
            present = [n for n in names if n in variables]
            if present:
                values[field_name] = self.convert(name, field_name, present[0],
                                                  variables[present[0]])
        for variable in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            if variable in variables:
                self.ssh_args(name, variable, str(variables[variable]), values)
        connection = variables.get("ansible_connection")
        if connection is not None and str(connection) not in SSH_CONNECTIONS:
            self.unsupported.add(f"ansible_connection={connection}")
        known = {n for names in FIELD_VARIABLES.values() for n in names} | set(SPECIAL_VARIABLES)
        for variable in variables:
            if variable not in known:
                (self.unsupported if variable.startswith("ansible_") else self.playbook).add(
                    variable)
        return values

    def convert(self, host: str, field_name: str, variable: str, value: Any) -> Any:
        if field_name in ("password", "sudo_password"):
            return Secret(str(value))
        if field_name == "port":
            try:
                port = int(value)
            except (TypeError, ValueError):
                raise self.fail(host, variable, "port is not a number") from None
            if not 1 <= port <= 65535:
                raise self.fail(host, variable, f"port {clip(str(port))} is out of range (1-65535)")
            return port
        if field_name == "via":
            return relay_list(str(value))
        if field_name == "relay_forks":
            try:
                forks = int(value)
            except (TypeError, ValueError):
                raise self.fail(host, variable, "not a whole number") from None
            if forks < 1:
                raise self.fail(host, variable, "must be at least 1")
            return forks
        if field_name == "forward_agent":
            if str(value).strip().lower() not in ("yes", "no", "true", "false"):
                raise self.fail(host, variable, "not yes or no")
            return str(value).strip().lower() in ("yes", "true")
        if field_name == "connect_timeout":
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                raise self.fail(host, variable, "not a number of seconds") from None
            if not 0 < seconds <= 86400:
                raise self.fail(host, variable, "must be between 0 and 86400 seconds")
            return seconds
        text = str(value).strip()
        if not text:
            raise self.fail(host, variable, "empty value")
        return os.path.expanduser(text) if field_name == "identity_file" else text

    def ssh_args(self, host: str, variable: str, args: str, values: dict[str, Any]) -> None:
        try:
            options = ssh_options(args)
        except ValueError as exc:
            raise self.fail(host, variable, f"cannot split: {exc}") from None
        for key, setting in options.items():
            if key == "proxyjump" and setting.lower() != "none":
                values["proxy_jump"] = tuple(h.strip() for h in setting.split(",") if h.strip())
            elif key == "proxycommand" and _proxy_command_hop(setting):
                values["proxy_jump"] = (_proxy_command_hop(setting),)
            elif key == "userknownhostsfile":
                values["known_hosts"] = os.path.expanduser(setting.split()[0])
            elif key in ("stricthostkeychecking", "serveraliveinterval", "controlmaster",
                         "controlpersist", "controlpath"):
                continue  # tuning of OpenSSH's own client, with no meaning here
            else:
                self.unsupported.add(f"{variable}({'-o ' + key if key else 'arguments'})")


def load_ansible_inventory(path: Path, *, warn: Callable[[str], None] | None = None,
                           local_user: str | None = None) -> Inventory:
    """Read the Ansible INI inventory at ``path`` into an :class:`Inventory`.

    Groups keep their direct hosts and children; ``all`` stays implicit (every host), and
    ``ungrouped`` is a group when it has hosts. Group variables are inherited as Ansible does
    (parent < child, host variables last).
    """
    parsed = parse_file(path)
    builder = _HostBuilder(path)
    sections = {name: builder.settings(name, parsed.resolved_vars(name))
                for name in parsed.host_vars}
    user = local_user or getpass.getuser()
    # The same resolution as a hostbatch inventory (host variables are the host section), so
    # jump chains resolve, and ssh_config and the command line can be layered on later.
    for name, values in sections.items():
        for relay in values.get("via", ()):
            if relay not in sections:
                raise builder.fail(name, "hostbatch_via",
                                   f"relay {relay!r} is not a host of this inventory")
    resolver = Resolver(defaults={}, sections=sections, local_user=user)
    try:
        hosts = {name: resolver.resolve(name).spec for name in sections}
    except UsageError as exc:
        raise InventoryError(str(exc), path=str(path)) from None
    groups: dict[str, Group] = {}
    for group in parsed.groups.values():
        if group.name == "all" or (group.name == "ungrouped" and not group.hosts):
            continue
        groups[group.name] = Group(group.name, tuple(group.hosts), tuple(group.children))
    message = builder.warning([f"{name}/" for name in VARS_DIRECTORIES
                               if (path.parent / name).is_dir()])
    if message and warn is not None:
        warn(f"{path}: {message}")
    return Inventory(path=str(path), hosts=hosts, groups=groups, sections=sections,
                     local_user=user)
