"""Find, parse and validate an inventory file into an :class:`Inventory`.

Parsing uses ``configparser`` with interpolation off (``%`` in a password is literal) and no
inline comments (``#`` and ``;`` inside a value are literal). Every problem is reported as one
:class:`InventoryError` naming the file, section and key, before anything connects.
"""

from __future__ import annotations

import configparser
import getpass
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostbatch.errors import ECHO_LIMIT, InventoryError, UsageError, clip, excerpt
from hostbatch.inventory.detect import looks_like_ansible
from hostbatch.inventory.model import Group, Inventory
from hostbatch.inventory.ranges import split_list
from hostbatch.inventory.resolve import Resolver
from hostbatch.inventory.source import read_inventory_text
from hostbatch.inventory.validate import (
    GROUP_KEYS,
    HOST_KEYS,
    RUN_KEYS,
    SECRET_KEYS,
    Validator,
    find_group_cycles,
    host_settings,
    suggest,
    undefined_children,
)

#: Values of ``--inventory-format``.
INVENTORY_FORMATS = ("auto", "hostbatch", "ansible")


def locate_inventory(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """Return the inventory path: ``-i``, else ``$HOSTBATCH_INVENTORY``, else the first of
    ``./hosts.ini`` and ``~/.config/hostbatch/hosts.ini`` that exists."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = environ.get("HOSTBATCH_INVENTORY")
    if from_env:
        return Path(from_env).expanduser()
    home = Path(environ.get("HOME") or Path.home())
    candidates = [Path("hosts.ini"), home / ".config" / "hostbatch" / "hosts.ini"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise InventoryError(
        f"no inventory found (tried {tried}); give one with -i FILE or $HOSTBATCH_INVENTORY"
    )


def _read_parser(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(
        interpolation=None,
        inline_comment_prefixes=None,
        strict=True,
        empty_lines_in_values=False,
        default_section="\x00no-default-section",
    )
    text = read_inventory_text(path)
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateSectionError as exc:
        raise InventoryError(f"section appears twice (line {exc.lineno})", path=str(path),
                             section=exc.section) from None
    except configparser.DuplicateOptionError as exc:
        raise InventoryError(f"key appears twice in the section (line {exc.lineno})",
                             path=str(path), section=exc.section, key=exc.option) from None
    except configparser.MissingSectionHeaderError as exc:
        raise InventoryError(f"line {exc.lineno}: a key before any [section] header",
                             path=str(path)) from None
    except configparser.Error as exc:
        first = str(exc).splitlines()[-1].strip()  # "[line  3]: 'the line'"
        raise InventoryError(f"cannot parse: {clip(first, 2 * ECHO_LIMIT)}",
                             path=str(path)) from None
    return parser


def _check_children(check: Validator, groups: dict[str, Group]) -> None:
    """Refuse the first undefined child group, then the first cycle of groups."""
    children = {name: group.children for name, group in groups.items()}
    for name, child in undefined_children(children):
        raise check.fail(f"child group {excerpt(child)} is not defined"
                         f"{suggest(child, list(groups))}",
                         f"group:{name}", "children")
    for cycle in find_group_cycles(children):
        raise check.fail(f"groups form a cycle: {cycle}", f"group:{cycle.group}", "children")


def load_inventory(path: Path, *, warn: Callable[[str], None] | None = None,
                   local_user: str | None = None,
                   environ: Mapping[str, str] | None = None,
                   inventory_format: str = "auto", insecure: bool = False) -> Inventory:
    """Read and validate the inventory at ``path``.

    A file that holds a password (``password``, ``sudo_password``) and that group or others
    can read is refused, unless ``insecure`` (``--insecure-inventory``): then ``warn``
    receives a warning instead.
    ``local_user`` is the user name for hosts that set none (default: the local user, as ssh).
    ``environ`` supplies the variables named by ``sudo_password_env`` (default: os.environ).
    ``inventory_format`` is ``hostbatch``, ``ansible`` (an Ansible INI inventory) or ``auto``
    (Ansible when the file looks like one: ``detect.looks_like_ansible``).
    """
    if inventory_format not in INVENTORY_FORMATS:
        raise InventoryError(f"unknown inventory format {excerpt(inventory_format)} "
                             f"(one of {', '.join(INVENTORY_FORMATS)})")
    if inventory_format == "ansible" or (inventory_format == "auto"
                                         and looks_like_ansible(read_inventory_text(path))):
        from hostbatch.inventory.ansible import load_ansible_inventory

        inventory = load_ansible_inventory(path, warn=warn, local_user=local_user)
        _check_private(path, any(spec.password is not None or spec.sudo_password is not None
                                 for spec in inventory.hosts.values()), insecure, warn)
        return inventory
    parser = _read_parser(path)
    check = Validator(path)
    read = _HostbatchSections()
    for section in parser.sections():
        read.add(check, section, dict(parser[section].items()), environ)
    _check_children(check, read.groups)
    user = local_user or getpass.getuser()
    _check_relays(check, read)
    resolver = Resolver(defaults=read.defaults, sections=read.hosts, local_user=user,
                        groups=read.groups)
    try:
        hosts = {name: resolver.resolve(name).spec for name in read.order}
    except (UsageError, InventoryError) as exc:
        raise InventoryError(str(exc), path=str(path)) from None
    _check_private(path, any(parser.has_option(section, key) for section in parser.sections()
                             for key in SECRET_KEYS), insecure, warn)
    return Inventory(path=str(path), hosts=hosts, groups=read.groups,
                     confirm_over=read.confirm_over, defaults=read.defaults,
                     sections=read.hosts, local_user=user)


@dataclass
class _HostbatchSections:
    """The typed contents of a hostbatch INI file's sections, gathered one section at a time.

    ``order`` is every host in file order: those with a ``[host:NAME]`` section and those
    only named by a group.
    """

    defaults: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    confirm_over: int | None = None

    def add(self, check: Validator, section: str, raw: dict[str, str],
            environ: Mapping[str, str] | None) -> None:
        """Validate one section and keep its typed values."""
        keys = list(raw)
        kind, _, name = section.partition(":")
        if section == "defaults":
            check.check_keys(section, keys, HOST_KEYS + RUN_KEYS)
            check.password_sources(section, keys)
            if "confirm_over" in raw:
                self.confirm_over = check.count(raw.pop("confirm_over").strip(), section,
                                                "confirm_over")
            self.defaults = host_settings(check, section, raw, environ)
        elif kind == "host" and name:
            check.name(name, section, None, "host name")
            check.check_keys(section, keys, HOST_KEYS)
            check.password_sources(section, keys)
            if name not in self.order:
                self.order.append(name)
            self.hosts[name] = host_settings(check, section, raw, environ)
        elif kind == "group" and name:
            check.name(name, section, None, "group name")
            check.check_keys(section, keys, GROUP_KEYS)
            members = check.names(raw.get("hosts", ""), section, "hosts", "host name")
            children = [check.name(child, section, "children", "group name")
                        for child in split_list(raw.get("children", ""))]
            self.order.extend(member for member in dict.fromkeys(members)
                              if member not in self.hosts and member not in self.order)
            via = check.relays(raw["via"], section) if "via" in raw else None
            self.groups[name] = Group(name, tuple(dict.fromkeys(members)), tuple(children),
                                      via)
        else:
            known = ["defaults", "host:NAME", "group:NAME"]
            raise check.fail(f"unknown section; sections are {', '.join(known)}"
                             f"{suggest(section, known)}", section)


def _check_relays(check: Validator, read: _HostbatchSections) -> None:
    """Refuse a ``via`` naming a relay that is not a host of the file (a relay is an inventory
    host: it needs its own connection settings)."""
    places: list[tuple[str, tuple[str, ...]]] = [("defaults", read.defaults.get("via", ()))]
    places += [(f"host:{name}", values.get("via", ())) for name, values in read.hosts.items()]
    places += [(f"group:{name}", group.via or ()) for name, group in read.groups.items()]
    known = set(read.order)
    for section, names in places:
        for name in names:
            if name not in known:
                raise check.fail(f"relay {excerpt(name)} is not a host of this inventory"
                                 f"{suggest(name, read.order)}", section, "via")


def _check_private(path: Path, has_secrets: bool, insecure: bool,
                   warn: Callable[[str], None] | None) -> None:
    """Refuse (or, if ``insecure``, warn about) passwords in a file others can read."""
    if not has_secrets:
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return
    problem = (f"{path} holds passwords and group or others can read it (mode "
               f"{stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    if not insecure:
        raise InventoryError(f"{problem} (or accept the risk with --insecure-inventory)")
    if warn is not None:
        warn(problem)
