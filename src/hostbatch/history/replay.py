"""Turn a recorded run back into the engine events it was made of.

Replayed events go into the same renderers a live run uses, so ``hostbatch history show``
prints a run exactly as it was printed live, in every output mode: the output rows come back
in arrival order, and each host's terminal event at the point where it arrived.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator

from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    OutputLines,
    TerminalEvent,
    TransferDone,
)
from hostbatch.engine.outcome import BatchResult
from hostbatch.errors import FailureKind
from hostbatch.history.store import OK, HistoryStore, HostRow, RunRow
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.selection import Selection, select


def terminal_event(row: HostRow, action: str) -> TerminalEvent | None:
    """The terminal event a host's stored result stands for (``None``: nothing recorded)."""
    duration = row.duration or 0.0
    if row.kind is not None:
        try:
            kind = FailureKind(row.kind)
        except ValueError:
            kind = FailureKind.INTERNAL
        return HostFailed(row.host, kind, row.message, duration)
    if row.state == OK and action in ("put", "get"):
        return TransferDone(row.host, row.files, row.bytes, duration)
    if row.exit_status is not None:
        return HostExited(row.host, row.exit_status, duration, row.message)
    return None


def replay(store: HistoryStore, run: RunRow, hosts: Collection[str] | None = None
           ) -> Iterator[Event]:
    """The events of ``run`` (only of ``hosts`` if given), in their original order."""
    rows = {row.host: row for row in store.hosts(run.id)}
    wanted = set(rows) if hosts is None else set(hosts)
    for _, host, stream, data in store.output(run.id):
        if host not in wanted:
            continue
        if stream == "stdout":
            yield OutputLines(host, "stdout", data)
        elif stream == "stderr":
            yield OutputLines(host, "stderr", data)
        elif stream == "file":
            record = json.loads(data)
            yield FileTransferred(host, record["direction"], record["source"],
                                  record["destination"], record["size"], record["duration"])
        elif stream == "end" and host in rows:
            event = terminal_event(rows[host], run.action)
            if event is not None:
                yield event


def replayed_result(store: HistoryStore, run: RunRow, hosts: list[str]) -> BatchResult:
    """The run's :class:`BatchResult` for ``hosts``, as the live run folded it."""
    result = BatchResult(list(hosts))
    for row in store.hosts(run.id):
        if row.host in result.hosts:
            event = terminal_event(row, run.action)
            if event is not None:
                result.record(event)
    result.interrupted = run.interrupted
    return result


def host_specs(store: HistoryStore, run: RunRow, hosts: Collection[str]) -> list[HostSpec]:
    """``hosts`` of ``run`` as the renderers know hosts: a name and the address it had."""
    return [HostSpec(row.host, row.address or row.host) for row in store.hosts(run.id)
            if row.host in hosts]


def match_hosts(store: HistoryStore, run: RunRow, patterns: list[str]) -> list[str]:
    """The hosts of ``run`` that ``patterns`` (names, globs, ranges, as ``-h``) select, in
    the run's order; all of them when ``patterns`` is empty. A pattern that matches none of
    the run's hosts is an error naming it."""
    names = [row.host for row in store.hosts(run.id)]
    if not patterns:
        return names
    recorded = Inventory(path=f"run {run.id}",
                         hosts={name: HostSpec(name, name) for name in names})
    return [spec.name for spec in select(recorded, Selection(hosts=patterns))]
