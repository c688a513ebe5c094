"""Validation of hostbatch INI values and group graphs: the rules shared by the loader (which
stops at the first problem) and ``inventory lint`` / ``inventory convert`` (which report or
check everything).

Every rule raises an :class:`InventoryError` naming the file, section and key, so each tool
words a problem the same way.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostbatch.errors import InventoryError, UsageError, clip, excerpt
from hostbatch.inventory.ranges import RangeError, expand, split_list
from hostbatch.inventory.resolve import PASSWORD_KEYS, jump_list, relay_list
from hostbatch.secrets import Secret

#: Keys of [defaults] and [host:NAME]; each is a HostSpec field of the same name, except
#: sudo_password_env, which names an environment variable holding the sudo_password.
HOST_KEYS = ("hostname", "port", "user", "password", "password_env", "password_cmd",
             "identity_file", "identities_only", "connect_timeout", "known_hosts", "proxy_jump",
             "sudo_password", "sudo_password_env", "keepalive_interval", "keepalive_count_max",
             "via", "relay_command", "relay_forks", "forward_agent")
#: Keys of [defaults] only: settings of the whole run rather than of a host.
RUN_KEYS = ("confirm_over",)
#: Keys of [group:NAME].
GROUP_KEYS = ("hosts", "children", "via")
#: Keys whose value is a secret written in the file itself: such a file must be private, and
#: the value is kept exactly as written (not stripped).
SECRET_KEYS = ("password", "sudo_password")
#: What a host or group name may be made of.
NAME = re.compile(r"^[A-Za-z0-9_.:@%+-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INLINE_HINT = " (comments after a value are not supported: put them on a line of their own)"


def suggest(word: str, choices: Sequence[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {excerpt(close[0])}?)" if close else ""


class Validator:
    """Turns raw string values into typed ones, raising errors that name where they came from."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def fail(self, message: str, section: str, key: str | None = None) -> InventoryError:
        """The error for ``message`` at ``section`` / ``key`` of this file (to raise)."""
        return InventoryError(message, path=self.path, section=section, key=key)

    def check_keys(self, section: str, keys: list[str], allowed: tuple[str, ...]) -> None:
        """Refuse the first key that is not one of ``allowed``."""
        for key in keys:
            if key not in allowed:
                raise self.fail(f"unknown key{suggest(key, allowed)}; known keys: "
                                f"{', '.join(allowed)}", section, key)

    def name(self, value: str, section: str, key: str | None, what: str) -> str:
        """A host or group name (``what`` says which, for the message)."""
        if not NAME.match(value):
            hint = _INLINE_HINT if (" " in value or ";" in value or "#" in value) else ""
            raise self.fail(f"invalid {what} {excerpt(value)}{hint}", section, key)
        return value

    def port(self, value: str, section: str) -> int:
        """A TCP port, 1-65535."""
        try:
            port = int(value)
        except ValueError:
            hint = _INLINE_HINT if (";" in value or "#" in value) else ""
            raise self.fail(f"port {excerpt(value)} is not a number{hint}", section,
                            "port") from None
        if not 1 <= port <= 65535:
            raise self.fail(f"port {clip(str(port))} is out of range (1-65535)", section, "port")
        return port

    def seconds(self, value: str, section: str, key: str, *, zero_allowed: bool) -> float:
        """Seconds up to a day: over 0, or with ``zero_allowed`` 0 (off) or more."""
        try:
            seconds = float(value)
        except ValueError:
            raise self.fail(f"{key} {excerpt(value)} is not a number of seconds", section,
                            key) from None
        if not (seconds >= 0 if zero_allowed else seconds > 0) or seconds > 86400:
            low = "0 (off)" if zero_allowed else "0"
            raise self.fail(f"{key} {excerpt(value)} must be between {low} and 86400 seconds",
                            section, key)
        return seconds

    def timeout(self, value: str, section: str) -> float:
        """``connect_timeout``: seconds, over 0 and at most a day."""
        return self.seconds(value, section, "connect_timeout", zero_allowed=False)

    def keepalive(self, value: str, section: str) -> float:
        """``keepalive_interval``: seconds, 0 (off) to a day."""
        return self.seconds(value, section, "keepalive_interval", zero_allowed=True)

    def keepalive_count(self, value: str, section: str) -> int:
        """``keepalive_count_max``: unanswered probes before giving up, at least 1."""
        count = self.count(value, section, "keepalive_count_max")
        if count < 1:
            raise self.fail(f"keepalive_count_max {excerpt(value)} must be at least 1", section,
                            "keepalive_count_max")
        return count

    def boolean(self, value: str, section: str, key: str) -> bool:
        """``yes``/``no``/``true``/``false``, in any case."""
        lowered = value.lower()
        if lowered not in ("yes", "no", "true", "false"):
            raise self.fail(f"{excerpt(value)} is not yes or no", section, key)
        return lowered in ("yes", "true")

    def jumps(self, value: str, section: str) -> tuple[str, ...]:
        """A ``proxy_jump`` list of ``[user@]host[:port]`` hops."""
        try:
            return jump_list(value)
        except UsageError as exc:
            raise self.fail(str(exc), section, "proxy_jump") from None

    def relays(self, value: str, section: str) -> tuple[str, ...]:
        """A ``via`` list of relay host names (``none``: direct)."""
        names = relay_list(self.non_empty(value, section, "via"))
        for name in names:
            self.name(name, section, "via", "relay name")
        return names

    def forks(self, value: str, section: str, key: str) -> int:
        """A positive whole number (``relay_forks``)."""
        number = self.count(value, section, key)
        if number == 0:
            raise self.fail("must be at least 1", section, key)
        return number

    def count(self, value: str, section: str, key: str) -> int:
        """A whole number, zero or more."""
        try:
            number = int(value)
        except ValueError:
            raise self.fail(f"{excerpt(value)} is not a whole number", section, key) from None
        if number < 0:
            raise self.fail(f"{excerpt(value)} must not be negative", section, key)
        return number

    def non_empty(self, value: str, section: str, key: str) -> str:
        """``value`` itself, refused when empty."""
        if not value:
            raise self.fail("empty value", section, key)
        return value

    def env_name(self, value: str, section: str) -> str:
        """The name of an environment variable (``password_env``)."""
        if not _ENV_NAME.match(value):
            raise self.fail(f"{excerpt(value)} is not an environment variable name", section,
                            "password_env")
        return value

    def command(self, value: str, section: str, key: str = "password_cmd") -> str:
        """A ``password_cmd`` or ``relay_command``: it must split into at least one word."""
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise self.fail(f"cannot split the command into words: {exc}", section,
                            key) from None
        if not words:
            raise self.fail("empty value", section, key)
        return value

    def password_sources(self, section: str, keys: list[str]) -> None:
        """Refuse a section that gives more than one password source."""
        given = [key for key in PASSWORD_KEYS if key in keys]
        if len(given) > 1:
            raise self.fail(f"set only one of {', '.join(PASSWORD_KEYS)} (found "
                            f"{' and '.join(given)})", section, given[1])

    def names(self, value: str, section: str, key: str, what: str) -> list[str]:
        """A comma list of names and ranges (``web[01-03]``), expanded."""
        names: list[str] = []
        for item in split_list(value):
            try:
                expanded = expand(item)
            except RangeError as exc:
                raise self.fail(str(exc), section, key) from None
            names.extend(self.name(name, section, key, what) for name in expanded)
        return names

    def secret_from_environment(self, name: str, section: str,
                                environ: Mapping[str, str]) -> Secret:
        """``sudo_password_env``: the value of the variable it names, which must be set."""
        name = self.non_empty(name, section, "sudo_password_env")
        if name not in environ:
            raise self.fail(f"environment variable {clip(name)} is not set", section,
                            "sudo_password_env")
        return Secret(environ[name])


def host_settings(check: Validator, section: str, raw: Mapping[str, str],
                  environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One section's host keys as typed values (only the keys present).

    ``sudo_password_env`` is read from ``environ`` (default: ``os.environ``) and stored as
    ``sudo_password``.
    """
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
        "keepalive_interval": lambda v: check.keepalive(v, section),
        "keepalive_count_max": lambda v: check.keepalive_count(v, section),
        "known_hosts": lambda v: os.path.expanduser(check.non_empty(v, section, "known_hosts")),
        "identities_only": lambda v: check.boolean(v, section, "identities_only"),
        "proxy_jump": lambda v: check.jumps(check.non_empty(v, section, "proxy_jump"), section),
        "sudo_password": lambda v: Secret(v),
        "sudo_password_env": lambda v: check.secret_from_environment(v, section, environ),
        "via": lambda v: check.relays(v, section),
        "relay_command": lambda v: check.command(v, section, "relay_command"),
        "relay_forks": lambda v: check.forks(v, section, "relay_forks"),
        "forward_agent": lambda v: check.boolean(v, section, "forward_agent"),
    }
    settings = {key: converters[key](value if key in SECRET_KEYS else value.strip())
                for key, value in raw.items() if key in converters}
    if "sudo_password_env" in settings:
        settings["sudo_password"] = settings.pop("sudo_password_env")
    return settings


def undefined_children(children: Mapping[str, Sequence[str]]) -> Iterator[tuple[str, str]]:
    """``(group, child)`` for each child group named in ``children`` that is not defined, in
    file order."""
    for name, names in children.items():
        for child in names:
            if child not in children:
                yield name, child


@dataclass(frozen=True, slots=True)
class GroupCycle:
    """Groups that contain themselves: ``path`` goes round the cycle (its first group repeated
    at the end); ``group`` is the one whose ``children`` key closes it."""

    group: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return " -> ".join(self.path)


def find_group_cycles(children: Mapping[str, Sequence[str]]) -> list[GroupCycle]:
    """Every cycle of child groups, in the order a depth-first walk in file order meets them.

    ``children`` maps each defined group to its child groups; children that are not defined
    are skipped (:func:`undefined_children` reports them). The walk keeps its own stack, so a
    deep chain of groups cannot exhaust Python's recursion limit.
    """
    on_path, finished = 1, 2
    state: dict[str, int] = {}
    cycles: list[GroupCycle] = []
    for root in children:
        if root in state:
            continue
        state[root] = on_path
        path = [root]
        pending = [iter(children[root])]
        while pending:
            child = next(pending[-1], None)
            if child is None:
                state[path.pop()] = finished
                pending.pop()
            elif child not in children:
                continue
            elif state.get(child) == on_path:
                cycles.append(GroupCycle(path[-1], (*path[path.index(child):], child)))
            elif child not in state:
                state[child] = on_path
                path.append(child)
                pending.append(iter(children[child]))
    return cycles
