"""Start worker processes early, before the run is known, to hide their start-up.

This module imports only :mod:`multiprocessing`, so the console scripts can fork a worker as
their very first step; the worker then imports hostbatch's engine and paramiko (~0.1 s) while
the parent parses arguments and reads the inventory.

The start method is ``fork``, chosen here and nowhere else: workers start in milliseconds and
need nothing pickled to start. It is safe because the parent has no threads and no paramiko
objects when it forks (only the job queue's feeder thread starts later, after every fork).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import Any

#: How long :meth:`WorkerLauncher.close` waits for the job queue's feeder thread to end after
#: a run that was not cancelled: every job was taken, so it ends at once, but on a loaded
#: machine "at once" can take a few hundred milliseconds (a caller must get back a process
#: without it: tests/integration/test_soak.py).
FEEDER_WAIT = 5.0


def _worker_entry(config_reader: Connection, jobs: Any, events_writer: Connection,
                  cancel_fd: int, parent_fds: tuple[int, ...]) -> None:
    # Only the parent may hold the write ends of the cancel pipes (this worker's and those
    # of the workers forked before it): their end of file then means the parent died.
    for fd in parent_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    from hostbatch.engine.worker import worker_main

    worker_main(config_reader, jobs, events_writer, cancel_fd)


class WorkerLauncher:
    """Starts worker processes, possibly before the run is known.

    A worker imports paramiko (~0.1 s) as soon as it starts and then waits for its
    configuration, so a launcher created first thing in ``main`` hides that import behind the
    parent's own start-up (arguments, inventory, selection). Workers that are never configured
    exit when the parent closes their configuration pipe.
    """

    def __init__(self, close_in_workers: tuple[int, ...] = ()) -> None:
        #: Descriptors each worker closes first (a relay's protocol stdin/stdout: a worker
        #: must not keep the controller's channel open after the relay process died).
        self.close_in_workers = close_in_workers
        self.context = multiprocessing.get_context("fork")
        # A pipe per worker, not a multiprocessing.Event: a worker killed while holding an
        # Event's lock would hang the parent's set() forever; a write to a pipe never waits.
        self._cancel_writers: dict[Any, int] = {}
        self.jobs = self.context.Queue()
        self._cancelled = False
        self._taken: list[Any] = []
        self._idle: list[tuple[Any, Connection, Connection]] = []

    def start(self, count: int = 1) -> WorkerLauncher:
        """Start ``count`` workers that wait for a configuration."""
        for _ in range(count):
            self._idle.append(self._spawn())
        return self

    def _spawn(self) -> tuple[Any, Connection, Connection]:
        config_reader, config_writer = self.context.Pipe(duplex=False)
        events_reader, events_writer = self.context.Pipe(duplex=False)
        cancel_read, cancel_write = os.pipe()
        process = self.context.Process(
            target=_worker_entry, name="hostbatch-worker",
            args=(config_reader, self.jobs, events_writer, cancel_read,
                  (*self._cancel_writers.values(), cancel_write, *self.close_in_workers)),
            daemon=True,
        )
        process.start()
        config_reader.close()
        events_writer.close()
        os.close(cancel_read)
        self._cancel_writers[process] = cancel_write
        return process, config_writer, events_reader

    def cancel(self) -> None:
        """Tell every worker of the run to cancel it (safe in a signal handler): a byte on
        each one's cancel pipe. Does nothing after :meth:`close`."""
        if not self._cancelled:
            self._cancelled = True
            for process in self._taken:
                with contextlib.suppress(OSError, KeyError):
                    os.write(self._cancel_writers[process], b"x")

    def release(self, process: Any) -> None:
        """Forget a worker that has ended: close its cancel pipe."""
        fd = self._cancel_writers.pop(process, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def take(self, count: int) -> list[tuple[Any, Connection, Connection]]:
        """``count`` workers: the idle ones first, then new ones; other idle ones are let go."""
        taken = self._idle[:count]
        for process, config_writer, _events in self._idle[count:]:
            config_writer.close()
            self.release(process)
        self._idle = []
        while len(taken) < count:
            taken.append(self._spawn())
        self._taken = [process for process, _, _ in taken]
        return taken

    def close(self, wait: float = FEEDER_WAIT) -> None:
        """Release what the launcher holds, once its run's workers have ended: the cancel
        pipes, the pipes of workers never taken (which then exit), and the job queue, whose
        feeder thread (which holds the queue's two pipe ends) is given ``wait`` seconds to
        finish.

        A launcher serves one run; a long-lived program calls ``run()`` many times, and each
        run's descriptors used to stay open for good. Idempotent. A later :meth:`cancel` (a
        signal arriving late) writes nothing: the descriptor number may already belong to
        another file.
        """
        self.jobs.close()
        # After a normal run the workers took every job and sentinel, so the feeder ends at
        # once; joined here, the caller gets back a process without it. After an interrupted
        # run it may be stuck writing jobs nobody reads: then it is not waited for longer.
        feeder = getattr(self.jobs, "_thread", None)
        if feeder is not None and wait > 0:
            feeder.join(wait)
        self._cancelled = True
        for process in list(self._cancel_writers):
            self.release(process)
        for _process, config_writer, events_reader in self._idle:
            config_writer.close()
            events_reader.close()
        self._idle = []
