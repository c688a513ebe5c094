"""Parse an Ansible INI inventory the way Ansible's ``ini`` inventory plugin does.

This module only reads the file into Ansible's own model (groups with hosts, children and
variables; hosts with variables) and resolves each host's variables with Ansible's precedence;
:mod:`hostbatch.inventory.ansible` maps the result onto hostbatch's :class:`HostSpec`.

Followed from ansible-core's ``plugins/inventory/ini.py``: sections ``[group]``,
``[group:children]`` and ``[group:vars]``; host lines split like a shell (``shlex`` with
comments, so quotes group words and ``#`` after whitespace starts a comment); values read with
``ast.literal_eval`` when they are Python literals (``2222`` is a number, ``'x'`` a string),
else kept as text; ranges ``[01:20]``, ``[a:f]``, ``[1:9:2]``; ``host:port``. Group names are
kept as written (ansible-core 2.19 warns about characters such as ``-`` but keeps them).
"""

from __future__ import annotations

import ast
import re
import shlex
import string
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hostbatch.errors import clip, excerpt
from hostbatch.inventory.ranges import combine

#: The largest range expansion accepted; a typo like ``[1:9999999]`` must not eat memory.
MAX_EXPANSION = 100_000

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_BRACKET_PORT = re.compile(r"^\[(.+)\]:(\d+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])+):(\d+)$")


class AnsibleSyntaxError(ValueError):
    """A line Ansible would refuse; ``line`` is its 1-based number (0: the whole file)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class AnsibleGroup:
    """One Ansible group as written: direct hosts, child groups and variables, in file order."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    #: Variables whose value is not a Python literal, so it was kept as written.
    unquoted: set[str] = field(default_factory=set)
    #: ``hosts`` as a set, for the membership tests of parsing.
    host_set: set[str] = field(default_factory=set, repr=False)


def ancestors_in(groups: Mapping[str, AnsibleGroup], group: str) -> set[str]:
    """Every group that ``group`` descends from in ``groups`` (not itself)."""
    found: set[str] = set()
    stack = list(groups[group].parents)
    while stack:
        name = stack.pop()
        if name not in found:
            found.add(name)
            stack.extend(groups[name].parents)
    return found


def _descends(groups: Mapping[str, AnsibleGroup], group: str, ancestor: str) -> bool:
    """True when ``group`` descends from ``ancestor``.

    Walks up from ``group`` and down from ``ancestor`` in turn and stops when either walk is
    done: linking groups one by one in a chain thousands deep then costs little whichever
    way the file orders them (one walk alone is quadratic for one of the orders).
    """
    up, down = [group], [ancestor]
    seen_up: set[str] = set()
    seen_down: set[str] = set()
    while up and down:
        for stack, seen, target, step in ((up, seen_up, ancestor, "parents"),
                                          (down, seen_down, group, "children")):
            name = stack.pop()
            if name in seen:
                continue
            if name == target:
                return True
            seen.add(name)
            stack.extend(getattr(groups[name], step))
    return False


@dataclass
class AnsibleInventory:
    """The parsed file: groups (``all`` and ``ungrouped`` always exist) and each host's own
    variables, hosts in order of first appearance.

    Lookups are cached (a 20,000-host range must not cost a scan of every group per host);
    the caches are valid once parsing is complete.
    """

    groups: dict[str, AnsibleGroup]
    host_vars: dict[str, dict[str, Any]]
    _direct: dict[str, list[str]] | None = field(default=None, init=False, repr=False)
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False)
    _depth: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def ancestors(self, group: str) -> frozenset[str]:
        """Every group ``group`` descends from (not itself)."""
        cached = self._ancestors.get(group)
        if cached is None:
            cached = self._ancestors[group] = frozenset(ancestors_in(self.groups, group))
        return cached

    def host_groups(self, host: str) -> set[str]:
        """Every group holding ``host``, directly or through a child group (and ``all``)."""
        if self._direct is None:
            self._direct = {}
            for group in self.groups.values():
                for member in group.hosts:
                    self._direct.setdefault(member, []).append(group.name)
        direct = self._direct.get(host, [])
        result = {*direct, "all"}
        for name in direct:
            result |= self.ancestors(name)
        return result

    def depth(self, group: str) -> int:
        """Ansible's group depth: ``all`` is 0, others one more than their deepest parent."""
        # Its own stack, not recursion: groups may nest thousands deep.
        depths = self._depth
        depths["all"] = 0
        stack = [group]
        while stack:
            name = stack[-1]
            if name in depths:
                stack.pop()
                continue
            parents = self.groups[name].parents
            missing = [p for p in parents if p not in depths]
            if missing:
                stack.extend(missing)
                continue
            depths[name] = 1 + max((depths[p] for p in parents), default=0)
            stack.pop()
        return depths[group]

    def resolved_vars(self, host: str) -> dict[str, Any]:
        """The host's variables: group variables from the shallowest group to the deepest
        (ties by name), then the host's own; a later layer overrides an earlier one."""
        groups = sorted(self.host_groups(host), key=lambda g: (self.depth(g), g))
        merged: dict[str, Any] = {}
        for name in groups:
            merged.update(self.groups[name].variables)
        merged.update(self.host_vars[host])
        return merged

    def forget_lookups(self) -> None:
        """Drop the cached lookups after the groups changed."""
        self._direct = None
        self._ancestors.clear()
        self._depth.clear()


def parse_value(text: str) -> Any:
    """A value as Ansible's INI plugin reads it: a Python literal if it is one, else text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if value is Ellipsis or isinstance(value, complex):
        return text
    return value


def _range_values(body: str) -> list[str]:
    """The values of one bracket body: ``01:20``, ``a:f``, ``1:9:2``."""
    shown = excerpt(f"[{body}]")
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise AnsibleSyntaxError(f"host range {shown} must be begin:end or begin:end:step")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise AnsibleSyntaxError(f"host range {shown} has no end value")
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
    except ValueError:
        raise AnsibleSyntaxError(f"host range {shown} has a step that is not a number") from None
    if step < 1:
        raise AnsibleSyntaxError(f"host range {shown} needs a positive step")
    width = 0
    if begin[0] == "0" and len(begin) > 1:
        if len(begin) != len(end):
            raise AnsibleSyntaxError(f"host range {shown} must have begin and end of equal "
                                     "length when zero-padded")
        width = len(begin)
    if begin in string.ascii_letters and end in string.ascii_letters:
        low, high = string.ascii_letters.index(begin), string.ascii_letters.index(end)
        if low > high:
            raise AnsibleSyntaxError(f"host range {shown} must have begin <= end")
        return list(string.ascii_letters[low:high + 1:step])
    try:
        low, high = int(begin), int(end)
    except ValueError:
        raise AnsibleSyntaxError(f"host range {shown} is neither numbers nor letters") from None
    if (high - low) // step >= MAX_EXPANSION:
        raise AnsibleSyntaxError(f"host range {shown} expands to more than "
                                 f"{MAX_EXPANSION} names")
    return [str(n).zfill(width) for n in range(low, high + 1, step)]


def expand_range(pattern: str) -> list[str]:
    """Expand Ansible host ranges: ``web[01:20]``, ``db[a:f]``, ``n[1:9:2]``, several per name.

    The brackets are read left to right (no recursion: a name may hold thousands of them) and
    the count of names is checked after each, before any name is built.
    """
    literals: list[str] = []
    choices: list[list[str]] = []
    total = 1
    rest = pattern
    while "[" in rest:
        head, _, rest = rest.partition("[")
        body, closed, rest = rest.partition("]")
        if not closed:
            raise AnsibleSyntaxError(f"unbalanced bracket in host pattern {excerpt(pattern)}")
        literals.append(head)
        choices.append(_range_values(body))
        total *= len(choices[-1])
        if total > MAX_EXPANSION:
            raise AnsibleSyntaxError(f"{excerpt(pattern)} expands to more than "
                                     f"{MAX_EXPANSION} names")
    literals.append(rest)
    return combine(literals, choices)


def split_host_port(token: str) -> tuple[str, int | None]:
    """``host:2222`` and ``[host]:2222`` carry a port; IPv6 addresses need the brackets."""
    for pattern in (_BRACKET_PORT, _HOST_PORT):
        match = pattern.match(token)
        if match:
            return match.group(1), int(match.group(2))
    return token, None


@dataclass
class _Pending:
    """A group named before it is defined: in ``[x:vars]`` or as a child in ``[y:children]``."""

    line: int
    state: str
    parents: list[str] = field(default_factory=list)


class _Parser:
    """Line-by-line state machine of Ansible's INI plugin.

    A child group named before its own section is linked to its parents when that section
    comes (as Ansible does), so children keep Ansible's order.
    """

    def __init__(self) -> None:
        self.groups: dict[str, AnsibleGroup] = {"all": AnsibleGroup("all"),
                                                "ungrouped": AnsibleGroup("ungrouped")}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, _Pending] = {}

    def group(self, name: str) -> AnsibleGroup:
        if name not in self.groups:
            self.groups[name] = AnsibleGroup(name)
        return self.groups[name]

    def parse(self, lines: list[str]) -> AnsibleInventory:
        group, state = "ungrouped", "hosts"
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            try:
                section = _SECTION.match(line)
                if section:
                    group, state = section.group(1), section.group(2) or "hosts"
                    self.section(group, state, number)
                elif line.startswith("[") and line.endswith("]"):
                    raise AnsibleSyntaxError(f"invalid section header {excerpt(line)} (no spaces "
                                             "allowed)")
                elif state == "hosts":
                    self.host_line(line, group, number)
                elif state == "vars":
                    key, sep, value = line.partition("=")
                    if not sep:
                        raise AnsibleSyntaxError(f"expected key=value, got {excerpt(line)}")
                    self.group_variable(group, key.strip(), value.strip())
                else:
                    self.child_line(line, group, number)
            except AnsibleSyntaxError as exc:
                exc.line = exc.line or number
                raise
        for name, pending in self.pending.items():
            if pending.state == "vars":
                raise AnsibleSyntaxError(f"section [{clip(name)}:vars] is for group "
                                         f"{excerpt(name)}, which is never defined", pending.line)
            raise AnsibleSyntaxError(f"section [{clip(pending.parents[-1])}:children] names group "
                                     f"{excerpt(name)}, which is never defined", pending.line)
        return self.reconcile()

    def group_variable(self, group: str, key: str, text: str) -> None:
        value = parse_value(text)
        self.groups[group].variables[key] = value
        if value is text:
            self.groups[group].unquoted.add(key)
        else:
            self.groups[group].unquoted.discard(key)

    def section(self, group: str, state: str, number: int) -> None:
        if state not in ("hosts", "children", "vars"):
            raise AnsibleSyntaxError(f"section [{clip(group)}:{clip(state)}] has unknown type "
                                     f"{excerpt(state)} (hosts, children or vars)")
        if group not in self.groups and state == "vars" and group not in self.pending:
            self.pending[group] = _Pending(number, "vars")
        self.group(group)
        if state != "vars" and group in self.pending:
            self.resolve_pending(group, number)

    def resolve_pending(self, group: str, number: int) -> None:
        """``group`` is defined now: link it to the parents that named it earlier."""
        pending = self.pending.pop(group)
        if pending.state != "children":
            return
        for parent in pending.parents:
            self.link(parent, group, number)
            if parent in self.pending and self.pending[parent].state == "children":
                self.resolve_pending(parent, number)

    def child_line(self, line: str, group: str, number: int) -> None:
        match = _GROUP_NAME.match(line)
        if not match:
            raise AnsibleSyntaxError(f"expected a group name, got {excerpt(line)}")
        child = match.group(1)
        if child in self.groups:
            self.link(group, child, number)
        elif child in self.pending:
            self.pending[child].parents.append(group)
        else:
            self.pending[child] = _Pending(number, "children", [group])

    def host_line(self, line: str, group: str, number: int) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise AnsibleSyntaxError(f"cannot split host line: {exc}", number) from None
        if not tokens:
            return
        pattern, port = split_host_port(tokens[0])
        if tokens[0].endswith(":") and port is None:
            raise AnsibleSyntaxError(f"host pattern {excerpt(tokens[0])} ends in ':' (a port must "
                                     "follow)", number)
        variables: dict[str, Any] = {}
        for token in tokens[1:]:
            key, sep, value = token.partition("=")
            if not sep:
                raise AnsibleSyntaxError(f"expected key=value after the host name, got "
                                         f"{excerpt(token)}", number)
            variables[key] = parse_value(value)
        for host in expand_range(pattern):
            if host not in self.host_vars and port is not None:
                # As Ansible: a port in the host name counts only where the host first appears.
                self.host_vars[host] = {"ansible_port": port}
            own = self.host_vars.setdefault(host, {})
            own.update(variables)
            target = self.group(group)
            if host not in target.host_set:
                target.host_set.add(host)
                target.hosts.append(host)

    def link(self, parent: str, child: str, number: int) -> None:
        if child == parent or _descends(self.groups, parent, child):
            raise AnsibleSyntaxError(f"making {excerpt(child)} a child of {excerpt(parent)} "
                                     "creates a loop of groups", number)
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)


    def reconcile(self) -> AnsibleInventory:
        """Ansible's ``reconcile_inventory``: every top group is a child of ``all``, and a
        host that is in no group but ``all`` (or ``ungrouped``) belongs to ``ungrouped``."""
        result = AnsibleInventory(self.groups, self.host_vars)
        for group in list(self.groups.values()):
            if group.name != "all" and not group.parents:
                self.link("all", group.name, 0)
        ungrouped = self.groups["ungrouped"]
        alone = {host for host in self.host_vars
                 if not result.host_groups(host) - {"all", "ungrouped"}}
        ungrouped.hosts = [
            *(host for host in ungrouped.hosts if host in alone),
            *(host for host in self.host_vars if host in alone and host not in ungrouped.host_set),
        ]
        ungrouped.host_set = set(ungrouped.hosts)
        result.forget_lookups()
        return result


def parse_ansible_ini(text: str) -> AnsibleInventory:
    """Parse the text of an Ansible INI inventory; raises :class:`AnsibleSyntaxError`."""
    return _Parser().parse(text.splitlines())
