"""What ``hostbatch keyscan`` decides about the keys it fetched, apart from how it shows them.

The workers only read keys (key exchange, no authentication). Here, in the parent, each host's
key is judged against its known_hosts files (:class:`~hostbatch.known_hosts.KeyStatus`), hosts
that show one same key under different names are found (cloned machine images), and the lines
to append are grouped by the file they go to. Changed and revoked keys are never offered for
recording. The command (:mod:`hostbatch.cli.keyscan`) asks, prints and writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hostbatch.engine.events import Event, HostFailed, HostKeyScanned
from hostbatch.inventory.model import HostSpec
from hostbatch.known_hosts import KeyStatus, KnownHosts, checked_files, record_file


@dataclass
class HostKeyCheck:
    """One host's scanned key and the verdict on it; ``status`` is None when the host gave no
    key (then ``kind`` and ``reason`` say why)."""

    host: str
    status: KeyStatus | None
    entry: str = ""
    key_type: str = ""
    key_b64: str = ""
    fingerprint: str = ""
    record_file: str = ""
    reason: str = ""
    kind: str = ""
    shared_with: list[str] = field(default_factory=list)

    @property
    def unreachable(self) -> bool:
        """The host gave no key: refused, timed out, or never answered."""
        return self.status is None

    @property
    def known_hosts_line(self) -> str:
        """The line recording this key, as ssh writes it."""
        return f"{self.entry} {self.key_type} {self.key_b64}"


def compare(hosts: Sequence[HostSpec], events: Mapping[str, Event],
            home: str) -> list[HostKeyCheck]:
    """A check per host, in selection order: its key's status against its known_hosts files
    (each distinct set of files is read once)."""
    caches: dict[tuple[str, ...], KnownHosts] = {}
    checks: list[HostKeyCheck] = []
    for spec in hosts:
        event = events.get(spec.name)
        if isinstance(event, HostKeyScanned):
            files = checked_files(spec.known_hosts, home)
            known = caches.get(files) or caches.setdefault(files, KnownHosts.load(files))
            status = known.check(event.entry, event.key_type, event.key_b64)
            checks.append(HostKeyCheck(spec.name, status, event.entry, event.key_type,
                                       event.key_b64, event.fingerprint,
                                       record_file(spec.known_hosts, home)))
        elif isinstance(event, HostFailed):
            checks.append(HostKeyCheck(spec.name, None, reason=event.message,
                                       kind=event.kind.value))
        else:
            checks.append(HostKeyCheck(spec.name, None, reason="no answer", kind="internal"))
    return checks


def mark_shared(checks: Sequence[HostKeyCheck]) -> list[list[HostKeyCheck]]:
    """Groups of checks whose different hosts (entries) show one same key: cloned images.
    Each member's ``shared_with`` is set to the other hosts of its group.

    Two inventory names for one address and port are one host and do not count.
    """
    by_key: dict[str, list[HostKeyCheck]] = {}
    for check in checks:
        if check.key_b64:
            by_key.setdefault(check.key_b64, []).append(check)
    groups = [group for group in by_key.values() if len({c.entry for c in group}) > 1]
    for group in groups:
        for check in group:
            check.shared_with = [other.host for other in group if other is not check]
    return groups


def new_keys(checks: Sequence[HostKeyCheck]) -> list[HostKeyCheck]:
    """The checks whose key is in none of the host's files: what may be recorded."""
    return [check for check in checks if check.status is KeyStatus.UNKNOWN]


def needs_attention(checks: Sequence[HostKeyCheck]) -> bool:
    """Some key changed or is revoked, or some host gave no key: the run cannot be clean."""
    return any(check.status in (KeyStatus.CHANGED, KeyStatus.REVOKED, None)
               for check in checks)


def lines_by_file(new: Sequence[HostKeyCheck]) -> dict[str, list[str]]:
    """The known_hosts lines to append, grouped by the file each goes to, in first-seen
    order."""
    by_file: dict[str, list[str]] = {}
    for check in new:
        by_file.setdefault(check.record_file, []).append(check.known_hosts_line)
    return by_file
