"""Standing workers: processes that keep one SSH connection per host open across commands.

``batch_run`` connects, runs one command and disconnects; :class:`~hostbatch.engine.pool.
WorkerPool` is built for that. The console (``hostbatch console``) runs many commands on the
same hosts, and paying every host's handshake again for each line typed is what makes clush's
and pdsh's interactive modes slow. A :class:`StandingPool` starts a few worker processes once;
each owns a fixed share of the hosts and keeps their :class:`~hostbatch.ssh.session.Session`
objects open (:mod:`hostbatch.engine.standing_worker`). Each command is a :class:`RunBatch`
sent to the workers that own its hosts; they answer with the same typed events as a run, one
terminal event per host, then a :class:`BatchEnd`.

Only plain data crosses the pipes (frozen dataclasses of this module and of
:mod:`hostbatch.engine.events`). The parent never imports paramiko. Ctrl-C is a
:class:`CancelBatch` naming the command, so a late cancel can never stop the next one; the
workers kill the remote commands exactly as a cancelled run does and keep their connections.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from hostbatch.actions import RunCommand
from hostbatch.engine.events import HostFailed, HostStarted, TerminalEvent
from hostbatch.engine.pool import CANCEL_GRACE, plan_workers
from hostbatch.engine.standing_messages import (
    BatchEnd,
    CancelBatch,
    HostConnected,
    Probe,
    RunBatch,
    StandingConfig,
    StandingEvent,
)
from hostbatch.engine.standing_worker import standing_entry
from hostbatch.errors import FailureKind
from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import known_secrets
from hostbatch.settings import RunSettings

#: How long :meth:`StandingPool.states` waits for the workers' answers.
STATUS_WAIT = 5.0
#: How long :meth:`StandingPool.close` gives each worker to close its connections.
CLOSE_WAIT = 3.0


@dataclass
class _Worker:
    process: Any
    commands: Connection
    events: Connection
    threads: int
    hosts: set[str] = field(default_factory=set)
    alive: bool = True


class StandingPool:
    """Worker processes holding the session's connections; see the module docstring.

    Workers are forked when the pool starts (and again, before a command, for a worker that
    died or had to be killed): call :meth:`start` and :meth:`revive` while the process has no
    other threads, as :mod:`hostbatch.engine.launcher` explains.
    """

    def __init__(self, settings: RunSettings, *, home: str, host_count: int,
                 jumping: bool = False) -> None:
        self.settings = settings
        self.home = home
        self._plan = plan_workers(max(1, host_count), settings, jumping=jumping)
        self._context = multiprocessing.get_context("fork")
        self._workers: list[_Worker] = []
        self._owner: dict[str, int] = {}
        self._seq = 0
        self._cancel_requested = False
        #: Whether the last command was cancelled (Ctrl-C).
        self.interrupted = False

    # --- processes ----------------------------------------------------------------------
    def start(self) -> StandingPool:
        """Fork the workers (each then imports the SSH stack while the parent goes on)."""
        for index, threads in enumerate(self._plan):
            self._workers.append(self._spawn(index, threads))
        return self

    def _parent_fds(self) -> list[int]:
        return [fd for worker in self._workers if worker.alive
                for fd in (worker.commands.fileno(), worker.events.fileno())]

    def _spawn(self, index: int, threads: int) -> _Worker:
        commands_reader, commands_writer = self._context.Pipe(duplex=False)
        events_reader, events_writer = self._context.Pipe(duplex=False)
        close_fds = (*self._parent_fds(), commands_writer.fileno(), events_reader.fileno())
        process = self._context.Process(
            target=standing_entry, name="hostbatch-console-worker", daemon=True,
            args=(commands_reader, events_writer, close_fds))
        process.start()
        commands_reader.close()
        events_writer.close()
        commands_writer.send(StandingConfig(index, threads, self.settings, self.home,
                                            known_secrets()))
        return _Worker(process, commands_writer, events_reader, threads)

    def revive(self) -> None:
        """Replace the workers that died or were killed; their hosts reconnect on the next
        command."""
        dead = [index for index, worker in enumerate(self._workers)
                if not worker.alive or not worker.process.is_alive()]
        for index in dead:  # all reaped first, so no new worker inherits their pipes
            self._reap(self._workers[index])
        for index in dead:
            old = self._workers[index]
            fresh = self._spawn(index, old.threads)
            fresh.hosts = old.hosts
            self._workers[index] = fresh

    def _reap(self, worker: _Worker) -> None:
        worker.alive = False
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(CLOSE_WAIT)
        for connection in (worker.commands, worker.events):
            connection.close()

    def _send(self, index: int, message: object) -> bool:
        worker = self._workers[index]
        if not worker.alive:
            return False
        try:
            worker.commands.send(message)
        except (BrokenPipeError, OSError):
            worker.alive = False
            return False
        return True

    def close(self) -> None:
        """Ask every worker to close its connections and end; kill those that do not."""
        for index in range(len(self._workers)):
            self._send(index, None)
        deadline = time.monotonic() + CLOSE_WAIT
        for worker in self._workers:
            if worker.commands.closed:
                continue
            worker.process.join(max(0.0, deadline - time.monotonic()))
            self._reap(worker)

    # --- commands ----------------------------------------------------------------------
    def cancel(self) -> None:
        """Cancel the running command (safe in a signal handler: only sets a flag)."""
        self._cancel_requested = True

    def _owner_of(self, host: str) -> int:
        index = self._owner.get(host)
        if index is None:
            index = min(range(len(self._workers)),
                        key=lambda n: len(self._workers[n].hosts) / self._workers[n].threads)
            self._owner[host] = index
            self._workers[index].hosts.add(host)
        return index

    def run(self, hosts: Sequence[HostSpec], action: RunCommand | None,
            timeout: float | None = None) -> Iterator[StandingEvent]:
        """Run ``action`` (``None``: just connect) on ``hosts``; yield every event, ending
        with exactly one terminal event per host."""
        self._seq += 1
        seq = self._seq
        self._cancel_requested = self.interrupted = False
        marker = f"hostbatch-{os.urandom(8).hex()}"
        shares: dict[int, list[HostSpec]] = {}
        for spec in hosts:
            shares.setdefault(self._owner_of(spec.name), []).append(spec)
        waiting = {index for index, share in shares.items()
                   if self._send(index, RunBatch(seq, marker, action, timeout, tuple(share)))}
        ended: set[str] = set()
        started: set[str] = set()
        try:
            for event in self._receive(seq, waiting):
                if isinstance(event, HostStarted):
                    started.add(event.host)
                elif isinstance(event, TerminalEvent | HostConnected):
                    ended.add(event.host)
                yield event
        finally:
            # Abandoned midway (the caller stopped iterating): what those workers still send
            # belongs to this command, so they are replaced before the next one.
            for index in waiting:
                self._workers[index].alive = False
        for spec in hosts:
            if spec.name not in ended:
                yield _missing(spec.name, self.interrupted, spec.name in started)

    def _receive(self, seq: int, waiting: set[int]) -> Iterator[StandingEvent]:
        deadline: float | None = None
        while waiting:
            if self._cancel_requested and deadline is None:
                self.interrupted = True
                deadline = time.monotonic() + CANCEL_GRACE
                for index in list(waiting):
                    self._send(index, CancelBatch(seq))
            connections = {self._workers[index].events: index for index in waiting}
            # A timeout, so a Ctrl-C that arrives while waiting is acted on promptly.
            for connection in wait(list(connections), 0.1):
                assert isinstance(connection, Connection)
                index = connections[connection]
                for event in self._read(index, seq):
                    if isinstance(event, BatchEnd):
                        waiting.discard(index)
                    else:
                        yield event
            if deadline is not None and time.monotonic() > deadline:
                return  # stuck past the grace: run() has them replaced

    def _read(self, index: int, seq: int) -> list[Any]:
        """The next message of worker ``index``: its events, with ``BatchEnd`` of ``seq``
        kept and stale ones dropped; a dead worker reads as its ``BatchEnd``."""
        worker = self._workers[index]
        try:
            batch: list[Any] = pickle.loads(worker.events.recv_bytes())
        except (EOFError, OSError):
            worker.alive = False
            return [BatchEnd(seq, index)]
        return [event for event in batch
                if not isinstance(event, BatchEnd) or event.seq == seq]

    def states(self) -> dict[str, bool]:
        """Whether each host known to the pool is connected now (asked of the workers)."""
        self._seq += 1
        seq = self._seq
        waiting = {index for index in range(len(self._workers)) if self._send(index, Probe(seq))}
        connected: set[str] = set()
        deadline = time.monotonic() + STATUS_WAIT
        while waiting and time.monotonic() < deadline:
            connections = {self._workers[index].events: index for index in waiting}
            for connection in wait(list(connections), max(0.0, deadline - time.monotonic())):
                assert isinstance(connection, Connection)
                index = connections[connection]
                for event in self._read(index, seq):
                    if isinstance(event, BatchEnd):
                        connected.update(event.connected)
                        waiting.discard(index)
        return {host: host in connected for host in self._owner}


def _missing(host: str, interrupted: bool, started: bool) -> HostFailed:
    """The terminal event of a host whose worker never reported one."""
    if not interrupted:
        return HostFailed(host, FailureKind.INTERNAL, "worker process ended unexpectedly")
    if started:
        return HostFailed(host, FailureKind.INTERRUPTED,
                          "interrupted; the command may still be running")
    return HostFailed(host, FailureKind.SKIPPED, "not started: the command was interrupted")
