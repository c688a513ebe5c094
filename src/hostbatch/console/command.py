"""Run one console command on the selected hosts, exactly as ``batch_run`` shows and records it.

The command goes to the standing workers (:class:`~hostbatch.engine.standing.StandingPool`),
which reuse each host's open connection. Its events feed ``batch_run``'s renderers (streamed
``HOST: LINE`` or gathered), its history recorder (so ``hostbatch history`` and ``@failed``
see it) and a :class:`~hostbatch.engine.outcome.BatchResult` for the one-line summary.
Ctrl-C (and SIGTERM, SIGHUP) cancel the command on every host, as in a run.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from hostbatch.actions import RunCommand
from hostbatch.cli.arguments import OutputOptions, RunOptions
from hostbatch.cli.environment import Environment
from hostbatch.cli.execute import make_renderers, start_recorder
from hostbatch.engine.events import Event, HostExited, HostKeyLearned
from hostbatch.engine.outcome import BatchResult
from hostbatch.engine.pool import interrupt_handlers
from hostbatch.engine.standing import StandingPool
from hostbatch.engine.standing_messages import HostConnected, StandingEvent
from hostbatch.inventory.model import HostSpec
from hostbatch.known_hosts import append_lines
from hostbatch.render.output import SafeStream, use_color
from hostbatch.render.summary import format_summary, write_summary

#: Least time between two updates of the connection progress line.
PROGRESS_EVERY = 0.1


@dataclass
class ConsoleIO:
    """What every console command writes to and runs with."""

    env: Environment
    stdout: SafeStream
    stderr: SafeStream
    options: RunOptions
    pool: StandingPool
    warn: Callable[[str], None]

    @property
    def color(self) -> bool:
        """Whether the summary on stderr is coloured."""
        return use_color(bool(self.env.stderr_isatty), self.env.environ)


def _record_key(event: HostKeyLearned, warn: Callable[[str], None]) -> None:
    """``--accept-new``: append a learned key to known_hosts, here in the parent."""
    try:
        if append_lines(event.path, [event.line]):
            warn(f"{event.host}: recorded new host key {event.fingerprint} in {event.path}")
    except OSError as exc:
        warn(f"{event.host}: could not record its host key in {event.path}: {exc.strerror}")


def connect(io: ConsoleIO, hosts: list[HostSpec]) -> BatchResult:
    """Connect to ``hosts`` (those already connected stay as they are), with a progress line
    on a terminal; print how many are connected and each failure once."""
    result = BatchResult([spec.name for spec in hosts])
    started = shown = time.monotonic()
    with interrupt_handlers(lambda signum: io.pool.cancel()):
        for event in io.pool.run(hosts, None):
            if isinstance(event, HostKeyLearned):
                _record_key(event, io.warn)
            result.record(_as_event(event))
            if io.env.stderr_isatty and time.monotonic() - shown >= PROGRESS_EVERY:
                shown = time.monotonic()
                io.stderr.write(f"\rconnecting: {len(result.outcomes)}/{len(hosts)}".encode())
                io.stderr.flush()
    result.interrupted = io.pool.interrupted
    elapsed = time.monotonic() - started
    if io.env.stderr_isatty:
        io.stderr.write(b"\r\x1b[K")
    connected = len(result.ok)
    lines = [f"hostbatch: connected to {connected} of {len(hosts)} host"
             f"{'s' if len(hosts) != 1 else ''} in {elapsed:.2f}s"]
    detail = format_summary(result, elapsed, color=io.color).splitlines()[1:]
    lines += [line for line in detail if not line.lstrip().startswith("slowest:")]
    if connected < len(hosts):
        lines.append("  (each is tried again when the next command runs)")
    io.stderr.write(("\n".join(lines) + "\n").encode())
    io.stderr.flush()
    return result


def _as_event(event: StandingEvent) -> Event:
    """A connection made counts as success in the connection summary."""
    if isinstance(event, HostConnected):
        return HostExited(event.host, 0, event.duration)
    return event


def run_command(io: ConsoleIO, hosts: list[HostSpec], action: RunCommand,
                output: OutputOptions, timeout: float | None) -> tuple[BatchResult, int | None]:
    """Run ``action`` on ``hosts``; render, record and summarise it as ``batch_run`` does.

    Returns the result and the signal that interrupted it (``None`` if none did).
    """
    options = dataclasses.replace(io.options, output=output)
    renderers = make_renderers(output, io.env, io.stdout, io.stderr, action, hosts, io.warn)
    recorder = (start_recorder(hosts, action, options, io.env, io.warn)
                if options.history.enabled else None)
    handlers = [renderer.handle for renderer in renderers]
    if recorder is not None:
        handlers.append(recorder.handle)
    result = BatchResult([spec.name for spec in hosts])
    caught: list[int] = []

    def on_signal(signum: int) -> None:
        caught.append(signum)
        io.pool.cancel()

    started = time.monotonic()
    try:
        with interrupt_handlers(on_signal):
            for event in io.pool.run(hosts, action, timeout):
                if isinstance(event, HostKeyLearned):
                    _record_key(event, io.warn)
                if isinstance(event, HostConnected):
                    continue
                result.record(event)
                for handle in handlers:
                    handle(event)
    finally:
        for renderer in renderers:
            renderer.close()
    elapsed = time.monotonic() - started
    result.interrupted = io.pool.interrupted
    result.signal = caught[0] if caught else None
    io.stdout.flush()
    write_summary(io.stderr, result, elapsed, color=io.color)
    if recorder is not None:
        recorder.finish(result.exit_status, interrupted=result.interrupted, elapsed=elapsed)
    return result, result.signal


def failed_hosts(result: BatchResult) -> list[str]:
    """The hosts of ``result`` whose command did not succeed, in selection order."""
    return [host for host in result.hosts
            if not (host in result.outcomes and result.outcomes[host].ok)]


def state_of(result: BatchResult, host: str) -> str:
    """How the last command left ``host``, for ``:hosts``: ``ok``, ``exit N`` or the failure."""
    outcome = result.outcomes.get(host)
    if outcome is None:
        return "-"
    if outcome.exit_status is not None:
        return "ok" if outcome.exit_status == 0 else f"exit {outcome.exit_status}"
    return outcome.failure.value if outcome.failure is not None else "-"


#: The signals after which the console ends once the command is stopped (Ctrl-C does not).
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

