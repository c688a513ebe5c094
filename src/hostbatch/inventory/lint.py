"""Check a whole inventory and report every problem, instead of stopping at the first.

The loader refuses a broken inventory at its first error, which is right before a run but
slow to fix by: ``lint`` reads the file tolerantly and lists everything at once. Errors are
what the loader (or a run) would refuse; warnings are legal but probably unintended.

* errors: unreadable lines, unknown or repeated sections, unknown or repeated keys, bad values
  (ports, timeouts, names, ranges), child groups that are not defined, cycles of groups,
  passwords in a file that group or others can read;
* warnings: two hosts with one address and port, hosts in no group, groups with no hosts,
  Ansible variables that hostbatch ignores, a ``#`` comment after an unquoted ``[x:vars]``
  value (Ansible keeps it as part of the value), a group member with no ``[host:]`` section
  whose name is close to one that has a section (a typo dialled as a host name).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from hostbatch.errors import InventoryError, clip, excerpt
from hostbatch.inventory.checks import host_findings
from hostbatch.inventory.detect import looks_like_ansible
from hostbatch.inventory.model import DEFAULT_PORT, Inventory
from hostbatch.inventory.ranges import split_list
from hostbatch.inventory.source import read_inventory_text
from hostbatch.inventory.validate import (
    GROUP_KEYS,
    HOST_KEYS,
    RUN_KEYS,
    Validator,
    find_group_cycles,
    host_settings,
    suggest,
    undefined_children,
)
from hostbatch.secrets import MASK

_SECTION = re.compile(r"^\[(.*)\]\s*$")
_OPTION = re.compile(r"^([^=:\s][^=:]*?)\s*[=:]\s?(.*)$")
_TRAILING_COMMENT = re.compile(r"\s[#;]")


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: where it is (section, key, line) and what is wrong."""

    severity: str  # "error" or "warning"
    message: str
    section: str | None = None
    key: str | None = None
    line: int = 0

    def format(self, path: str) -> str:
        """``FILE: [section] key: severity: message (line N)``."""
        where = " ".join(p for p in (f"[{clip(self.section)}]" if self.section else "",
                                     clip(self.key or "")) if p)
        line = f" (line {self.line})" if self.line else ""
        return f"{path}: {where + ': ' if where else ''}{self.severity}: {self.message}{line}"


@dataclass
class _Section:
    name: str
    line: int
    options: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class LintReport:
    """Every problem found, in file order where there is one."""

    path: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems that make the inventory unusable."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems that are legal but probably unintended."""
        return [p for p in self.problems if p.severity == "warning"]

    def add(self, severity: str, message: str, section: str | None = None,
            key: str | None = None, line: int = 0) -> None:
        """Record one problem."""
        self.problems.append(Problem(severity, message, section, key, line))


def _sections(text: str, report: LintReport) -> list[_Section]:
    """Split INI text into sections as configparser would, noting repeats and stray lines."""
    sections: list[_Section] = []
    names: set[str] = set()
    current: _Section | None = None
    last_key: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        header = _SECTION.match(stripped)
        if header:
            name = header.group(1).strip()
            if name in names:
                report.add("error", "section appears twice", name, line=number)
            names.add(name)
            current, last_key = _Section(name, number), None
            sections.append(current)
            continue
        if current is None:
            report.add("error", "a key before any [section] header", line=number)
            continue
        if raw[:1].isspace() and last_key is not None:
            current.options[last_key] += "\n" + stripped  # a continuation line
            continue
        option = _OPTION.match(stripped)
        if not option:
            report.add("error", f"not a 'key = value' line: {excerpt(stripped)}", current.name,
                       line=number)
            continue
        key = option.group(1).strip().lower()
        if key in current.options:
            report.add("error", "key appears twice in the section", current.name, key, number)
        current.options[key], current.lines[key] = option.group(2).strip(), number
        last_key = key
    return sections


def _check(report: LintReport, section: _Section, key: str | None,
           convert: Callable[..., object], *args: object) -> object | None:
    """Run one validation rule, turning its InventoryError into a problem (and None)."""
    try:
        return convert(*args)
    except InventoryError as exc:
        line = section.lines.get(key, section.line) if key else section.line
        report.add("error", exc.reason, section.name, key, line)
        return None


def _convert_host_value(check: Validator, section: str, key: str, value: str) -> object:
    if key in RUN_KEYS:
        return check.count(value, section, key)
    # A key may be stored under another name (sudo_password_env -> sudo_password).
    return next(iter(host_settings(check, section, {key: value}).values()))


def lint_hostbatch(path: Path, text: str) -> tuple[LintReport, Inventory]:
    """Lint a hostbatch INI inventory; also returns what could be read of it."""
    report = LintReport(str(path))
    check = Validator(path)
    defaults: dict[str, object] = {}
    hosts: dict[str, dict[str, object]] = {}
    groups: dict[str, tuple[list[str], list[str]]] = {}
    members: list[str] = []
    for section in _sections(text, report):
        kind, _, name = section.name.partition(":")
        allowed = (GROUP_KEYS if kind == "group" else
                   HOST_KEYS + RUN_KEYS if section.name == "defaults" else
                   HOST_KEYS)
        if section.name != "defaults" and not (kind in ("host", "group") and name):
            known = ["defaults", "host:NAME", "group:NAME"]
            report.add("error", f"unknown section; sections are {', '.join(known)}"
                       f"{suggest(section.name, known)}", section.name,
                       line=section.line)
            continue
        if name:
            _check(report, section, None, check.name, name, section.name, None, f"{kind} name")
        for key in list(section.options):
            if key not in allowed:
                report.add("error", f"unknown key{suggest(key, allowed)}",
                           section.name, key, section.lines[key])
                del section.options[key]
        if kind == "group":
            hosts_list: list[str] = []
            for item in split_list(section.options.get("hosts", "")):
                found = _check(report, section, "hosts", check.names, item, section.name,
                               "hosts", "host name")
                if isinstance(found, list):
                    hosts_list.extend(str(h) for h in found)
            children = [c for c in split_list(section.options.get("children", ""))
                        if _check(report, section, "children", check.name, c, section.name,
                                  "children", "group name") is not None]
            groups[name] = (hosts_list, children)
            members.extend(hosts_list)
            continue
        values: dict[str, object] = {}
        for key, value in section.options.items():
            converted = _check(report, section, key, _convert_host_value, check, section.name,
                               key, value)
            if converted is not None:
                values[key] = converted
        for key in RUN_KEYS:
            values.pop(key, None)
        if "sudo_password_env" in values:
            values["sudo_password"] = values.pop("sudo_password_env")
        if section.name == "defaults":
            defaults.update(values)
        else:
            hosts.setdefault(name, {}).update(values)
    _check_groups(report, groups)
    _check_members(report, groups, hosts)
    inventory = _partial_inventory(path, defaults, hosts, groups, members)
    return report, inventory


def _check_members(report: LintReport, groups: Mapping[str, tuple[list[str], list[str]]],
                   hosts: Mapping[str, object]) -> None:
    """A group member without a ``[host:]`` section is dialled by its name: worth a warning
    when the name is close to a host that has a section (a typo, most likely)."""
    for name, (members, _) in groups.items():
        for member in dict.fromkeys(members):
            if member in hosts:
                continue
            close = difflib.get_close_matches(member, list(hosts), n=1, cutoff=0.8)
            if close:
                report.add("warning", f"{excerpt(member)} has no [host:{member}] section, so it is "
                           f"dialled as {excerpt(member)} (did you mean {excerpt(close[0])}?)",
                           f"group:{name}", "hosts")


def _check_groups(report: LintReport, groups: Mapping[str, tuple[list[str], list[str]]]) -> None:
    """Every undefined child group and every cycle of groups."""
    children = {name: group_children for name, (_, group_children) in groups.items()}
    for name, child in undefined_children(children):
        report.add("error", f"child group {excerpt(child)} is not defined"
                   f"{suggest(child, list(groups))}",
                   f"group:{name}", "children")
    for cycle in find_group_cycles(children):
        report.add("error", f"groups form a cycle: {cycle}", f"group:{cycle.group}", "children")


def _partial_inventory(path: Path, defaults: dict[str, object],
                       hosts: dict[str, dict[str, object]],
                       groups: Mapping[str, tuple[list[str], list[str]]],
                       members: list[str]) -> Inventory:
    from hostbatch.inventory.model import Group, HostSpec

    names = list(dict.fromkeys([*hosts, *members]))
    specs = {}
    for name in names:
        values = {"name": name, "hostname": name, **defaults, **hosts.get(name, {})}
        specs[name] = HostSpec(**values)  # type: ignore[arg-type]
    return Inventory(str(path), specs, {
        name: Group(name, tuple(h), tuple(c for c in children if c in groups))
        for name, (h, children) in groups.items()})


def lint_model(report: LintReport, inventory: Inventory, path: Path,
               sections: Callable[[str], str], environ: Mapping[str, str]) -> None:
    """Checks on the resolved hosts, for both formats. ``sections`` names a host's section."""
    for spec in inventory.hosts.values():
        for finding in host_findings(spec, inventory.hosts, environ):
            report.add(finding.severity, finding.message, sections(spec.name), finding.key)
    by_address: dict[tuple[str, int], list[str]] = {}
    for spec in inventory.hosts.values():
        by_address.setdefault((spec.hostname.lower(), spec.port), []).append(spec.name)
    for (hostname, port), names in by_address.items():
        if len(names) > 1:
            where = hostname if port == DEFAULT_PORT else f"{hostname} port {port}"
            report.add("warning", f"hosts {', '.join(names)} all reach {where}",
                       sections(names[1]), "hostname")
    grouped = {h for g in inventory.groups.values() for h in g.hosts if g.name != "ungrouped"}
    for name in inventory.hosts:
        if name not in grouped:
            report.add("warning", "host is in no group (only in 'all')", sections(name))
    with_hosts = _groups_with_hosts(inventory)
    for group in inventory.groups.values():
        if group.name != "ungrouped" and group.name not in with_hosts:
            report.add("warning", "group has no hosts", f"group:{group.name}")
    secret_hosts = [s.name for s in inventory.hosts.values()
                    if s.password is not None or s.sudo_password is not None]
    if secret_hosts:
        try:
            mode = path.stat().st_mode
        except OSError:
            return
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            report.add("error", f"holds passwords ({', '.join(secret_hosts[:3])}"
                       f"{', ...' if len(secret_hosts) > 3 else ''}) and is readable by "
                       f"others (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}")


def _groups_with_hosts(inventory: Inventory) -> set[str]:
    """The groups holding a host of the inventory, directly or through their children.

    One walk up from the groups with hosts of their own, rather than a walk down from every
    group: groups nested thousands deep would make that quadratic.
    """
    parents: dict[str, list[str]] = {}
    for group in inventory.groups.values():
        for child in group.children:
            parents.setdefault(child, []).append(group.name)
    stack = [group.name for group in inventory.groups.values()
             if any(host in inventory.hosts for host in group.hosts)]
    found: set[str] = set()
    while stack:
        name = stack.pop()
        if name not in found:
            found.add(name)
            stack.extend(parents.get(name, ()))
    return found


def _mask_passwords(report: LintReport, inventory: Inventory) -> None:
    """Messages quote file text: mask this file's passwords wherever they turn up."""
    values = sorted({secret.reveal() for spec in inventory.hosts.values()
                     for secret in (spec.password, spec.sudo_password)
                     if secret is not None and secret.reveal()}, key=len, reverse=True)
    for index, problem in enumerate(report.problems):
        message = problem.message
        for value in values:
            message = message.replace(value, MASK)
        report.problems[index] = replace(problem, message=message)


def lint_inventory(path: Path, inventory_format: str = "auto",
                   environ: Mapping[str, str] | None = None) -> LintReport:
    """Lint the inventory at ``path``; an unreadable file raises InventoryError. ``environ``
    (default ``os.environ``) is where ``password_env`` variables are looked for."""
    environ = os.environ if environ is None else environ
    from hostbatch.inventory.ansible import load_ansible_inventory, parse_file

    text = read_inventory_text(path)
    if inventory_format == "ansible" or (inventory_format == "auto"
                                         and looks_like_ansible(text)):
        report = LintReport(str(path))
        warnings: list[str] = []
        try:
            inventory = load_ansible_inventory(path, warn=warnings.append)
        except InventoryError as exc:
            report.add("error", exc.reason, exc.section, exc.key)
            return report
        prefix = f"{path}: "
        for message in warnings:
            report.add("warning", message.removeprefix(prefix))
        for group in parse_file(path).groups.values():
            for key, value in group.variables.items():
                if key in group.unquoted and _TRAILING_COMMENT.search(value):
                    report.add("warning", "the value goes on after whitespace and '#' or ';': "
                               "Ansible keeps that as part of the value (quote the value, or put "
                               "the comment on a line of its own)", f"{group.name}:vars", key)
        lint_model(report, inventory, path, lambda name: name, environ)
        _mask_passwords(report, inventory)
        return report
    report, inventory = lint_hostbatch(path, text)
    lint_model(report, inventory, path, lambda name: f"host:{name}", environ)
    _mask_passwords(report, inventory)
    report.problems.sort(key=lambda p: (p.line == 0, p.line))
    return report
