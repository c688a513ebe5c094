"""Read an OpenSSH client config (``~/.ssh/config`` or ``-F FILE``) with paramiko's SSHConfig.

paramiko matches ``Host``/``Match`` blocks, wildcards and negations and applies "first value
wins" as ssh does; two gaps are filled here before its parser sees the text:

* ``Include`` (which paramiko does not implement) is expanded in place: globs, ``~``, and
  relative paths taken from ``~/.ssh`` as ssh does; an include inside a ``Host``/``Match``
  block applies under that block's condition, and the block is reopened after it.
* ``Match exec`` would run a local command for every host (and needs the ``invoke``
  package): hostbatch never runs it; such a block is treated as not matching, with a warning.

Only the settings hostbatch uses are returned, as plain data under HostSpec field names:
``HostName``, ``User``, ``Port``, ``IdentityFile``, ``IdentitiesOnly``, ``ProxyJump`` (the text
as written: :mod:`hostbatch.prepare` splits and checks the hops, as it does an inventory's
``proxy_jump``), ``ConnectTimeout``, ``UserKnownHostsFile``.

This module runs in the parent process, and only when an ssh_config file is in use; paramiko
is imported when the first file is loaded, not when this module is.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostbatch.errors import UsageError, clip, excerpt

if TYPE_CHECKING:
    import paramiko

_LINE = re.compile(r"^\s*(\w+)(?:\s*=\s*|\s+)(.+?)\s*$")
_MAX_DEPTH = 16


class SshConfig:
    """A parsed ssh_config; :meth:`lookup` gives one host's settings."""

    def __init__(self, config: paramiko.SSHConfig, path: Path, home: str,
                 notes: list[str]) -> None:
        self.config = config
        self.path = path
        self.home = home
        #: Non-fatal findings for the user (ignored Match exec blocks).
        self.notes = notes

    @classmethod
    def load(cls, path: Path, home: str) -> SshConfig:
        """Parse ``path`` (and what it includes); a broken file is a one-line usage error."""
        notes: list[str] = []
        try:
            text = "\n".join(_expand(path, home, 0, notes))
        except ValueError as exc:  # shlex: an unclosed quote in a Host, Include or path line
            raise UsageError(f"cannot parse ssh_config {path}: {clip(str(exc))}") from None
        with _invoke_hidden():
            import paramiko
        try:
            config = paramiko.SSHConfig.from_text(text)
        except (paramiko.ConfigParseError, ValueError) as exc:
            raise UsageError(f"cannot parse ssh_config {path}: {clip(str(exc), 160)}") from None
        return cls(config, path, home, notes)

    def lookup(self, name: str) -> dict[str, Any]:
        """The settings ssh_config gives host ``name``, typed, only those it sets."""
        try:
            found = self.config.lookup(name)
        except Exception as exc:  # paramiko raises assorted errors for odd Match lines
            raise UsageError(f"ssh_config {self.path}: cannot look up {excerpt(name)}: "
                             f"{clip(str(exc))}") from None
        result: dict[str, Any] = {}
        if found.get("hostname") and found["hostname"] != name:
            result["hostname"] = found["hostname"]
        if "user" in found:
            result["user"] = found["user"]
        if "port" in found:
            result["port"] = self._number(found["port"], "Port", int)
        if "identityfile" in found:
            result["identity_files"] = tuple(self._path(p) for p in found["identityfile"])
        if "identitiesonly" in found:
            result["identities_only"] = found["identitiesonly"].lower() == "yes"
        if "proxyjump" in found:
            result["proxy_jump"] = found["proxyjump"]
        if "connecttimeout" in found:
            result["connect_timeout"] = float(self._number(found["connecttimeout"],
                                                           "ConnectTimeout", int))
        if "serveraliveinterval" in found:
            result["keepalive_interval"] = float(self._number(
                found["serveraliveinterval"], "ServerAliveInterval", int, minimum=0))
        if "serveralivecountmax" in found:
            result["keepalive_count_max"] = self._number(found["serveralivecountmax"],
                                                         "ServerAliveCountMax", int)
        if "userknownhostsfile" in found:
            first = shlex.split(found["userknownhostsfile"])[:1]
            if first and first[0] != "none":
                result["known_hosts"] = self._path(first[0])
        return result

    def _path(self, value: str) -> str:
        if value == "~" or value.startswith("~/"):
            return self.home + value[1:]
        return value

    def _number(self, value: str, key: str, kind: type[int], *, minimum: int = 1) -> int:
        try:
            number = kind(value)
        except ValueError:
            raise UsageError(f"ssh_config {self.path}: {key} {excerpt(value)} is not a "
                             "number") from None
        if number < minimum:
            raise UsageError(f"ssh_config {self.path}: {key} {excerpt(value)} must be at "
                             f"least {minimum}")
        return number


@contextlib.contextmanager
def _invoke_hidden() -> Iterator[None]:
    """Hide the ``invoke`` package while paramiko is first imported.

    ``paramiko.config`` imports ``invoke`` (when installed) only to run ``Match exec``, which
    hostbatch never runs; hiding it saves ~30 ms (asyncio, unittest.mock). The hiding ends
    with the import, so the process can still import ``invoke`` itself.
    """
    if "paramiko" in sys.modules or "invoke" in sys.modules:
        yield
        return
    sys.modules["invoke"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        del sys.modules["invoke"]


def _include_paths(pattern: str, home: str) -> list[str]:
    if pattern.startswith("~"):
        pattern = home + pattern[1:]
    elif not os.path.isabs(pattern):
        pattern = os.path.join(home, ".ssh", pattern)
    return sorted(glob.glob(pattern))


def _expand(path: Path, home: str, depth: int, notes: list[str],
            outer: str | None = None) -> list[str]:
    """The lines of ``path`` with every ``Include`` replaced by the included lines.

    ``outer`` is the condition (as Match criteria) of the block an Include sits in: the
    included file's own ``Host``/``Match`` blocks then apply only where it holds too, as in ssh.
    """
    if depth > _MAX_DEPTH:
        raise UsageError(f"ssh_config {path}: Include nested more than {_MAX_DEPTH} deep")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read ssh_config {path}: {clip(str(exc), 160)}") from None
    lines: list[str] = []
    header: str | None = None
    condition = outer
    for number, raw in enumerate(text.splitlines(), 1):
        match = _LINE.match(raw)
        if raw.lstrip().startswith("#") or not match:
            lines.append(raw)
            continue
        key, value = match.group(1).lower(), match.group(2)
        if key in ("host", "match"):
            criteria = f"originalhost {','.join(shlex.split(value))}" if key == "host" else value
            if key == "match" and re.search(r"(^|\s)!?exec(\s|$)", value):
                notes.append(f"{path} line {number}: 'Match exec' is not run by hostbatch; "
                             "that block is ignored")
                criteria = "host !*"
            condition = f"{outer} {criteria}" if outer else criteria
            header = raw if outer is None and criteria != "host !*" else f"Match {condition}"
            lines.append(header)
        elif key == "include":
            opened = False
            for pattern in shlex.split(value):
                for included in _include_paths(pattern, home):
                    sub = _expand(Path(included), home, depth + 1, notes, condition)
                    opened = opened or any(_is_header(line) for line in sub)
                    lines.extend(sub)
            if opened:  # the included file opened blocks of its own: return to ours
                lines.append(header or (f"Match {outer}" if outer else "Host *"))
        elif key in ("identityfile", "userknownhostsfile"):
            # ~ is the Environment's HOME (paramiko would use the process's).
            words = [home + w[1:] if w == "~" or w.startswith("~/") else w
                     for w in shlex.split(value)]
            lines.append(f"{match.group(1)} {' '.join(shlex.quote(w) for w in words)}")
        else:
            lines.append(raw)
    return lines


def _is_header(line: str) -> bool:
    match = _LINE.match(line)
    return match is not None and match.group(1).lower() in ("host", "match")
