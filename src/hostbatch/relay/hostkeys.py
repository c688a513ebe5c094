"""Host keys across a relay: the controller's known_hosts lines go with the job; keys the
relay learns (``--accept-new``) come back as events and are recorded by the controller.

The relay checks keys against a private file made of the lines sent here (and its user's own
``~/.ssh/known_hosts``, as on any machine); the controller's files are never copied whole.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from hostbatch.engine.events import HostKeyLearned
from hostbatch.inventory.model import HostSpec
from hostbatch.known_hosts import checked_files, host_entry_name, record_file

_FIELDS = re.compile(r"[ \t]+")


def _names(hosts: Iterable[HostSpec]) -> set[str]:
    """The known_hosts entry names of ``hosts`` and their jump hosts, lowercased."""
    names = set()
    for spec in hosts:
        for one in (*spec.jump_chain, spec):
            names.add(host_entry_name(one.hostname, one.port).lower())
    return names


def shard_lines(hosts: Sequence[HostSpec], home: str) -> tuple[str, ...]:
    """The lines of the controller's known_hosts files that may concern ``hosts``: those
    naming one of them, and every line whose names cannot be read without matching
    (hashed, wildcard, negated) or that is a marker (``@revoked``, ``@cert-authority``)."""
    wanted = _names(hosts)
    files = dict.fromkeys(path for spec in hosts for one in (*spec.jump_chain, spec)
                          for path in checked_files(one.known_hosts, home))
    lines: dict[str, None] = {}
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.split("\n"):
            fields = _FIELDS.split(line.strip(" \t\r"))
            if not fields[0] or fields[0].startswith("#"):
                continue
            patterns = fields[0].split(",")
            opaque = fields[0].startswith("@") or any(
                pattern.startswith(("|", "!")) or "*" in pattern or "?" in pattern
                for pattern in patterns)
            if opaque or any(pattern.lower() in wanted for pattern in patterns):
                lines[line.strip(" \t\r")] = None
    return tuple(lines)


def relay_specs(hosts: Sequence[HostSpec], known_hosts_file: str) -> tuple[HostSpec, ...]:
    """``hosts`` (and their jump hosts) checking keys against the relay's private file."""

    def moved(spec: HostSpec) -> HostSpec:
        hops = tuple(moved(hop) for hop in spec.jump_chain)
        return dataclasses.replace(spec, known_hosts=known_hosts_file, jump_chain=hops)

    return tuple(moved(spec) for spec in hosts)


def controller_event(event: HostKeyLearned, hosts: dict[str, HostSpec],
                     home: str) -> HostKeyLearned:
    """A key the relay learned, to be recorded where the controller records that host's keys
    (the relay's own file is private and temporary)."""
    spec = hosts.get(event.host)
    path = record_file(spec.known_hosts if spec is not None else None, home)
    return dataclasses.replace(event, path=path)
