"""OpenSSH ``known_hosts`` files: look keys up, and append new ones safely.

Plain text only (no paramiko), so the parent process can record keys without importing the SSH
stack. Supports plain, wildcard, negated and hashed (``|1|salt|hash``) host patterns and the
``@revoked`` marker; ``@cert-authority`` lines are skipped (certificates are not supported).

Appending takes an exclusive ``flock`` on the file, re-reads it, skips lines already present and
writes the new lines in one ``write`` to a file opened with ``O_APPEND``: many hosts and several
runs at once never interleave or lose lines, and a reader never sees a half-written file.
paramiko's ``HostKeys.save`` rewrites the whole file unlocked and is never used.
"""

from __future__ import annotations

import base64
import binascii
import enum
import fcntl
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class KeyStatus(enum.Enum):
    """The verdict on a server's key for a host name."""

    KNOWN = "known"
    UNKNOWN = "unknown"
    CHANGED = "changed"
    REVOKED = "revoked"


def host_entry_name(hostname: str, port: int) -> str:
    """The name ssh writes for a host: ``host`` on port 22, else ``[host]:port``."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def checked_files(inventory_file: str | None, home: str) -> tuple[str, ...]:
    """Files a host's key is checked against: the inventory's known_hosts, then the user's."""
    user_file = str(Path(home) / ".ssh" / "known_hosts")
    return tuple(dict.fromkeys([*([inventory_file] if inventory_file else []), user_file]))


def record_file(inventory_file: str | None, home: str) -> str:
    """Where new keys are recorded: the inventory's known_hosts if set, else the user's."""
    return inventory_file or str(Path(home) / ".ssh" / "known_hosts")


def fingerprint(key_b64: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a base64 public key blob."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class _Entry:
    patterns: tuple[str, ...]
    key_type: str
    key_b64: str
    revoked: bool

    def matches(self, name: str) -> bool:
        positive = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            pattern = pattern[1:] if negated else pattern
            if _pattern_matches(pattern, name):
                if negated:
                    return False
                positive = True
        return positive


def _wildcard_matches(pattern: str, name: str) -> bool:
    """OpenSSH's pattern syntax: only ``*`` and ``?`` are special (``[`` is literal).

    A regular expression of ``.*`` pieces backtracks exponentially on a pattern with many
    ``*`` (``*a*a*a...b``: seconds at 10 stars, minutes at 12), and a known_hosts file is
    input. This matcher moves the last ``*`` forward one character at a time instead: at most
    ``len(pattern) * len(name)`` steps, and a pattern needing more plain characters than
    ``name`` has is refused before any step.
    """
    if len(pattern) - pattern.count("*") > len(name):
        return False
    p = n = 0
    star, resume = -1, 0
    while n < len(name):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, n
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", name[n]):
            p += 1
            n += 1
        elif star >= 0:
            resume += 1  # the last * takes one more character; retry from there
            p, n = star + 1, resume
        else:
            return False
    return pattern.count("*", p) == len(pattern) - p


def _pattern_matches(pattern: str, name: str) -> bool:
    name = name.lower()  # ssh lowercases host names, also before hashing them
    if pattern.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = pattern.split("|", 3)
            salt = base64.b64decode(salt_b64)
            expected = base64.b64decode(hash_b64)
        except (ValueError, binascii.Error):
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), expected)
    if "*" in pattern or "?" in pattern:
        return _wildcard_matches(pattern.lower(), name)
    return pattern.lower() == name


#: What separates the fields of a line for ssh: spaces and tabs, nothing else. ``str.split()``
#: and ``splitlines`` also break at form feeds, ``\x1c`` and Unicode line separators, which would
#: turn the tail of a comment into a live entry that ssh never sees.
_FIELD_SEPARATOR = re.compile(r"[ \t]+")


@dataclass
class KnownHosts:
    """The entries of one or more known_hosts files, indexed for fast lookups."""

    _exact: dict[str, list[_Entry]] = field(default_factory=dict)
    _scanned: list[_Entry] = field(default_factory=list)

    @classmethod
    def load(cls, paths: Iterable[str]) -> KnownHosts:
        """Read every file in ``paths`` that exists; unreadable or malformed lines are skipped."""
        known = cls()
        for path in paths:
            try:
                text = Path(path).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.split("\n"):  # as ssh: only a newline ends a line
                known._add_line(line)
        return known

    def _add_line(self, line: str) -> None:
        fields = _FIELD_SEPARATOR.split(line.strip(" \t\r"))
        if not fields[0] or fields[0].startswith("#"):
            return
        revoked = False
        if fields[0].startswith("@"):
            if fields[0] != "@revoked":
                return
            revoked = True
            fields = fields[1:]
        if len(fields) < 3:
            return
        entry = _Entry(tuple(fields[0].split(",")), fields[1], fields[2], revoked)
        plain = all(not p.startswith(("|", "!")) and "*" not in p and "?" not in p
                    for p in entry.patterns)
        if plain:
            for pattern in entry.patterns:
                self._exact.setdefault(pattern.lower(), []).append(entry)
        else:
            self._scanned.append(entry)

    def _entries_for(self, name: str) -> list[_Entry]:
        found = list(self._exact.get(name.lower(), ()))
        found.extend(entry for entry in self._scanned if entry.matches(name))
        return found

    def key_types(self, name: str) -> list[str]:
        """Key types recorded for ``name`` (not revoked), in file order, each once."""
        return list(dict.fromkeys(e.key_type for e in self._entries_for(name) if not e.revoked))

    def check(self, name: str, key_type: str, key_b64: str) -> KeyStatus:
        """Compare a server's key with what is recorded for ``name``."""
        entries = self._entries_for(name)
        if any(e.revoked and e.key_b64 == key_b64 for e in entries):
            return KeyStatus.REVOKED
        same_type = [e for e in entries if not e.revoked and e.key_type == key_type]
        if any(e.key_b64 == key_b64 for e in same_type):
            return KeyStatus.KNOWN
        if same_type or any(not e.revoked for e in entries):
            return KeyStatus.CHANGED
        return KeyStatus.UNKNOWN


def append_lines(path: str, lines: Sequence[str]) -> int:
    """Append ``lines`` to the known_hosts file at ``path`` under an exclusive lock.

    Lines already in the file are skipped; returns how many were written. Creates the file
    (mode 0600) and its directory (mode 0700) when missing, as ssh does.
    """
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(fd, "rb", closefd=False) as handle:
            existing = handle.read()
        present = {line.strip() for line in existing.decode("utf-8", "replace").split("\n")}
        new = [line for line in dict.fromkeys(lines) if line.strip() not in present]
        if not new:
            return 0
        prefix = b"\n" if existing and not existing.endswith(b"\n") else b""
        payload = prefix + "".join(line + "\n" for line in new).encode()
        written = os.write(fd, payload)
        if written != len(payload):
            raise OSError(f"short write to {path}")
        os.fsync(fd)
        return len(new)
    finally:
        os.close(fd)  # closing releases the flock
