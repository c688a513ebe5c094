"""The parent's end of a worker's events pipe: messages read into one buffer, reused.

A worker sends each batch of events as one message with ``Connection.send_bytes`` (a pickled
list; see ``engine.worker``). ``Connection.recv_bytes`` would read every message into fresh
memory three times over (a read buffer, a ``BytesIO``, its value) before unpickling copies
the output out once more; on an output-heavy run that is the bulk of the parent's memory
traffic. :class:`BatchReader` reads the same framing (a 4-byte big-endian signed length, or
-1 and an 8-byte length for a message of 2 GiB or more) straight into a buffer it keeps, and
unpickles from there.
"""

from __future__ import annotations

import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

#: Bytes the reader keeps for messages; a larger message gets a buffer of its own.
BUFFER_SIZE = 1024 * 1024


class BatchReader:
    """Reads whole messages from workers' pipes into one reused buffer."""

    def __init__(self, size: int = BUFFER_SIZE) -> None:
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)

    def read(self, connection: Connection) -> list[Any]:
        """The next batch of events on ``connection``; ``EOFError`` once the worker is gone."""
        fd = connection.fileno()
        self._fill(fd, 4)
        (size,) = struct.unpack_from("!i", self._buffer)
        if size == -1:
            self._fill(fd, 8)
            (size,) = struct.unpack_from("!Q", self._buffer)
        if size > len(self._buffer):
            whole = memoryview(bytearray(size))
            self._fill(fd, size, whole)
            batch: list[Any] = pickle.loads(whole)
            return batch
        self._fill(fd, size)
        batch = pickle.loads(self._view[:size])
        return batch

    def _fill(self, fd: int, size: int, view: memoryview | None = None) -> None:
        """Read exactly ``size`` bytes into the start of ``view`` (default: the buffer)."""
        target = (self._view if view is None else view)[:size]
        done = 0
        while done < size:
            count = os.readv(fd, [target[done:]])
            if count == 0:
                raise EOFError("the worker closed its events pipe")
            done += count
