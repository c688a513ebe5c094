"""The library entry points: what the CLI calls, and what a program can import."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence

from hostbatch.actions import Action, RunInput
from hostbatch.engine.events import Event, HostKeyLearned
from hostbatch.engine.jobs import plan
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.engine.outcome import BatchResult
from hostbatch.engine.pool import WorkerPool, interrupt_handlers
from hostbatch.inventory.model import HostSpec
from hostbatch.known_hosts import append_lines
from hostbatch.prepare import HostOverrides, home_of, prepare_hosts
from hostbatch.settings import RunSettings

EventHandler = Callable[[Event], None]


def run(
    hosts: Sequence[HostSpec],
    action: Action,
    settings: RunSettings | None = None,
    *,
    on_event: EventHandler | None = None,
    warn: Callable[[str], None] | None = None,
    home: str | None = None,
    handle_signals: bool = True,
    launcher: WorkerLauncher | None = None,
    inputs: RunInput | None = None,
    environ: Mapping[str, str] = os.environ,
) -> BatchResult:
    """Perform ``action`` on every host in parallel and return every host's outcome.

    ``on_event`` sees each event as it arrives (lines, exits, failures). Per-host failures are
    values in the result, never exceptions. With ``handle_signals`` (main thread only), SIGINT
    and SIGTERM cancel the run: running commands are killed, the result is marked interrupted.
    Keys learned under ``accept_new`` are appended to known_hosts here, in the parent, under a
    file lock. ``launcher`` may hold workers started earlier, to overlap their start-up.
    ``inputs`` holds the stdin every host receives and a ``RunCommand.script``'s content.

    ``hosts`` may be finished already (:func:`hostbatch.prepare.prepare_hosts`, which is where
    prompting happens: ``--ask-pass``, key passphrases, the sudo password); whatever is left
    is finished here by the same function, without prompts: ``settings.connect_timeout`` is
    put on every host and jump host, and password sources (``password_env`` from
    ``environ``, ``password_cmd``) become passwords (an :class:`InventoryError` if one fails).
    """
    settings = settings or RunSettings()
    warn = warn or (lambda message: print(f"hostbatch: warning: {message}", file=sys.stderr))
    home = home or home_of(environ)
    # No prompt and no warn: keys are left as the caller settled them (the workers report an
    # encrypted key nobody unlocked), and finished hosts pass through unchanged.
    specs = prepare_hosts(None, hosts, HostOverrides(connect_timeout=settings.connect_timeout),
                          environ)
    result = BatchResult([spec.name for spec in specs])
    pool = WorkerPool(plan(specs, action, host_by_host=settings.rollout.active), settings,
                      home=home, launcher=launcher, inputs=inputs)

    def consume() -> None:
        for event in pool.events():
            if isinstance(event, HostKeyLearned):
                _record_key(event, warn)
            result.record(event)
            if on_event is not None:
                on_event(event)

    if handle_signals:
        with interrupt_handlers(pool.cancel):
            consume()
    else:
        consume()
    result.interrupted = pool.cancelled_by is not None
    result.signal = pool.cancelled_by
    result.stop_reason = pool.stop_reason
    return result


def _record_key(event: HostKeyLearned, warn: Callable[[str], None]) -> None:
    try:
        if append_lines(event.path, [event.line]):
            entry = event.line.split(" ", 1)[0]  # names a jump host's key as the jump host's
            warn(f"{event.host}: recorded new host key {event.fingerprint} for {entry} in "
                 f"{event.path}")
    except OSError as exc:
        warn(f"{event.host}: could not record its host key in {event.path}: {exc.strerror}")
