"""The parent side of the engine: start worker processes, feed them jobs, yield their events.

Design (measured in bench/results-run.md): a few processes, each running many
hosts on threads, beat both a process per host (2x slower) and one process (GIL-bound). The
forks cap is the total number of threads, so at most ``forks`` hosts are in flight at once.

Workers are started by :class:`~hostbatch.engine.launcher.WorkerLauncher` (the one place
that chooses the start method), possibly before the run is known.

Feeding: by default every job goes on the shared queue at once (the fastest path). A rollout
(``--canary``/``--batch``/``--max-fail``) feeds gated instead: a job is queued only when a
thread is free and :class:`~hostbatch.rollout.Rollout` allows it, so when the rollout
stops, nothing is left queued, and the hosts it never started get a ``skipped`` event.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

from hostbatch.actions import GetFiles, PutFiles, RunInput
from hostbatch.atomic import remove_leftovers
from hostbatch.engine.batches import BatchReader
from hostbatch.engine.events import Event, HostExited, HostFailed, HostStarted, TerminalEvent
from hostbatch.engine.jobs import AnyJob, ShardJob, job_hosts
from hostbatch.engine.launcher import FEEDER_WAIT, WorkerLauncher
from hostbatch.engine.worker import WorkerConfig
from hostbatch.errors import FailureKind, UsageError
from hostbatch.rollout import Rollout
from hostbatch.secrets import known_secrets
from hostbatch.settings import RunSettings

#: After a cancel, how long workers get to kill remote commands and report before being killed.
CANCEL_GRACE = 8.0
MAX_WORKERS = 4
#: Fewer hosts than this per process are not worth another process's paramiko import.
HOSTS_PER_WORKER = 32
#: Capacity asked for each worker's events pipe: a few of its messages (see _enlarge_pipe).
PIPE_SIZE = 1024 * 1024


def plan_workers(job_count: int, settings: RunSettings, *,
                 hosts_per_worker: int = HOSTS_PER_WORKER, jumping: bool = False) -> list[int]:
    """Threads for each worker process; their sum is the in-flight cap.

    Copies are CPU-bound in paramiko (encryption, packets), so they pass
    ``hosts_per_worker=1`` to use every core from two hosts up. A run where some host goes
    through a jump host (``jumping``) uses one process, so each jump host carries one
    authenticated connection for the whole run (connections cannot be shared across processes).
    """
    in_flight = max(1, min(settings.forks, job_count))
    processes = settings.workers or (1 if jumping else min(
        os.cpu_count() or 1, MAX_WORKERS, math.ceil(job_count / hosts_per_worker)))
    processes = max(1, min(processes, in_flight))
    base, extra = divmod(in_flight, processes)
    return [base + (1 if n < extra else 0) for n in range(processes)]


class WorkerPool:
    """Runs ``jobs`` on worker processes; iterate :meth:`events` to drive and observe the run.

    ``inputs`` (stdin to broadcast, a script) go to each worker once with its configuration,
    not with every job.
    """

    def __init__(self, jobs: Sequence[AnyJob], settings: RunSettings, *, home: str,
                 launcher: WorkerLauncher | None = None, inputs: RunInput | None = None) -> None:
        self.jobs: list[AnyJob] = list(jobs)
        _refuse_through_relays(self.jobs, settings)
        self.inputs = inputs or RunInput()
        self.settings = settings
        self.home = home
        self.cancelled_by: int | None = None
        self._launcher = launcher or WorkerLauncher()
        self._force = False
        self._deadline: float | None = None
        self._processes: list[Any] = []
        self._connections: list[Connection] = []
        self._started: set[str] = set()
        self._finished: set[str] = set()
        self._rollout: Rollout | None = None
        self._index: dict[str, int] = {}
        self._job_queue: Any = None
        self._sentinels_sent = False

    @property
    def stop_reason(self) -> str | None:
        """Why a rollout stopped starting hosts (``--canary``, ``--max-fail``), if it did."""
        return None if self._rollout is None else self._rollout.stop_reason

    def cancel(self, signum: int = signal.SIGINT) -> None:
        """Stop starting hosts and kill running commands; a second call kills the workers."""
        if self.cancelled_by is not None:
            self._force = True
            return
        self.cancelled_by = signum
        self._deadline = time.monotonic() + CANCEL_GRACE
        self._launcher.cancel()

    def events(self) -> Iterator[Event]:
        """Start the workers and yield every event, ending with one terminal event per host."""
        marker = f"hostbatch-{os.urandom(8).hex()}"
        job_queue = self._launcher.jobs
        copying = any(isinstance(job.action, PutFiles | GetFiles) for job in self.jobs[:1])
        plan = plan_workers(len(self.jobs), self.settings,
                            hosts_per_worker=1 if copying else HOSTS_PER_WORKER,
                            jumping=any(job.host.jump_chain for job in self.jobs))
        workers = self._launcher.take(len(plan))
        for index, (threads, (process, config_writer, events_reader)) in enumerate(
                zip(plan, workers, strict=True)):
            config_writer.send(WorkerConfig(index, threads, self.settings, self.home, marker,
                                            self.inputs, known_secrets()))
            config_writer.close()
            self._processes.append((process, threads))
            self._connections.append(events_reader)
            _enlarge_pipe(events_reader)
        self._job_queue = job_queue
        if self.settings.rollout.active:
            # Gated feeding: at most one job per thread in flight, so a job on the queue is a
            # host being started, and a stop leaves nothing queued behind it.
            slots = sum(threads for _, threads in self._processes)
            self._rollout = Rollout(len(self.jobs), self.settings.rollout, slots)
            self._index = {job_hosts(job)[0]: n for n, job in enumerate(self.jobs)}
            first = self._feed()
        else:
            for job in self.jobs:
                job_queue.put(job)
            self._send_sentinels()
            first = []
        try:
            yield from first
            yield from self._receive()
        finally:
            job_queue.cancel_join_thread()
            job_queue.close()
            self._stop_workers()
            for connection in self._connections:
                connection.close()
            # After a cancel, jobs nobody will take may hold the feeder: do not wait for it.
            self._launcher.close(wait=0 if self.cancelled_by is not None else FEEDER_WAIT)
        yield from self._synthesize_missing()

    def _send_sentinels(self) -> None:
        if not self._sentinels_sent:
            self._sentinels_sent = True
            for _ in range(sum(threads for _, threads in self._processes)):
                self._job_queue.put(None)

    def _feed(self) -> list[Event]:
        """Start what the rollout allows; once it is done, let the workers finish and return
        the skipped events of the hosts it will never start."""
        rollout = self._rollout
        if rollout is None or self._sentinels_sent:
            return []
        if self.cancelled_by is None:
            for index in rollout.next_starts():
                self._job_queue.put(self.jobs[index])
        if not rollout.done and self.cancelled_by is None:
            return []
        self._send_sentinels()
        if rollout.stop_reason is None or self.cancelled_by is not None:
            return []  # an interruption's never-started hosts are reported at the end
        skipped: list[Event] = []
        for index in rollout.never_started():
            host = job_hosts(self.jobs[index])[0]
            self._finished.add(host)
            skipped.append(HostFailed(host, FailureKind.SKIPPED,
                                      f"not started: {rollout.stop_reason}"))
        return skipped

    def _on_terminal(self, event: TerminalEvent) -> list[Event]:
        if self._rollout is None:
            return []
        failed = isinstance(event, HostFailed) or (isinstance(event, HostExited)
                                                   and event.exit_status != 0)
        self._rollout.finished(self._index[event.host], failed)
        return self._feed()

    def _receive(self) -> Iterator[Event]:
        open_connections = list(self._connections)
        reader = BatchReader()
        while open_connections:
            # A timeout, so a signal that arrives while waiting is acted on promptly.
            for connection in wait(open_connections, 0.5):
                assert isinstance(connection, Connection)
                try:
                    batch: list[Event] = reader.read(connection)
                except (EOFError, OSError):
                    open_connections.remove(connection)
                    if self._rollout is not None:
                        # A worker died: its hosts will never end, so a rollout waiting for
                        # them would wait forever. Start nothing more; the hosts left get
                        # "worker process ended unexpectedly" at the end.
                        self._send_sentinels()
                    continue
                for event in batch:
                    follow: list[Event] = []
                    if isinstance(event, HostStarted):
                        self._started.add(event.host)
                    elif isinstance(event, TerminalEvent):
                        self._finished.add(event.host)
                        follow = self._on_terminal(event)
                    yield event
                    yield from follow
            if self.cancelled_by is not None:
                self._feed()
            if self._force or (self._deadline is not None and time.monotonic() > self._deadline):
                return

    def _stop_workers(self) -> None:
        for process, _ in self._processes:
            process.join(timeout=0 if self._force else 2.0)
            if process.is_alive():
                process.kill()
                process.join()
            self._launcher.release(process)

    def _synthesize_missing(self) -> Iterator[Event]:
        """Give every host without a terminal event one, so each host has exactly one.

        A get whose worker was killed mid-file leaves temporary files in ``LOCAL/HOST/``:
        they are removed here, so only complete files ever remain.
        """
        for job, host in ((one, host) for one in self.jobs for host in job_hosts(one)):
            if host in self._finished:
                continue
            if isinstance(job.action, GetFiles) and host in self._started:
                remove_leftovers(Path(job.action.local_dir) / host)
            if self.cancelled_by is None:
                yield HostFailed(host, FailureKind.INTERNAL, "worker process ended unexpectedly")
            elif host in self._started:
                yield HostFailed(host, FailureKind.INTERRUPTED, _unfinished(job))
            else:
                yield HostFailed(host, FailureKind.SKIPPED, "not started: the run was interrupted")


def _refuse_through_relays(jobs: Sequence[AnyJob], settings: RunSettings) -> None:
    """What relays cannot carry yet is refused before anything starts (exit 2)."""
    shard = next((job for job in jobs if isinstance(job, ShardJob)), None)
    if shard is None:
        return
    if settings.rollout.active and any(isinstance(job, ShardJob) and len(job.hosts) > 1
                                       for job in jobs):
        raise UsageError("--canary, --batch and --max-fail gate every host: relayed hosts "
                         "must be planned host by host (plan(..., host_by_host=True))")
    if isinstance(shard.action, GetFiles) and shard.action.sync.enabled:
        raise UsageError(f"batch_scp get --sync does not work through relays (host "
                         f"{shard.hosts[0].name} is reached via {shard.relays[0].name}, which "
                         "has no copy to compare): get without --sync, or use --via none")


def _enlarge_pipe(connection: Connection) -> None:
    """Give a worker's events pipe room for a whole message (:data:`PIPE_SIZE`).

    With the default 64 KiB, a message of output crosses in many reads, each a context switch
    between worker and parent; one read is cheaper. Where Linux refuses (another kernel, a
    lower ``fs.pipe-max-size``), the default is kept: only speed depends on it.
    """
    import fcntl  # here, so runs that end before starting work do not pay for the import

    with contextlib.suppress(OSError, ValueError, AttributeError):
        fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def _unfinished(job: AnyJob) -> str:
    """What is known of a started host whose worker was stopped before it reported."""
    if isinstance(job.action, PutFiles):
        return ("interrupted during the copy; files already in place are complete, a "
                "temporary .part file may remain on the host")
    if isinstance(job.action, GetFiles):
        return "interrupted during the copy; files already in place are complete"
    return "interrupted; the command may still be running"


class interrupt_handlers:
    """Route SIGINT, SIGTERM and SIGHUP to ``on_signal`` (instead of KeyboardInterrupt or
    death) while active: each ends the run as Ctrl-C does, remote commands killed."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self.on_signal = on_signal
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.on_signal(signum)

    def __enter__(self) -> interrupt_handlers:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
