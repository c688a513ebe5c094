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
    TransferPlanned,
)
from hostbatch.engine.outcome import BatchResult
from hostbatch.errors import FailureKind
from hostbatch.history.store import OK, HistoryStore, HostRow, RunRow
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.selection import Selection, select


def terminal_event(row: HostRow, action: str, detail: bytes = b"") -> TerminalEvent | None:
    """The terminal event a host's stored result stands for (``None``: nothing recorded);
    ``detail`` is the host's ``end`` row (a copy's ``done`` fields, as the recorder kept
    them)."""
    duration = row.duration or 0.0
    if row.kind is not None:
        try:
            kind = FailureKind(row.kind)
        except ValueError:
            kind = FailureKind.INTERNAL
        return HostFailed(row.host, kind, row.message, duration)
    if row.state == OK and action in ("put", "get"):
        return _transfer_done(row, duration, detail)
    if row.exit_status is not None:
        return HostExited(row.host, row.exit_status, duration, row.message)
    return None


def _transfer_done(row: HostRow, duration: float, detail: bytes) -> TransferDone:
    """A copy's ``done`` event; fields a damaged or older record lacks keep their defaults."""
    try:
        fields = json.loads(detail) if detail else {}
    except ValueError:
        fields = {}
    if not isinstance(fields, dict):
        fields = {}

    def number(name: str) -> int:
        value = fields.get(name, 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def text(name: str, default: str = "") -> str:
        value = fields.get(name, default)
        return value if isinstance(value, str) else default

    return TransferDone(row.host, row.files, row.bytes, duration,
                        method=text("method", "sftp"), unchanged=number("unchanged"),
                        deleted=number("deleted"), sync=fields.get("sync") is True,
                        dry_run=fields.get("dry_run") is True, note=text("note"),
                        modes=number("modes"))


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
        elif stream == "planned":
            record = json.loads(data)
            change = record["change"]
            yield TransferPlanned(host, change if change in ("delete", "chmod") else "send",
                                  record["path"])
        elif stream == "end" and host in rows:
            event = terminal_event(rows[host], run.action, data)
            if event is not None:
                yield event


def replayed_result(store: HistoryStore, run: RunRow, hosts: list[str]) -> BatchResult:
    """The run's :class:`BatchResult` for ``hosts``, as the live run folded it."""
    result = BatchResult(list(hosts))
    details = store.end_details(run.id) if run.action in ("put", "get") else {}
    for row in store.hosts(run.id):
        if row.host in result.hosts:
            event = terminal_event(row, run.action, details.get(row.host, b""))
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
