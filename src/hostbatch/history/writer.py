"""A background thread that performs the history's writes in order, off the event loop.

In WAL mode a commit fsyncs at checkpoints, and a write may wait up to the busy timeout for
another run's transaction: neither should hold up the rendering of a live run (measured: a
500 MB run spent 6.4 s writing, 5 s of it waiting on the disk). SQLite releases the GIL while
it works, so the event loop goes on meanwhile. The queue is bounded, so a slow disk slows the
run down instead of filling memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

#: Writes waiting at most; each is one transaction of at most a few hundred KiB.
DEPTH = 4


class BackgroundWriter:
    """Runs submitted writes one after another on its own thread.

    The first write that raises is kept in :attr:`error` and every later write is skipped:
    history never fails a run, so any failure here (a full disk, a lock held past the timeout)
    only turns recording off. The caller reads :attr:`error` and warns, from its own thread.
    """

    def __init__(self, depth: int = DEPTH) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(depth)
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._loop, name="hostbatch-history",
                                        daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], None]) -> None:
        """Queue ``write``; blocks while the queue is full."""
        self._queue.put(write)

    def wait(self) -> None:
        """Return once every submitted write is done (or skipped)."""
        self._queue.join()

    def close(self) -> None:
        """Finish the queued writes and stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            write = self._queue.get()
            try:
                if write is None:
                    return
                if self.error is None:
                    write()
            except Exception as exc:  # any failure only stops recording: see the class
                self.error = exc
            finally:
                self._queue.task_done()
