"""Write a file so that its name only ever shows the old complete content or the new one.

The data goes to a temporary ``.NAME.hostbatch-RANDOM.part`` in the target's own directory
(a rename is atomic only within one file system), created with the final mode from the start
(so a secret is never readable by others, not even for a moment), is flushed and fsynced, and
is then renamed over the target. On any failure, Ctrl-C included, the temporary file is
removed and the target is left as it was.

Three shapes of the same steps, for three kinds of writer:

* :func:`write_atomically`: the data is all at hand (``inventory convert -o``, ``HOST.status``);
* :func:`atomic_write`: a context manager yielding the open file, for a writer that produces
  the data in a loop (a downloaded file);
* :class:`AtomicFile`: an object kept open across calls, for output that arrives in pieces
  over a whole run (``-o/-e DIR``), committed or discarded later.

It imports nothing of hostbatch, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

#: Called with the temporary file's path once its data is complete and before the rename:
#: where a writer sets the final times (or mode) that writing would disturb.
BeforeRename = Callable[[Path], None]

#: The temporary file's name ends with this: a leftover is recognisable as one.
SUFFIX = ".part"


def temp_prefix(name: str) -> str:
    """The start of a temporary file's name for target ``name``: hidden, and naming both the
    target and hostbatch."""
    return f".{name}.hostbatch-"


class AtomicFile:
    """A temporary file next to ``path``: :meth:`commit` renames it to ``path``,
    :meth:`discard` removes it. Exactly one of them must end its life.

    ``durable=False`` skips the fsync, for callers that trade crash safety for speed; the
    rename still never exposes a half-written file to other processes.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o600, *,
                 durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        fd, temp = tempfile.mkstemp(prefix=temp_prefix(self.path.name), suffix=SUFFIX,
                                    dir=self.path.parent)
        self.temp = Path(temp)
        try:
            os.fchmod(fd, mode)
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.temp.unlink(missing_ok=True)
            raise

    def commit(self, before_rename: BeforeRename | None = None) -> None:
        """Flush, fsync, close and rename over the target; on failure, discard and re-raise."""
        try:
            self.file.flush()
            if self.durable:
                os.fsync(self.file.fileno())
            self.file.close()
            if before_rename is not None:
                before_rename(self.temp)
            os.replace(self.temp, self.path)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Close and remove the temporary file; the target is untouched. Never raises OSError."""
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: int = 0o600, *,
                 before_rename: BeforeRename | None = None,
                 durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file whose content replaces ``path`` when the block ends normally; an
    exception (``KeyboardInterrupt`` included) removes it and leaves ``path`` as it was."""
    target = AtomicFile(path, mode, durable=durable)
    try:
        yield target.file
    except BaseException:
        target.discard()
        raise
    target.commit(before_rename)


def write_atomically(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600, *,
                     durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8), never half-written."""
    with atomic_write(path, mode, durable=durable) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def remove_leftovers(directory: str | os.PathLike[str]) -> int:
    """Remove the temporary files a killed writer left anywhere below ``directory`` (names
    made by :func:`temp_prefix` and :data:`SUFFIX`); return how many. Never raises OSError."""
    removed = 0
    with contextlib.suppress(OSError):
        for path in Path(directory).rglob(f".*.hostbatch-*{SUFFIX}"):
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed
