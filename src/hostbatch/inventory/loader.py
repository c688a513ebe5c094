"""Find, parse and validate an inventory file into an :class:`Inventory`.

Parsing uses ``configparser`` with interpolation off (``%`` in a password is literal) and no
inline comments (``#`` and ``;`` inside a value are literal). Every problem is reported as one
:class:`InventoryError` naming the file, section and key, before anything connects.
"""

from __future__ import annotations

import configparser
import difflib
import getpass
import os
import re
import shlex
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hostbatch.errors import InventoryError, UsageError
from hostbatch.inventory.detect import looks_like_ansible
from hostbatch.inventory.model import Group, Inventory
from hostbatch.inventory.ranges import RangeError, expand, split_list
from hostbatch.inventory.resolve import PASSWORD_KEYS, Resolver, jump_list
from hostbatch.secrets import Secret

#: Keys of [defaults] and [host:NAME]; each is a HostSpec field of the same name, except
#: sudo_password_env, which names an environment variable holding the sudo_password.
HOST_KEYS = ("hostname", "port", "user", "password", "password_env", "password_cmd",
             "identity_file", "identities_only", "connect_timeout", "known_hosts", "proxy_jump",
             "sudo_password", "sudo_password_env")
#: Keys of [defaults] only: settings of the whole run rather than of a host.
RUN_KEYS = ("confirm_over",)
#: Keys whose value is a secret written in the file itself: such a file must be private, and
#: the value is kept exactly as written (not stripped).
_SECRET_KEYS = ("password", "sudo_password")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GROUP_KEYS = ("hosts", "children")
#: Values of ``--inventory-format``.
INVENTORY_FORMATS = ("auto", "hostbatch", "ansible")
_NAME = re.compile(r"^[A-Za-z0-9_.:@%+-]+$")
_INLINE_HINT = " (comments after a value are not supported: put them on a line of their own)"


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


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_inventory_text(path: Path) -> str:
    """The file's text; a missing, unreadable or non-UTF-8 file raises InventoryError."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError("inventory file not found", path=str(path)) from None
    except IsADirectoryError:
        raise InventoryError("inventory path is a directory, not a file (for an Ansible "
                             "inventory directory, give its INI file: -i DIR/hosts)",
                             path=str(path)) from None
    except PermissionError:
        raise InventoryError("inventory file is not readable (permission denied)",
                             path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InventoryError(f"inventory is not UTF-8 text ({exc.reason})",
                             path=str(path)) from None


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
        first = str(exc).splitlines()[-1].strip()
        raise InventoryError(f"cannot parse: {first}", path=str(path)) from None
    return parser


class _Validator:
    """Turns raw string values into typed ones, raising errors that name where they came from."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def fail(self, message: str, section: str, key: str | None = None) -> InventoryError:
        return InventoryError(message, path=self.path, section=section, key=key)

    def check_keys(self, section: str, keys: list[str], allowed: tuple[str, ...]) -> None:
        for key in keys:
            if key not in allowed:
                raise self.fail(f"unknown key{_suggest(key, allowed)}; known keys: "
                                f"{', '.join(allowed)}", section, key)

    def name(self, value: str, section: str, key: str | None, what: str) -> str:
        if not _NAME.match(value):
            hint = _INLINE_HINT if (" " in value or ";" in value or "#" in value) else ""
            raise self.fail(f"invalid {what} {value!r}{hint}", section, key)
        return value

    def port(self, value: str, section: str) -> int:
        try:
            port = int(value)
        except ValueError:
            hint = _INLINE_HINT if (";" in value or "#" in value) else ""
            raise self.fail(f"port {value!r} is not a number{hint}", section, "port") from None
        if not 1 <= port <= 65535:
            raise self.fail(f"port {port} is out of range (1-65535)", section, "port")
        return port

    def timeout(self, value: str, section: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            raise self.fail(f"connect_timeout {value!r} is not a number of seconds", section,
                            "connect_timeout") from None
        if not 0 < seconds <= 86400:
            raise self.fail(f"connect_timeout {value!r} must be between 0 and 86400 seconds",
                            section, "connect_timeout")
        return seconds

    def boolean(self, value: str, section: str, key: str) -> bool:
        lowered = value.lower()
        if lowered not in ("yes", "no", "true", "false"):
            raise self.fail(f"{value!r} is not yes or no", section, key)
        return lowered in ("yes", "true")

    def jumps(self, value: str, section: str) -> tuple[str, ...]:
        try:
            return jump_list(value)
        except UsageError as exc:
            raise self.fail(str(exc), section, "proxy_jump") from None

    def count(self, value: str, section: str, key: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise self.fail(f"{value!r} is not a whole number", section, key) from None
        if number < 0:
            raise self.fail(f"{value!r} must not be negative", section, key)
        return number

    def non_empty(self, value: str, section: str, key: str) -> str:
        if not value:
            raise self.fail("empty value", section, key)
        return value

    def env_name(self, value: str, section: str) -> str:
        if not _ENV_NAME.match(value):
            raise self.fail(f"{value!r} is not an environment variable name", section,
                            "password_env")
        return value

    def command(self, value: str, section: str) -> str:
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise self.fail(f"cannot split the command into words: {exc}", section,
                            "password_cmd") from None
        if not words:
            raise self.fail("empty value", section, "password_cmd")
        return value

    def password_sources(self, section: str, keys: list[str]) -> None:
        given = [key for key in PASSWORD_KEYS if key in keys]
        if len(given) > 1:
            raise self.fail(f"set only one of {', '.join(PASSWORD_KEYS)} (found "
                            f"{' and '.join(given)})", section, given[1])

    def names(self, value: str, section: str, key: str, what: str) -> list[str]:
        names: list[str] = []
        for item in split_list(value):
            try:
                expanded = expand(item)
            except RangeError as exc:
                raise self.fail(str(exc), section, key) from None
            names.extend(self.name(name, section, key, what) for name in expanded)
        return names


def _from_environment(check: _Validator, section: str, name: str,
                      environ: Mapping[str, str]) -> Secret:
    name = check.non_empty(name, section, "sudo_password_env")
    if name not in environ:
        raise check.fail(f"environment variable {name} is not set", section,
                         "sudo_password_env")
    return Secret(environ[name])


def _host_settings(
    check: _Validator, section: str, raw: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Convert one section's host keys to typed values (only the keys present)."""
    if "sudo_password" in raw and "sudo_password_env" in raw:
        raise check.fail("give sudo_password or sudo_password_env, not both", section,
                         "sudo_password_env")
    environ = os.environ if environ is None else environ
    converters: dict[str, Callable[[str], object]] = {
        "hostname": lambda v: check.name(v, section, "hostname", "hostname"),
        "port": lambda v: check.port(v, section),
        "user": lambda v: check.name(check.non_empty(v, section, "user"), section, "user", "user"),
        "password": lambda v: Secret(v),
        "password_env": lambda v: check.env_name(v, section),
        "password_cmd": lambda v: check.command(v, section),
        "identity_file": lambda v: os.path.expanduser(check.non_empty(v, section, "identity_file")),
        "connect_timeout": lambda v: check.timeout(v, section),
        "known_hosts": lambda v: os.path.expanduser(check.non_empty(v, section, "known_hosts")),
        "identities_only": lambda v: check.boolean(v, section, "identities_only"),
        "proxy_jump": lambda v: check.jumps(check.non_empty(v, section, "proxy_jump"), section),
        "sudo_password": lambda v: Secret(v),
        "sudo_password_env": lambda v: _from_environment(check, section, v, environ),
    }
    settings = {key: converters[key](value if key in _SECRET_KEYS else value.strip())
                for key, value in raw.items() if key in converters}
    if "sudo_password_env" in settings:
        settings["sudo_password"] = settings.pop("sudo_password_env")
    return settings


def _check_children(check: _Validator, groups: dict[str, Group]) -> None:
    for group in groups.values():
        for child in group.children:
            if child not in groups:
                raise check.fail(f"child group {child!r} is not defined"
                                 f"{_suggest(child, list(groups))}", f"group:{group.name}",
                                 "children")
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for child in groups[name].children:
            if state.get(child) == 1:
                cycle = " -> ".join([*path[path.index(child):], child])
                raise check.fail(f"groups form a cycle: {cycle}", f"group:{name}", "children")
            if child not in state:
                visit(child, [*path, child])
        state[name] = 2

    for name in groups:
        if name not in state:
            visit(name, [name])


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
        raise InventoryError(f"unknown inventory format {inventory_format!r} "
                             f"(one of {', '.join(INVENTORY_FORMATS)})")
    if inventory_format == "ansible" or (inventory_format == "auto"
                                         and looks_like_ansible(read_inventory_text(path))):
        from hostbatch.inventory import ansible

        inventory = ansible.load_ansible_inventory(path, warn=warn, local_user=local_user)
        _check_private(path, any(spec.password is not None or spec.sudo_password is not None
                                 for spec in inventory.hosts.values()), insecure, warn)
        return inventory
    confirm_over: int | None = None
    parser = _read_parser(path)
    check = _Validator(path)
    defaults: dict[str, Any] = {}
    host_sections: dict[str, dict[str, Any]] = {}
    groups: dict[str, Group] = {}
    order: list[str] = []

    def note_host(name: str) -> None:
        if name not in host_sections and name not in order:
            order.append(name)

    for section in parser.sections():
        keys = list(parser[section].keys())
        raw = {key: parser[section][key] for key in keys}
        kind, _, name = section.partition(":")
        if section == "defaults":
            check.check_keys(section, keys, HOST_KEYS + RUN_KEYS)
            check.password_sources(section, keys)
            if "confirm_over" in raw:
                confirm_over = check.count(raw.pop("confirm_over").strip(), section,
                                           "confirm_over")
            defaults = _host_settings(check, section, raw, environ)
        elif kind == "host" and name:
            check.name(name, section, None, "host name")
            check.check_keys(section, keys, HOST_KEYS)
            check.password_sources(section, keys)
            if name not in order:
                order.append(name)
            host_sections[name] = _host_settings(check, section, raw, environ)
        elif kind == "group" and name:
            check.name(name, section, None, "group name")
            check.check_keys(section, keys, GROUP_KEYS)
            members = check.names(raw.get("hosts", ""), section, "hosts", "host name")
            children = [check.name(child, section, "children", "group name")
                        for child in split_list(raw.get("children", ""))]
            for member in members:
                note_host(member)
            groups[name] = Group(name, tuple(dict.fromkeys(members)), tuple(children))
        else:
            known = ["defaults", "host:NAME", "group:NAME"]
            raise check.fail(f"unknown section; sections are {', '.join(known)}"
                             f"{_suggest(section, known)}", section)
    _check_children(check, groups)

    user = local_user or getpass.getuser()
    resolver = Resolver(defaults=defaults, sections=host_sections, local_user=user)
    try:
        hosts = {name: resolver.resolve(name).spec for name in order}
    except (UsageError, InventoryError) as exc:
        raise InventoryError(str(exc), path=str(path)) from None
    _check_private(path, any(parser.has_option(section, key) for section in parser.sections()
                             for key in _SECRET_KEYS), insecure, warn)
    return Inventory(path=str(path), hosts=hosts, groups=groups, confirm_over=confirm_over,
                     defaults=defaults, sections=host_sections, local_user=user)


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
