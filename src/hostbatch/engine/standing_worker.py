"""The standing worker process: holds open sessions to its hosts and runs command after command.

The parent (:class:`~hostbatch.engine.standing.StandingPool`) sends a
:class:`~hostbatch.engine.standing.StandingConfig`, then :class:`RunBatch`, :class:`CancelBatch`
and :class:`Probe` messages, and ``None`` to end. A batch's hosts go to a fixed set of threads
(the forks cap); each host reuses its open session or connects again (a connection that
dropped, or failed before), runs the command exactly as a ``batch_run`` worker does
(:func:`hostbatch.engine.worker.perform_action`) and reports one terminal event; plain
commands go through a shell kept running on the host (``Session.keep_shell``, see
:mod:`hostbatch.ssh.resident`). A host whose
connection is no longer up after its job loses its session, so the next command reconnects it.

Every command gets its own cancellation event and wake-up pipe: a cancelled command's
leftovers can never reach the next one. Cancelling kills the remote commands (the kill wrapper
of :mod:`hostbatch.ssh.command`, through sudo where needed) and aborts connections being made,
but keeps the connections that are up. When the parent dies (its command pipe ends), the
running command is cancelled the same way and the process exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from hostbatch.actions import RunCommand, RunInput
from hostbatch.engine.events import Event, HostFailed, HostKeyLearned, HostStarted, OutputLines
from hostbatch.engine.jobs import Job
from hostbatch.engine.standing_messages import (
    BatchEnd,
    CancelBatch,
    HostConnected,
    Probe,
    RunBatch,
    StandingConfig,
)
from hostbatch.engine.worker import (
    BATCH_BYTES,
    BATCH_MAX,
    ORPHAN_GRACE,
    PENDING_MAX,
    failure_event,
    host_context,
    perform_action,
    prepare_process,
)
from hostbatch.errors import FailureKind
from hostbatch.inventory.model import HostSpec

if TYPE_CHECKING:
    from hostbatch.ssh.connect import Connector
    from hostbatch.ssh.session import Session

_STOP = object()


def standing_entry(commands: Connection, events: Connection, close_fds: tuple[int, ...]) -> None:
    """The target of a standing worker process (forked by the parent's pool)."""
    # The parent's ends of every worker's pipes (this one's too) must live in the parent only:
    # their end of file is how a worker learns that the parent died.
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    standing_main(commands, events)


def standing_main(commands: Connection, events_out: Connection) -> None:
    """Entry point: read the configuration, then serve batches until ``None`` or the
    parent's end."""
    prepare_process()
    from hostbatch.ssh.connect import Connector  # paramiko is imported only in workers

    try:
        config: StandingConfig = commands.recv()
    except (EOFError, OSError):
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):  # the parent turns these into a cancel
        signal.signal(signum, signal.SIG_IGN)
    connector = Connector(home=config.home, accept_new=config.settings.accept_new,
                          retries=config.settings.retries)
    link = _Link(events_out)
    hosts = _StandingHosts(config, connector, link.emit)
    try:
        while True:
            try:
                message = commands.recv()
            except (EOFError, OSError):  # the parent died: stop what runs, then go
                hosts.cancel_current()
                hosts.wait_idle(ORPHAN_GRACE)
                break
            if message is None:
                break
            hosts.handle(message)
    finally:
        hosts.shutdown()
        link.close()


class _Link:
    """Events to the parent in batches (one pickled list per message), from one thread.

    The queue is bounded, so a parent that reads slowly slows the hosts instead of letting
    output pile up in this process.
    """

    def __init__(self, events_out: Connection) -> None:
        self.events_out = events_out
        self.pending: queue.Queue[Any] = queue.Queue(maxsize=PENDING_MAX)
        self._thread = threading.Thread(target=self._forward, name="forward", daemon=True)
        self._thread.start()

    def emit(self, event: object) -> None:
        """Queue an event for the parent (blocks while the queue is full)."""
        self.pending.put(event)

    def _forward(self) -> None:
        broken = False
        while True:
            batch = [self.pending.get()]
            size = _size(batch[0])
            while len(batch) < BATCH_MAX and size < BATCH_BYTES and batch[-1] is not _STOP:
                try:
                    event = self.pending.get_nowait()
                except queue.Empty:
                    break
                batch.append(event)
                size += _size(event)
            stop = batch[-1] is _STOP
            if stop:
                batch.pop()
            if batch and not broken:
                try:
                    self.events_out.send_bytes(pickle.dumps(batch,
                                                            protocol=pickle.HIGHEST_PROTOCOL))
                except OSError:
                    broken = True  # the parent is gone; the command pipe tells the main loop
            if stop:
                return

    def close(self) -> None:
        """Send what is queued and close the pipe."""
        self.pending.put(_STOP)
        self._thread.join(ORPHAN_GRACE)
        with contextlib.suppress(OSError):
            self.events_out.close()


def _size(event: object) -> int:
    return len(event.data) if isinstance(event, OutputLines) else 0


class _Batch:
    """One command on this worker's share of its hosts: what is left, and its cancellation."""

    def __init__(self, message: RunBatch) -> None:
        self.message = message
        self.left = len(message.hosts)
        self.cancelled = threading.Event()
        # Readable once cancelled, so a command's select wakes at once; closed at the end.
        self.wake_read, self._wake_write = os.pipe()

    def cancel(self) -> None:
        """Cancel the command: its hosts' select loops wake at once."""
        if not self.cancelled.is_set():
            self.cancelled.set()
            os.write(self._wake_write, b"x")

    def close(self) -> None:
        """Release the wake-up pipe (the batch has ended on every host)."""
        for fd in (self.wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)


class _StandingHosts:
    """The open sessions and the threads that run batches on them."""

    def __init__(self, config: StandingConfig, connector: Connector, emit: Any) -> None:
        self.config = config
        self.connector = connector
        self.emit = emit
        self.sessions: dict[str, Session] = {}
        self.queue: queue.Queue[tuple[_Batch, HostSpec] | None] = queue.Queue()
        self.batch: _Batch | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._threads = [threading.Thread(target=self._loop, name=f"host-{n}", daemon=True)
                         for n in range(config.threads)]
        for thread in self._threads:
            thread.start()

    def handle(self, message: object) -> None:
        """Act on one message of the parent."""
        if isinstance(message, RunBatch):
            self.start(message)
        elif isinstance(message, CancelBatch):
            with self._lock:
                if self.batch is not None and self.batch.message.seq == message.seq:
                    self._cancel_locked()
        elif isinstance(message, Probe):
            self.emit(BatchEnd(message.seq, self.config.index, self.connected()))

    def connected(self) -> tuple[str, ...]:
        """This worker's hosts whose connection is up."""
        return tuple(name for name, session in list(self.sessions.items())
                     if session.is_active)

    def start(self, message: RunBatch) -> None:
        """Queue the batch's hosts for the threads (or end an empty batch at once)."""
        batch = _Batch(message)
        with self._lock:
            self.batch = batch
        if not message.hosts:
            self._finish(batch)
        for spec in message.hosts:
            self.queue.put((batch, spec))

    def cancel_current(self) -> None:
        """Cancel the running batch, if any."""
        with self._lock:
            self._cancel_locked()

    def _cancel_locked(self) -> None:
        if self.batch is not None:
            self.batch.cancel()
            self.connector.cancel()  # aborts connections being made; open ones stay

    def wait_idle(self, timeout: float) -> None:
        """Wait until no batch runs (or ``timeout``)."""
        with self._idle:
            self._idle.wait_for(lambda: self.batch is None, timeout)

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            batch, spec = item
            try:
                self._perform(batch, spec)
            finally:
                with self._lock:
                    batch.left -= 1
                    last = batch.left == 0
                if last:
                    self._finish(batch)

    def _finish(self, batch: _Batch) -> None:
        with self._lock:
            batch.close()
            self.batch = None
            self.connector.cancelled.clear()  # the next command may connect again
            self._idle.notify_all()
        self.emit(BatchEnd(batch.message.seq, self.config.index, self.connected()))

    def _perform(self, batch: _Batch, spec: HostSpec) -> None:
        """One host of a batch: (re)connect if needed, run, emit one terminal event."""
        message, host = batch.message, spec.name
        job = Job(spec, message.action or RunCommand(""))
        self.emit(HostStarted(host, self.config.index))
        ctx = host_context(job, message.marker, message.timeout, batch.cancelled,
                           batch.wake_read, self.emit)
        terminal: Event | HostConnected
        if batch.cancelled.is_set():
            self.emit(HostFailed(host, FailureKind.SKIPPED,
                                 "not started: the command was interrupted"))
            return
        try:
            session = self._session(spec)
            if message.action is None:
                session.prepare_shell(ctx)
                terminal = HostConnected(host, time.monotonic() - ctx.started)
            else:
                terminal = perform_action(job, session, ctx, RunInput())
        except Exception as exc:  # a bug must cost one host, never the session
            terminal = failure_event(job, exc, self.connector, ctx.started)
        finally:
            self._drop_if_down(host)
        self.emit(terminal)

    def _session(self, spec: HostSpec) -> Session:
        session = self.sessions.get(spec.name)
        if session is not None and session.is_active:
            return session

        def learn(path: str, line: str, fingerprint: str) -> None:
            self.emit(HostKeyLearned(spec.name, path, line, fingerprint))

        session = self.connector.open(spec, learn)
        session.linger()
        session.keep_shell()
        self.sessions[spec.name] = session
        return session

    def _drop_if_down(self, host: str) -> None:
        session = self.sessions.get(host)
        if session is not None and not session.is_active:
            session.close()
            del self.sessions[host]

    def shutdown(self) -> None:
        """Stop the threads and close every session."""
        for _ in self._threads:
            self.queue.put(None)
        deadline = time.monotonic() + ORPHAN_GRACE
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                session.close()
        self.sessions.clear()
