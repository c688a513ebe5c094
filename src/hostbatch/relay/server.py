"""``hostbatch relay --stdio``: the relay's side of the protocol.

Started by a controller over SSH, it reads the controller's hello and one job on stdin, runs
the job with the ordinary engine (worker processes x threads, its own ``-f`` from the job)
and writes every event to stdout the moment it happens, then ``done``. It stops starting
hosts and kills every running command when the controller cancels, when stdin ends (the
controller or its connection died), when the controller stays silent for
:data:`~hostbatch.relay.protocol.HEARTBEAT_LOST` seconds, and on SIGINT, SIGTERM or SIGHUP.

A get runs into a private staging directory; each host's files go back to the controller
before its terminal event (:mod:`hostbatch.relay.fetch`).

Secrets arrive only inside the job (the SSH channel) and live only in memory: the relay
writes no file but a private, temporary known_hosts made of the lines the job carries
(public keys), removed on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hostbatch.actions import GetFiles, PutFiles
from hostbatch.engine.events import Event
from hostbatch.engine.jobs import plan
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.engine.pool import WorkerPool, interrupt_handlers, plan_workers
from hostbatch.exit_status import ExitStatus
from hostbatch.relay import protocol
from hostbatch.relay.fetch import GetForwarder
from hostbatch.relay.hostkeys import relay_specs
from hostbatch.relay.staging import Staging

#: An event waits at most this long for others to share its write (and so its SSH packets):
#: measured, one packet per event cost the controller more CPU per host than all the rest.
COALESCE = 0.02
#: ... or until this many bytes wait.
COALESCE_BYTES = 64 * 1024


class _Output:
    """Lines to the controller, from several threads, in order; a failed write means it is
    gone. Once :meth:`coalesce` started its flusher, messages sent ``soon`` are written in
    batches (within :data:`COALESCE` seconds); any other message writes them first."""

    def __init__(self, fd: int, on_gone: Callable[[], None]) -> None:
        self.fd = fd
        self.on_gone = on_gone
        self.gone = False
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._waiting = threading.Condition(self._lock)
        self._coalescing = False

    def send(self, message: protocol.Message, *, soon: bool = False) -> None:
        """Write ``message`` after what waits; with ``soon``, it may wait for company."""
        data = protocol.dumps(message)
        with self._lock:
            if self.gone:
                return
            self._pending += data
            if soon and self._coalescing and len(self._pending) < COALESCE_BYTES:
                self._waiting.notify()
                return
            self._write_pending()
        if self.gone:
            self.on_gone()

    def coalesce(self) -> None:
        """Start batching ``soon`` messages (a thread: only once the workers are forked)."""
        self._coalescing = True
        threading.Thread(target=self._flush, name="relay-output", daemon=True).start()

    def _flush(self) -> None:
        while not self.gone:
            with self._lock:
                self._waiting.wait_for(lambda: bool(self._pending) or self.gone)
            time.sleep(COALESCE)
            with self._lock:
                if self._pending and not self.gone:
                    self._write_pending()
            if self.gone:
                self.on_gone()

    def _write_pending(self) -> None:
        """Write what waits (the lock held: a full pipe holds every sender back)."""
        data = memoryview(bytes(self._pending))
        self._pending.clear()
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            self.gone = True


class _Control:
    """What the controller says while the job runs: cancel, heartbeats, or nothing more."""

    def __init__(self, reader: protocol.LineReader, cancel: Callable[[], None]) -> None:
        self.reader = reader
        self.cancel = cancel
        self.last_heard = time.monotonic()
        self.finished = threading.Event()

    def listen(self) -> None:
        """Read the controller's lines until stdin ends (then cancel: it is gone)."""
        while True:
            try:
                line = self.reader.readline()
            except OSError:
                line = None
            if line is None:
                self.cancel()
                return
            self.last_heard = time.monotonic()
            try:
                message = protocol.loads(line)
            except protocol.ProtocolError:
                continue
            if isinstance(message, protocol.Cancel):
                self.cancel()

    def beat(self, output: _Output) -> None:
        """Send heartbeats; cancel when the controller has been silent too long."""
        while not self.finished.wait(protocol.HEARTBEAT_INTERVAL):
            output.send(protocol.Heartbeat())
            if time.monotonic() - self.last_heard > protocol.HEARTBEAT_LOST:
                self.cancel()


def _handshake(reader: protocol.LineReader, output: _Output,
               staging: Staging) -> protocol.RelayJob | int:
    """Exchange hellos, stage a put's source and read the job; an exit status when there is
    no job to run."""
    ours = protocol.Hello()
    output.send(ours)
    try:
        theirs = protocol.read_message(reader)
        if theirs is None:
            return ExitStatus.OK  # the controller went away before saying anything
        if not isinstance(theirs, protocol.Hello):
            raise protocol.ProtocolError("expected a hello first")
        if theirs.protocol != ours.protocol:
            output.send(protocol.RelayFailed(
                f"relay protocol {ours.protocol} (hostbatch {ours.version}) cannot serve a "
                f"controller of protocol {theirs.protocol} (hostbatch {theirs.version})"))
            return ExitStatus.UNREACHABLE
        while True:
            job = protocol.read_message(reader)
            if job is None:
                return ExitStatus.OK
            if not isinstance(job, protocol.FileChunk):
                break
            staging.write(job)
        if not isinstance(job, protocol.RelayJob):
            raise protocol.ProtocolError("expected a job after the hello")
    except protocol.ProtocolError as exc:
        output.send(protocol.RelayFailed(str(exc)))
        return ExitStatus.USAGE
    return job


def _prepare(job: protocol.RelayJob, staging: Staging, output: _Output,
             cancelled: Callable[[], bool]) -> tuple[protocol.RelayJob, Callable[[Event], None]]:
    """The job as this relay runs it (a put reads the staged source, a get lands in the
    staging directory) and what takes its events (a get's sends each host's files first)."""

    def forward(message: protocol.Message) -> None:
        output.send(message, soon=True)

    if isinstance(job.action, PutFiles):
        return dataclasses.replace(job, action=staging.prepare(job.action)), forward
    if isinstance(job.action, GetFiles):
        getter = GetForwarder(job.action, staging.workdir, forward, cancelled)
        return dataclasses.replace(job, action=getter.action), getter.handle
    return job, forward


def serve(stdin_fd: int, stdout_fd: int, home: str) -> int:
    """Serve one controller on ``stdin_fd``/``stdout_fd``; returns the exit status."""
    cancel_once = _Once()
    output = _Output(stdout_fd, cancel_once)
    reader = protocol.LineReader(stdin_fd)
    workdir = tempfile.mkdtemp(prefix="hostbatch-relay-")
    try:
        staging = Staging(Path(workdir))
        job = _handshake(reader, output, staging)
        if isinstance(job, int):
            return job
        job, sink = _prepare(job, staging, output, lambda: cancel_once.done)
        known = Path(workdir) / "known_hosts"
        known.write_text("".join(f"{line}\n" for line in job.known_hosts), encoding="utf-8")
        jobs = plan(relay_specs(job.hosts, str(known)), job.action)
        # Workers are forked now, while this process has no other thread (see launcher).
        launcher = WorkerLauncher(close_in_workers=(stdin_fd, stdout_fd)).start(
            len(plan_workers(len(jobs), job.settings)))
        pool = WorkerPool(jobs, job.settings, home=home, launcher=launcher, inputs=job.inputs)
        cancel_once.target = pool.cancel
        output.coalesce()
        control = _Control(reader, cancel_once)
        threading.Thread(target=control.listen, name="relay-control", daemon=True).start()
        beat = threading.Thread(target=control.beat, args=(output,), name="relay-heartbeat",
                                daemon=True)
        beat.start()
        signals = (interrupt_handlers(lambda _signum: cancel_once())
                   if threading.current_thread() is threading.main_thread()
                   else contextlib.nullcontext())
        with signals:
            for event in pool.events():
                sink(event)
        control.finished.set()
        output.send(protocol.Done())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ExitStatus.OK


class _Once:
    """Calls ``target`` (the pool's cancel) the first time it is called, never again: a
    second cancel would kill the workers before they kill the remote commands."""

    def __init__(self) -> None:
        self.target: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._done = False

    @property
    def done(self) -> bool:
        """Whether the cancel was made."""
        return self._done

    def __call__(self) -> None:
        with self._lock:
            if self._done or self.target is None:
                return
            self._done = True
        with contextlib.suppress(Exception):
            self.target()
