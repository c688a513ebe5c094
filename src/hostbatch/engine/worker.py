"""The worker process: runs many jobs at once on threads and sends their events to the parent.

A worker never touches the terminal or shared files (the parent alone writes stdout, stderr and
known_hosts), masks every secret of the run (passwords, passphrases) in output and failure
messages, ignores SIGINT (Ctrl-C belongs to the parent, which cancels through
``cancel_event``), and turns every exception into a :class:`HostFailed` event, so the parent
always hears exactly one terminal event per started host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Literal

from hostbatch.actions import PutFiles, RunCommand, RunInput, ScanHostKey
from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    HostKeyLearned,
    HostKeyScanned,
    HostStarted,
    OutputLines,
    TransferDone,
    TransferPlanned,
    TransferProgress,
)
from hostbatch.engine.jobs import Job, ShardJob
from hostbatch.errors import FailureKind
from hostbatch.secrets import Secret, redact, redact_bytes
from hostbatch.settings import RunSettings

if TYPE_CHECKING:
    from hostbatch.ssh.connect import Connector
    from hostbatch.ssh.context import HostContext
    from hostbatch.ssh.session import Session

#: Events per message to the parent; batching keeps pickling and pipe overhead off chatty hosts.
BATCH_MAX = 512
#: Output bytes per message to the parent: a message fits the events pipe whole (the parent
#: enlarges it to 1 MiB), so the worker rarely waits on a half-read message.
BATCH_BYTES = 256 * 1024
#: Bounded, so a slow parent (a slow pipe downstream) slows the hosts instead of eating memory:
#: at most this many events wait in a worker ...
PENDING_MAX = 64
#: ... holding at most this many bytes of output (one read of a host may be a whole channel
#: window, so a count alone would not bound memory).
PENDING_BYTES = 2 * 1024 * 1024
_STOP = object()
#: A worker whose parent died exits once its hosts are cleaned up, or after this many seconds.
ORPHAN_GRACE = 8.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What every worker needs besides its jobs; plain data, inherited at start."""

    index: int
    threads: int
    settings: RunSettings
    home: str
    marker: str
    inputs: RunInput = field(default_factory=RunInput)
    #: Every secret of the run; unpickling them registers them with hostbatch.secrets.redact.
    secrets: tuple[Secret, ...] = ()


def _raise_fd_limit() -> None:
    """Each host in flight holds a socket and a pipe pair: lift the soft limit to the hard one,
    as clush does, so a large ``-f`` does not run out of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def worker_main(config_in: Connection, jobs: Any, events_out: Connection,
                cancel_fd: int) -> None:
    """Entry point of a worker process: import the SSH stack, wait for the run's
    :class:`WorkerConfig`, then run jobs from ``jobs`` until sentinels arrive.

    A worker may be started before the run is known (see ``engine.pool.WorkerLauncher``), so
    its ~0.1 s import of paramiko overlaps the parent's own start-up; if the parent ends
    without sending a configuration, the worker just exits. ``cancel_fd`` is the read end of
    the run's cancel pipe: a byte on it cancels the run, and its end of file means the parent
    died (:class:`_ParentLink`).
    """
    prepare_process()
    from hostbatch.ssh.connect import Connector  # paramiko is imported only in workers

    try:
        config: WorkerConfig = config_in.recv()
    except (EOFError, OSError):
        return
    finally:
        config_in.close()
    # From here on the run's signals belong to the parent: Ctrl-C, `timeout` and service
    # managers signal the whole process group, and the parent turns each into a cancel that
    # workers carry out (killing remote commands) instead of dying with them mid-way. Until
    # now SIGTERM stayed fatal, so a parent exiting before the run (a usage error) can end
    # its idle workers as multiprocessing does, with SIGTERM.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    connector = Connector(home=config.home, accept_new=config.settings.accept_new,
                          retries=config.settings.retries)
    link = _ParentLink(events_out, cancel_fd, connector)
    runner = _JobRunner(config, connector, link.emit, link.wake_fd)
    link.start(runner)
    threads = [threading.Thread(target=runner.loop, args=(jobs,), name=f"host-{n}")
               for n in range(config.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    link.close()


def prepare_process() -> None:
    """Signals, descriptor limit and logging of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the parent
    _raise_fd_limit()
    # paramiko.config imports invoke when installed (for ssh_config "Match exec"), which pulls
    # in asyncio and unittest.mock: ~30 ms of CPU per worker. Workers never parse ssh_config
    # (the parent does), so this process does without it.
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    # paramiko logs some failures (e.g. "channel open FAILED" through a jump host) at ERROR;
    # with no handler, logging's last resort would print them raw on the user's stderr. Every
    # failure reaches the user as a host event instead.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False


class _ParentLink:
    """The worker's side of its parent: events out in batches, cancellation in, and what to
    do when the parent is gone.

    The parent is gone when the cancel pipe reports end of file (only the parent holds its
    write end) or an event cannot be sent. Then the run is cancelled exactly as on Ctrl-C
    (remote commands killed, temporary files removed), events are dropped, and the process
    exits once its hosts are done or :data:`ORPHAN_GRACE` has passed.
    """

    def __init__(self, events_out: Connection, cancel_fd: int, connector: Connector) -> None:
        self.events_out = events_out
        self.cancel_fd = cancel_fd
        self.connector = connector
        self.pending: queue.Queue[Any] = queue.Queue(maxsize=PENDING_MAX)
        self._pending_bytes = 0
        self._room = threading.Condition()
        self.wake_fd, self._wake_write = os.pipe()
        self.orphaned = False
        self._runner: _JobRunner | None = None
        self._forwarder = threading.Thread(target=self._forward, name="forward")

    def start(self, runner: _JobRunner) -> None:
        """Start forwarding events and watching for cancellation."""
        self._runner = runner
        threading.Thread(target=self._watch_cancel, name="cancel-watch", daemon=True).start()
        self._forwarder.start()

    def emit(self, event: Event) -> None:
        """Queue an event for the parent (blocks while the queue is full: backpressure)."""
        size = _output_size(event)
        if size:
            with self._room:
                self._room.wait_for(lambda: self._pending_bytes == 0
                                    or self._pending_bytes + size <= PENDING_BYTES)
                self._pending_bytes += size
        self.pending.put(event)

    def _taken(self, size: int) -> None:
        """``size`` bytes of output left the queue: make room for the hosts waiting on it."""
        with self._room:
            self._pending_bytes -= size
            self._room.notify_all()

    def close(self) -> None:
        """Send what is left and close the pipe (every host is done)."""
        self.pending.put(_STOP)
        self._forwarder.join()
        with contextlib.suppress(OSError):
            self.events_out.close()

    def _watch_cancel(self) -> None:
        """A byte on this worker's cancel pipe cancels the run; its end of file means the
        parent died."""
        while True:
            try:
                data = os.read(self.cancel_fd, 1)
            except OSError:
                data = b""
            if not data:
                self._orphan()
                return
            self._cancel()

    def _cancel(self) -> None:
        self.connector.cancel()
        os.write(self._wake_write, b"x")  # never read: stays readable, waking every select

    def _orphan(self) -> None:
        if self.orphaned:
            return
        self.orphaned = True
        self._cancel()
        threading.Thread(target=self._exit_when_idle, name="orphan", daemon=True).start()

    def _exit_when_idle(self) -> None:
        if self._runner is not None:
            self._runner.wait_idle(ORPHAN_GRACE)
        os._exit(0)

    def _forward(self) -> None:
        """Send events in batches, as fast as they come; stop at ``_STOP``."""
        while True:
            batch = [self.pending.get()]
            size = _output_size(batch[0])
            while len(batch) < BATCH_MAX and size < BATCH_BYTES:
                try:
                    event = self.pending.get_nowait()
                except queue.Empty:
                    break
                batch.append(event)
                size += _output_size(event)
            if size:
                self._taken(size)
            stop = batch[-1] is _STOP
            if stop:
                batch.pop()
            if batch and not self.orphaned:
                try:
                    self.events_out.send_bytes(pickle.dumps(batch,
                                                            protocol=pickle.HIGHEST_PROTOCOL))
                except (BrokenPipeError, OSError):
                    self._orphan()  # nobody is left to report to: clean up and go
            if stop:
                return


def _output_size(event: object) -> int:
    """Bytes of output an event holds (0 for every other kind of event)."""
    return len(event.data) if isinstance(event, OutputLines) else 0


class _JobRunner:
    """Pulls jobs and performs them, one session per job, on the calling thread."""

    def __init__(self, config: WorkerConfig, connector: Connector, emit: Any,
                 wake_fd: int) -> None:
        self.config = config
        self.connector = connector
        self.emit = emit
        self.wake_fd = wake_fd
        self._active = 0
        self._idle = threading.Condition()

    def loop(self, jobs: Any) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            if self.connector.cancelled.is_set():
                continue  # the parent reports never-started hosts as skipped
            with self._idle:
                self._active += 1
            try:
                if isinstance(job, ShardJob):
                    self.perform_shard(job)
                else:
                    self.perform(job)
            finally:
                with self._idle:
                    self._active -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is being performed (or ``timeout``); whether that happened."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def context(self, job: Job) -> HostContext:
        """The job's context: limits, cancellation, and callbacks that emit its events."""
        return host_context(job, self.config.marker, self.config.settings.command_timeout,
                            self.connector.cancelled, self.wake_fd, self.emit)

    def perform_shard(self, job: ShardJob) -> None:
        """Run a shard of hosts through its relay (:mod:`hostbatch.relay.shard`)."""
        from hostbatch.relay.shard import ShardDriver

        ShardDriver(job, self.connector, self.emit, self.config.settings, self.config.inputs,
                    self.config.home).run()

    def perform(self, job: Job) -> None:
        """Connect, act, close; emit exactly one terminal event for the host."""
        host = job.host.name
        self.emit(HostStarted(host, self.config.index))
        ctx = self.context(job)

        def learn(path: str, line: str, fingerprint: str) -> None:
            self.emit(HostKeyLearned(host, path, line, fingerprint))

        session = None
        terminal: Event
        try:
            session = self.connector.open(job.host, learn,
                                          key_only=isinstance(job.action, ScanHostKey))
            terminal = self.act(job, session, ctx)
        except Exception as exc:  # a bug must cost one host, never the whole run
            terminal = failure_event(job, exc, self.connector, ctx.started)
        finally:
            if session is not None:
                session.close()
        self.emit(terminal)

    def act(self, job: Job, session: Session, ctx: HostContext) -> Event:
        """Perform the job's action on an open session; return the host's terminal event."""
        return perform_action(job, session, ctx, self.config.inputs)


# The three helpers below are shared with the console's standing workers
# (engine/standing_worker.py), which keep sessions open between jobs.

def host_context(job: Job, marker: str, timeout: float | None, cancelled: threading.Event,
                 wake_fd: int | None, emit: Callable[[Event], None]) -> HostContext:
    """A job's context: limits, cancellation, and callbacks that emit its events."""
    from hostbatch.ssh.context import HostContext

    host = job.host.name
    direction: Literal["put", "get"] = "put" if isinstance(job.action, PutFiles) else "get"
    return HostContext(
        host=host,
        marker=marker,
        timeout=timeout,
        cancelled=cancelled,
        wake_fd=wake_fd,
        on_lines=lambda stream, block, unterminated: emit(
            OutputLines(host, stream, redact_bytes(block), unterminated)),
        on_progress=lambda path, done, total: emit(
            TransferProgress(host, path, done, total)),
        on_file=lambda source, destination, size, duration: emit(
            FileTransferred(host, direction, source, destination, size, duration)),
        on_plan=lambda change, path: emit(
            TransferPlanned(host, "delete" if change == "delete" else
                            "chmod" if change == "chmod" else "send", path)),
    )


def failure_event(job: Job, exc: Exception, connector: Connector, started: float) -> HostFailed:
    """The host's terminal event for an exception its job raised: its failure kind for a
    :class:`~hostbatch.ssh.errors.HostJobError` (naming a failed jump host), else ``internal``."""
    from hostbatch.ssh.errors import HostJobError

    if isinstance(exc, HostJobError):
        failure = connector.blame(job.host, exc)
        return HostFailed(job.host.name, failure.kind, redact(failure.message),
                          time.monotonic() - started)
    return HostFailed(job.host.name, FailureKind.INTERNAL,
                      redact(f"internal error: {type(exc).__name__}: {exc}"),
                      time.monotonic() - started)


def perform_action(job: Job, session: Session, ctx: HostContext, inputs: RunInput) -> Event:
    """Perform the job's action on an open session; return the host's terminal event."""
    host, action = job.host.name, job.action
    if isinstance(action, ScanHostKey):
        from hostbatch.known_hosts import host_entry_name

        key = session.scan_key()
        return HostKeyScanned(host, host_entry_name(job.host.hostname, job.host.port),
                              key.key_type, key.key_b64, key.fingerprint,
                              time.monotonic() - ctx.started)
    if isinstance(action, RunCommand):
        result = session.run(action, inputs, ctx)
        return HostExited(host, result.exit_status, time.monotonic() - ctx.started,
                          result.note)
    totals = session.put(action, ctx) if isinstance(action, PutFiles) \
        else session.get(action, ctx)
    return TransferDone(host, totals.files, totals.bytes, time.monotonic() - ctx.started,
                        method=totals.method, unchanged=totals.unchanged,
                        deleted=totals.deleted, sync=action.sync.enabled,
                        dry_run=action.sync.dry_run, note=totals.note,
                        modes=ctx.counters.get("modes", 0))
