"""The inventory as plain data: fully resolved hosts and the groups that name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hostbatch.secrets import Secret

DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds without a byte from the server before a keepalive probe (0: never), as ServerAlive.
DEFAULT_KEEPALIVE_INTERVAL = 15.0
#: Unanswered keepalive probes before the connection is given up.
DEFAULT_KEEPALIVE_COUNT_MAX = 3
#: What the controller runs on a relay (``relay_command``): the same package, in relay mode.
DEFAULT_RELAY_COMMAND = "hostbatch relay --stdio"
#: Hosts a relay runs at once (``relay_forks``), as ``-f`` on a controller.
DEFAULT_RELAY_FORKS = 64


@dataclass(frozen=True, slots=True)
class HostSpec:
    """Everything needed to reach one host; the only host type the engine ever sees.

    ``name`` is the inventory name shown in output; ``hostname`` is the address dialled.
    ``known_hosts`` is the inventory's own known_hosts file, if it set one (it is checked in
    addition to ``~/.ssh/known_hosts`` and is where ``--accept-new`` records keys).
    ``proxy_jump`` is the chain of jump hosts to go through, first hop first, each as an
    inventory host name or ``[user@]host[:port]``, as written; ``jump_chain`` holds the same
    hops fully resolved (hop N's own ``jump_chain`` is hops 1..N-1), which is what the SSH layer
    dials. ``identity_files`` are the keys to offer, in order (``identity_file`` is the first
    of them, for callers that read or set one key: setting it means that key alone);
    ``identities_only`` offers only those (no ssh-agent keys after them).
    ``sudo_password`` feeds ``--sudo``.
    ``password_env`` / ``password_cmd`` name where the password comes from (an environment
    variable, a command's output); :func:`hostbatch.prepare.prepare_hosts` turns them into
    ``password`` before connecting. A host has at most one of the three.
    ``key_passphrases`` holds ``(file, passphrase)`` for its encrypted identity files (asked
    by the parent, once per file per run).
    ``keepalive_interval`` / ``keepalive_count_max`` are OpenSSH's ``ServerAliveInterval`` /
    ``ServerAliveCountMax``: a host silent that long is probed, and given up after that many
    unanswered probes (:mod:`hostbatch.ssh.keepalive`).
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
    identity_files: tuple[str, ...] = ()
    identities_only: bool = True
    jump_chain: tuple[HostSpec, ...] = ()
    keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL
    keepalive_count_max: int = DEFAULT_KEEPALIVE_COUNT_MAX
    via: tuple[str, ...] = ()
    relays: tuple[HostSpec, ...] = ()
    relay_command: str = DEFAULT_RELAY_COMMAND
    relay_forks: int = DEFAULT_RELAY_FORKS
    #: On a relay: forward the controller's ssh-agent over its connection (``forward_agent``).
    forward_agent: bool = False

    def __post_init__(self) -> None:
        # Keep the one-key and the many-keys views in step. An identity_file that is not the
        # first of identity_files means "this key" (dataclasses.replace(spec, identity_file=K)).
        if self.identity_file and self.identity_files[:1] != (self.identity_file,):
            object.__setattr__(self, "identity_files", (self.identity_file,))
        elif self.identity_files and not self.identity_file:
            object.__setattr__(self, "identity_file", self.identity_files[0])


@dataclass(frozen=True, slots=True)
class Group:
    """A named group: its direct hosts and its child groups, in file order."""

    name: str
    hosts: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    #: The group's ``via`` (relays for its hosts, ``()``: direct), or None when it sets none.
    via: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Inventory:
    """Hosts and groups in file order; ``path`` is where they were read from.

    ``defaults`` and ``sections`` keep the typed values of ``[defaults]`` and of each
    ``[host:NAME]`` as written (only the keys present), so settings can be resolved again with
    more layers (command line, ssh_config) and each value's source can be shown.
    ``confirm_over`` is ``[defaults] confirm_over``: ask before running on more hosts.
    """

    path: str
    hosts: dict[str, HostSpec] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    local_user: str = "root"
    confirm_over: int | None = None

    def group_members(self, name: str) -> list[str]:
        """All host names in group ``name`` and its descendants, each once, in inventory order.

        The implicit group ``all`` holds every host unless the file defines its own ``all``.
        Cycles are rejected when the inventory is loaded, so the walk always ends.
        """
        return self.members_of([name])

    def members_of(self, names: list[str]) -> list[str]:
        """:meth:`group_members` of several groups at once, in one walk (``-g 'g*'`` over
        thousands of nested groups would otherwise walk the same children again and again)."""
        if "all" in names and "all" not in self.groups:
            return list(self.hosts)
        seen: set[str] = set()
        stack = list(names)
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
