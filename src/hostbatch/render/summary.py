"""The end-of-run summary on stderr: counts, every failure with its reason, the slowest hosts."""

from __future__ import annotations

from hostbatch.engine.outcome import BatchResult, HostOutcome
from hostbatch.render.output import SafeStream

SLOWEST = 3
_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


def _reason(outcome: HostOutcome) -> str:
    if outcome.failure is not None:
        return f"{outcome.failure.value}: {outcome.message}"
    note = f" ({outcome.message})" if outcome.message else ""
    return f"exit status {outcome.exit_status}{note}"


def format_summary(result: BatchResult, elapsed: float, *, color: bool) -> str:
    """The summary text, one line per failed host."""

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if color else text

    counts = [paint(_GREEN, f"{len(result.ok)} ok")]
    if result.failed:
        counts.append(paint(_RED, f"{len(result.failed)} failed"))
    if result.unreachable:
        counts.append(paint(_RED, f"{len(result.unreachable)} unreachable"))
    if result.not_completed:
        counts.append(paint(_YELLOW, f"{len(result.not_completed)} not completed"))
    total = len(result.hosts)
    lines = [f"hostbatch: {total} host{'s' if total != 1 else ''} in {elapsed:.2f}s: "
             + ", ".join(counts)]
    width = max((len(o.host) for o in result.outcomes.values()), default=0)
    for label, group in (("failed", result.failed), ("unreachable", result.unreachable),
                         ("not completed", result.not_completed)):
        for outcome in group:
            label_text = paint(_BOLD, f"{label:<13}")
            lines.append(f"  {label_text} {outcome.host:<{width}}  {_reason(outcome)}")
    if result.interrupted:
        lines.append(paint(_YELLOW, "  interrupted: the hosts above under 'not completed' did "
                           "not finish"))
    finished = [o for o in result.outcomes.values() if o.exit_status is not None]
    if len(finished) > 1:
        slowest = sorted(finished, key=lambda o: o.duration, reverse=True)[:SLOWEST]
        lines.append("  slowest: " + ", ".join(f"{o.host} {o.duration:.2f}s" for o in slowest))
    return "\n".join(lines) + "\n"


def write_summary(stream: SafeStream, result: BatchResult, elapsed: float, *,
                  color: bool) -> None:
    """Write the summary to ``stream`` (stderr) and flush."""
    stream.write(format_summary(result, elapsed, color=color).encode("utf-8"))
    stream.flush()
