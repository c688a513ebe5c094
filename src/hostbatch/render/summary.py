"""The end-of-run summary on stderr: counts, the failures, the slowest hosts.

Failures were already printed once, live, as they happened; so by default (``compact``) the
summary names them again only as one line per kind with the folded host list
(``timed out (3): web[04,07],db02``). ``full`` (``-v``, ``--summary full``, and ``-q``, where
nothing was printed live) gives one line per host with its reason instead.
"""

from __future__ import annotations

from hostbatch.engine.outcome import BatchResult, HostOutcome
from hostbatch.errors import FailureKind
from hostbatch.nodeset import fold_text
from hostbatch.render.lines import format_size, modes_changed
from hostbatch.render.output import SafeStream, shorten

SLOWEST = 3
#: The summary's two forms (``--summary``).
SUMMARY_FORMS = ("compact", "full")
_GREEN, _RED, _YELLOW, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"


_LABELS = {FailureKind.AUTH: "auth failed", FailureKind.HOSTKEY: "host key",
           FailureKind.PROTOCOL: "protocol", FailureKind.TIMEOUT: "timed out",
           FailureKind.DISCONNECT: "lost", FailureKind.INTERRUPTED: "interrupted",
           FailureKind.SKIPPED: "skipped", FailureKind.INTERNAL: "error",
           FailureKind.RELAY: "relay"}
#: Order of the counts in the first line: the command's own failures, then exit-3 kinds.
_COUNT_ORDER = ("failed", "unreachable", "auth failed", "host key", "protocol", "timed out",
                "lost", "relay", "error", "interrupted", "skipped")


def _label(outcome: HostOutcome) -> str:
    """The left column: ``failed`` for a non-zero exit, else a word for the failure kind."""
    if outcome.failure in (None, FailureKind.TRANSFER):
        return "failed"
    return _LABELS.get(outcome.failure, "unreachable")


def _kind(outcome: HostOutcome) -> str:
    """The compact form's group: the exit status for a command that failed (``exit 2``),
    ``transfer failed`` for a copy, else the count line's label."""
    if outcome.failure is None:
        return f"exit {outcome.exit_status}"
    if outcome.failure is FailureKind.TRANSFER:
        return "transfer failed"
    return _label(outcome)


def _reason(outcome: HostOutcome) -> str:
    """The reason on one line (a multi-line message would break the column layout)."""
    message = " ".join(outcome.message.split("\n"))
    if outcome.failure is not None:
        return f"{outcome.failure.value}: {message}"
    note = f" ({message})" if message else ""
    return f"exit status {outcome.exit_status}{note}"


def _count_line(result: BatchResult, problems: list[HostOutcome], elapsed: float,
                color: bool) -> str:
    """``hostbatch: N hosts in S: 6 ok, 2 failed, 1 timed out``."""

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    counts: dict[str, int] = {}
    for outcome in problems:
        counts[_label(outcome)] = counts.get(_label(outcome), 0) + 1
    parts = [paint(_GREEN, f"{len(result.ok)} ok")]
    for label in _COUNT_ORDER:
        if counts.get(label):
            code = _YELLOW if label in ("interrupted", "skipped") else _RED
            parts.append(paint(code, f"{counts[label]} {label}"))
    total = len(result.hosts)
    return (f"hostbatch: {total} host{'s' if total != 1 else ''} in {elapsed:.2f}s: "
            + ", ".join(parts))


def _failure_lines(problems: list[HostOutcome], *, full: bool, width: int | None) -> list[str]:
    """Per host (``full``), each line cut to ``width``; or one line per kind (compact)."""
    if full:
        column = max((len(o.host) for o in problems), default=0)
        return [shorten(f"  {_label(o):<11} {o.host:<{column}}  {_reason(o)}", width)
                for o in problems]
    groups: dict[str, list[str]] = {}
    for outcome in problems:
        groups.setdefault(_kind(outcome), []).append(outcome.host)
    # The host list is the point of the line: it is never cut.
    return [f"  {kind} ({len(hosts)}): {fold_text(hosts)}" for kind, hosts in groups.items()]


def format_summary(result: BatchResult, elapsed: float, *, color: bool, full: bool = False,
                   width: int | None = None) -> str:
    """The summary text: a count line, then the hosts that did not succeed (compact: one line
    per kind; ``full``: one line per host, cut to ``width`` columns when given)."""
    problems = [o for o in (result.outcomes.get(h) for h in result.hosts) if o and not o.ok]
    lines = [_count_line(result, problems, elapsed, color)]
    if result.stop_reason is not None:
        never = sum(1 for o in problems if o.failure is FailureKind.SKIPPED)
        lines.append(f"  rollout stopped: {result.stop_reason}; {never} host"
                     f"{'s' if never != 1 else ''} not started")
    synced = [o for o in result.outcomes.values() if o.sync and o.ok]
    if synced:
        lines.append(f"  sync: {sum(o.files for o in synced)} sent "
                     f"({format_size(sum(o.bytes for o in synced))}), "
                     f"{sum(o.unchanged for o in synced)} unchanged, "
                     f"{modes_changed(sum(o.modes for o in synced))}"
                     f"{sum(o.deleted for o in synced)} deleted on {len(synced)} host"
                     f"{'s' if len(synced) != 1 else ''}")
    lines.extend(_failure_lines(problems, full=full, width=width))
    # Hosts that ran the command, and those it timed out on (often the very slowest).
    finished = [o for o in result.outcomes.values()
                if o.exit_status is not None or o.failure is FailureKind.TIMEOUT]
    if len(finished) > 1:
        slowest = sorted(finished, key=lambda o: o.duration, reverse=True)[:SLOWEST]
        lines.append("  slowest: " + ", ".join(f"{o.host} {o.duration:.2f}s" for o in slowest))
    return "\n".join(lines) + "\n"


def write_summary(stream: SafeStream, result: BatchResult, elapsed: float, *,
                  color: bool, full: bool = False, width: int | None = None) -> None:
    """Write the summary to ``stream`` (stderr) and flush."""
    stream.write(format_summary(result, elapsed, color=color, full=full,
                                width=width).encode("utf-8"))
    stream.flush()
