"""The inventory as plain data: fully resolved hosts and the groups that name them."""

from __future__ import annotations

from dataclasses import dataclass, field

from hostbatch.secrets import Secret

DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class HostSpec:
    """Everything needed to reach one host; the only host type the engine ever sees.

    ``name`` is the inventory name shown in output; ``hostname`` is the address dialled.
    ``known_hosts`` is the inventory's own known_hosts file, if it set one (it is checked in
    addition to ``~/.ssh/known_hosts`` and is where ``--accept-new`` records keys).
    ``proxy_jump`` is the chain of jump hosts to go through, first hop first, each as an
    inventory host name or ``[user@]host[:port]``. ``sudo_password`` feeds ``--sudo``.
    ``password_env`` / ``password_cmd`` name where the password comes from (an environment
    variable, a command's output); :func:`hostbatch.credentials.resolve_passwords` turns them
    into ``password`` before connecting. A host has at most one of the three.
    ``key_passphrases`` holds ``(file, passphrase)`` for its encrypted identity files (asked
    by the parent, once per file per run).
    """

    name: str
    hostname: str
    port: int = DEFAULT_PORT
    user: str = "root"
    password: Secret | None = None
    identity_file: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    known_hosts: str | None = None
    proxy_jump: tuple[str, ...] = ()
    sudo_password: Secret | None = None
    password_env: str | None = None
    password_cmd: str | None = None
    key_passphrases: tuple[tuple[str, Secret], ...] = ()


@dataclass(frozen=True, slots=True)
class Group:
    """A named group: its direct hosts and its child groups, in file order."""

    name: str
    hosts: tuple[str, ...] = ()
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    """Hosts and groups in file order; ``path`` is where they were read from.

    ``confirm_over`` is ``[defaults] confirm_over``: ask before running on more hosts.
    """

    path: str
    hosts: dict[str, HostSpec] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    confirm_over: int | None = None

    def group_members(self, name: str) -> list[str]:
        """All host names in group ``name`` and its descendants, each once, in inventory order.

        The implicit group ``all`` holds every host unless the file defines its own ``all``.
        Cycles are rejected when the inventory is loaded, so the walk always ends.
        """
        if name == "all" and "all" not in self.groups:
            return list(self.hosts)
        seen: set[str] = set()
        stack = [name]
        visited: set[str] = set()
        while stack:
            group = self.groups[stack.pop()]
            if group.name in visited:
                continue
            visited.add(group.name)
            seen.update(group.hosts)
            stack.extend(group.children)
        return [host for host in self.hosts if host in seen]

    def group_names(self) -> list[str]:
        """Every group a user may select, including the implicit ``all``."""
        names = list(self.groups)
        if "all" not in self.groups:
            names.append("all")
        return names
