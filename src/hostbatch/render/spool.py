"""Collect every host's output with bounded memory and group hosts whose output is identical.

The gathering views (``-b``, ``--diff``) can only print once all hosts are done, so output must
be kept until then. A running host's output goes to a :class:`tempfile.SpooledTemporaryFile`
(memory up to :data:`SPOOL_LIMIT`, then disk) while an incremental hash runs over it. When the
host ends, its ``(hash, length, ending)`` key either joins an existing group, and its copy is
dropped, or starts a new group whose content is kept: small outputs as bytes, larger ones in a
single shared temporary file. So memory is bounded by the running hosts' spools plus the small
distinct outputs, and open files by the running hosts plus one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO

from hostbatch.engine.events import HostExited, HostFailed
from hostbatch.nodeset import natural_key
from hostbatch.secrets import redact

#: Bytes of a running host's output held in memory before its spool moves to disk.
SPOOL_LIMIT = 64 * 1024
#: A finished distinct output up to this size stays in memory; larger ones go to the store.
KEEP_IN_MEMORY = 16 * 1024
#: Read and write granularity when copying kept output.
CHUNK = 256 * 1024


@dataclass
class OutputGroup:
    """Hosts that produced the same bytes and ended the same way."""

    hosts: list[str]
    ending: str
    ran: bool
    size: int
    data: bytes | None = None
    offset: int = 0
    sorted_hosts: list[str] = field(default_factory=list)


class _Running:
    """One host's output so far: a spool and a running hash."""

    __slots__ = ("hash", "size", "spool")

    def __init__(self) -> None:
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_LIMIT)  # closed when the host ends, or by OutputCollector.close
        self.hash = hashlib.blake2b(digest_size=20)
        self.size = 0

    def add(self, data: bytes) -> None:
        self.spool.write(data)
        self.hash.update(data)
        self.size += len(data)


def ending_of(event: HostExited | HostFailed, address: str | None = None) -> str:
    """How a host ended, as a group header shows it: ``""`` for exit status 0, ``exit status
    N``, or ``KIND: MESSAGE`` with the host's own address written ``<host>``, so that hosts
    failing for the same reason fall into one group."""
    if isinstance(event, HostExited):
        return "" if event.exit_status == 0 else f"exit status {event.exit_status}"
    message = " ".join(redact(event.message).splitlines())
    if address:
        # Whole words only: a host called "a" must not rewrite every "a" in the message.
        message = re.sub(rf"(?<![\w.-]){re.escape(address)}(?![\w-]|\.\w)", "<host>", message)
    return f"{event.kind.value}: {message}"


class OutputCollector:
    """Keeps one stream's output of every host until the end, grouped by identical content."""

    def __init__(self, addresses: Mapping[str, str] | None = None, *,
                 by_ending: bool = True) -> None:
        self.addresses = dict(addresses or {})
        self.by_ending = by_ending
        self._running: dict[str, _Running] = {}
        self._groups: dict[tuple[bytes, int, str, bool], OutputGroup] = {}
        self._store: IO[bytes] | None = None
        self._store_end = 0

    def add(self, host: str, data: bytes) -> None:
        """Append ``data`` to the output of ``host``."""
        running = self._running.get(host)
        if running is None:
            running = self._running[host] = _Running()
        running.add(data)

    def has_output(self, host: str) -> bool:
        """True if ``host`` is running and has written something."""
        return host in self._running

    def finish(self, event: HostExited | HostFailed) -> None:
        """The host ended: file its output under the group of identical outputs."""
        running = self._running.pop(event.host, None)
        digest, size = (running.hash.digest(), running.size) if running else (b"", 0)
        ran = isinstance(event, HostExited) or not self.by_ending
        ending = ending_of(event, self.addresses.get(event.host)) if self.by_ending else ""
        key = (digest, size, ending, ran)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = OutputGroup([], ending, ran, size)
            if running is not None:
                self._keep(group, running.spool)
        group.hosts.append(event.host)
        if running is not None:
            running.spool.close()

    def _keep(self, group: OutputGroup, spool: IO[bytes]) -> None:
        spool.seek(0)
        if group.size <= KEEP_IN_MEMORY:
            group.data = spool.read()
            return
        if self._store is None:
            self._store = tempfile.TemporaryFile()  # noqa: SIM115 (lives until close())
        self._store.seek(self._store_end)
        shutil.copyfileobj(spool, self._store, CHUNK)
        group.offset = self._store_end
        self._store_end += group.size

    def groups(self) -> list[OutputGroup]:
        """Every group: hosts that ran first, then those that failed; each part largest group
        first, ties in natural order of their first host."""
        groups = list(self._groups.values())
        for group in groups:
            group.sorted_hosts = sorted(group.hosts, key=natural_key)
        return sorted(groups, key=lambda g: (not g.ran, -len(g.hosts),
                                             natural_key(g.sorted_hosts[0])))

    def chunks(self, group: OutputGroup) -> Iterator[bytes]:
        """The group's output, in pieces of at most :data:`CHUNK` bytes."""
        if group.data is not None or group.size == 0:
            if group.data:
                yield group.data
            return
        assert self._store is not None
        position, left = group.offset, group.size
        while left:
            self._store.seek(position)
            piece = self._store.read(min(CHUNK, left))
            position += len(piece)
            left -= len(piece)
            yield piece

    def content(self, group: OutputGroup) -> bytes:
        """The group's whole output (for diffing, which needs it in memory)."""
        return b"".join(self.chunks(group))

    def close(self) -> None:
        """Drop every spool and the store."""
        for running in self._running.values():
            running.spool.close()
        self._running.clear()
        if self._store is not None:
            self._store.close()
            self._store = None
