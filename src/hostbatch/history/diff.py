"""What changed, host by host, between two recorded runs of the same command.

For each host: a change of final state (``exit 0 -> exit 1``, ``exit 0 -> unreachable``), a
unified diff of its stdout and of its stderr, or that it took part in only one of the runs.
Hosts that are the same in both runs print nothing. Only one host's output is held at a time.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from hostbatch.history.store import HistoryStore, HostRow, RunRow


def status_text(row: HostRow) -> str:
    """A host's final state in a few words: ``exit 0``, ``unreachable (connect: refused)``."""
    if row.state is None:
        return "no result recorded"
    if row.kind is None:
        return f"exit {row.exit_status}"
    return f"{row.state} ({row.kind}: {row.message})"


def _same_status(a: HostRow, b: HostRow) -> bool:
    # Messages carry details (addresses, timings) that differ between runs: compare the facts.
    return (a.state, a.exit_status, a.kind) == (b.state, b.exit_status, b.kind)


def _streams(store: HistoryStore, run_id: int, host: str) -> dict[str, list[str]]:
    """A host's stdout and stderr lines; landed files count as stdout lines."""
    data: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    for _, _, stream, chunk in store.output(run_id, host):
        if stream in data:
            data[stream] += chunk
        elif stream == "file":
            record = json.loads(chunk)
            data["stdout"] += (f"{record['direction']} {record['source']} -> "
                               f"{record['destination']} ({record['size']} bytes)\n").encode()
    return {stream: bytes(raw).decode("utf-8", "replace").split("\n")[:-1] if raw else []
            for stream, raw in data.items()}


@dataclass
class HostChange:
    """How one host differs between the runs; ``lines`` is what ``history diff`` prints."""

    host: str
    lines: list[str] = field(default_factory=list)


def diff_runs(store: HistoryStore, first: RunRow, second: RunRow) -> Iterator[HostChange]:
    """One :class:`HostChange` per host that differs, in the first run's host order, then
    the hosts only in the second run."""
    rows_a = {row.host: row for row in store.hosts(first.id)}
    rows_b = {row.host: row for row in store.hosts(second.id)}
    order = list(rows_a) + [host for host in rows_b if host not in rows_a]
    for host in order:
        a, b = rows_a.get(host), rows_b.get(host)
        if a is None or b is None:
            present, row = (first, a) if b is None else (second, b)
            assert row is not None
            yield HostChange(host, [f"==== {host}: only in run {present.id} "
                                    f"({status_text(row)})"])
            continue
        change = HostChange(host)
        if not _same_status(a, b):
            change.lines.append(f"==== {host}: {status_text(a)} -> {status_text(b)}")
        out_a, out_b = _streams(store, first.id, host), _streams(store, second.id, host)
        for stream in ("stdout", "stderr"):
            if out_a[stream] == out_b[stream]:
                continue
            if not change.lines:
                change.lines.append(f"==== {host}: output changed")
            change.lines.extend(difflib.unified_diff(
                out_a[stream], out_b[stream], f"run {first.id} {host} {stream}",
                f"run {second.id} {host} {stream}", lineterm=""))
        if change.lines:
            yield change
