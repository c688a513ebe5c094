"""Output bytes kept outside the database: one append-only file per run.

The database holds, per output row, where its bytes are in the run's file (offset and
length); the bytes themselves are written once, here, in arrival order. Kept in SQLite they
were written twice (the WAL, then the checkpoint) and cost 0.3-0.5 s of client CPU per 100 MB
of output (bench/results-run-issue10-history.md).

Where the platform allows it the file is written with ``O_DIRECT``, from one reused buffer:
the bytes go to the disk without a copy into the page cache, whose fresh pages were what
writing cost (measured: 100 MB in 256 KiB writes, 0.01 s of system time direct, 0.02-0.24 s
buffered on a file that grows). ``O_DIRECT`` needs writes of whole blocks at block offsets,
so the last, partial block is written padded with zeros and written again, completed, by the
next write; :meth:`BlobWriter.close` cuts the padding off. A file system that refuses
``O_DIRECT`` (tmpfs on older kernels, some network file systems) gets plain buffered writes.

Every write reaches the file before the rows that point at it are committed, so a reader never
finds a row whose bytes were not written; a killed run leaves at most unreferenced bytes (and
padding) at the end of its file.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

#: Block size the direct writes are aligned to (the largest logical block size in use).
BLOCK = 4096
#: The reused write buffer; a flush of the recorder is at most a few hundred KiB.
BUFFER = 1 << 20
#: Name of each run's file: ``run-<something unique>.out``.
PREFIX, SUFFIX = "run-", ".out"
#: A file no run refers to is removed by ``prune`` once it is this old (seconds): younger, it
#: may belong to a run that is starting (its file is made before its row).
ORPHAN_AGE = 600.0

_DIRECT = getattr(os, "O_DIRECT", 0)


def output_dir(database: Path) -> Path:
    """Where the runs' output files live: ``history-output/`` beside ``history.db``."""
    return database.with_name(f"{database.stem}-output")


class BlobWriter:
    """Appends one run's output to its file; see the module docstring.

    Used from one thread at a time (the recorder's writer thread).
    """

    def __init__(self, path: Path, fd: int, direct: bool) -> None:
        self.path = path
        self._fd = fd
        self._direct = direct
        self._buffer = mmap.mmap(-1, BUFFER)  # page-aligned, as O_DIRECT needs
        self._view = memoryview(self._buffer)  # slices of it are written without a copy
        #: File offset of the buffer's first byte (a block boundary when direct).
        self._base = 0
        #: Bytes of the buffer that hold data.
        self._fill = 0

    @classmethod
    def create(cls, directory: Path) -> BlobWriter:
        """Make a new, private file (directory 0700, file 0600) in ``directory``."""
        if not directory.is_dir():
            directory.mkdir(parents=True, mode=0o700, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S-")
        fd, name = tempfile.mkstemp(suffix=SUFFIX, prefix=PREFIX + stamp, dir=directory)
        path = Path(name)
        if not _DIRECT:
            return cls(path, fd, direct=False)
        try:
            direct = os.open(path, os.O_WRONLY | _DIRECT)
        except OSError:
            return cls(path, fd, direct=False)
        os.close(fd)
        return cls(path, direct, direct=True)

    @property
    def name(self) -> str:
        """The file's name, as the database records it."""
        return self.path.name

    @property
    def size(self) -> int:
        """Bytes appended so far."""
        return self._base + self._fill

    def append(self, pieces: Sequence[bytes]) -> tuple[int, int]:
        """Add ``pieces`` (one row's bytes) to the buffer; return their (offset, length)."""
        offset = self.size
        for piece in pieces:
            view = memoryview(piece)
            while view:
                room = BUFFER - self._fill
                if not room:
                    self._write(whole_only=True)
                    continue
                part = view[:room]
                self._buffer[self._fill:self._fill + len(part)] = part
                self._fill += len(part)
                view = view[len(part):]
        return offset, self.size - offset

    def sync(self) -> None:
        """Write everything appended so far to the file (before its rows are committed)."""
        if self._fill:
            self._write(whole_only=False)

    def close(self) -> None:
        """Write what is left, cut the padding of the last block off, and close the file; a
        file that got no byte is removed (no row points into it: a run of ``true`` leaves
        nothing behind)."""
        if self._fd < 0:
            return
        try:
            self.sync()
            os.ftruncate(self._fd, self.size)
        finally:
            self.abandon()
        if not self.size:
            _unlink(self.path)

    def abandon(self) -> None:
        """Close the file as it is, writing nothing more (a no-op once closed)."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        self._view.release()
        self._buffer.close()

    def _write(self, *, whole_only: bool) -> None:
        """Write the buffer at its offset; direct: whole blocks, the partial last one padded
        (unless ``whole_only``) and kept at the buffer's start to be completed later."""
        if not self._direct:
            self._pwrite(self._fill)
            self._base += self._fill
            self._fill = 0
            return
        whole = self._fill - self._fill % BLOCK
        length = whole
        if not whole_only and whole < self._fill:
            length = whole + BLOCK
            self._buffer[self._fill:length] = bytes(length - self._fill)
        if length:
            self._pwrite(length)
        if not self._direct:  # fell back to buffered writes: nothing is kept back
            self._base += self._fill
            self._fill = 0
            return
        tail = self._fill - whole
        self._buffer.move(0, whole, tail)
        self._base += whole
        self._fill = tail

    def _pwrite(self, length: int) -> None:
        """Write the buffer's first ``length`` bytes at its offset; a file system that took the
        ``O_DIRECT`` open but refuses the write (EINVAL) gets the bytes buffered instead."""
        try:
            try:
                written = os.pwrite(self._fd, self._view[:length], self._base)
            except OSError as exc:
                if not self._direct or exc.errno != errno.EINVAL:
                    raise
                self._buffered()
                length = self._fill
                written = os.pwrite(self._fd, self._view[:length], self._base)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        if written != length:
            raise OSError(errno.EIO, "short write", str(self.path))

    def _buffered(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        os.close(self._fd)
        self._fd, self._direct = fd, False


class BlobReader:
    """Reads rows' bytes back from runs' files; what cannot be read is replaced by a marker
    line and described once in :attr:`problems` (the caller warns: history only informs)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.problems: list[str] = []
        self._open: dict[str, int | None] = {}

    def read(self, run_id: int, name: str | None, offset: int, length: int) -> bytes:
        """The ``length`` bytes at ``offset`` of file ``name`` of run ``run_id``."""
        if not length:
            return b""  # nothing to read (the file of a run whose rows are all empty is gone)
        fd = self._fd(run_id, name)
        if fd is None:
            return _lost()
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            return self._problem(run_id, name, exc.strerror or str(exc))
        if len(data) != length:
            return self._problem(run_id, name, "truncated")
        return data

    def close(self) -> None:
        """Close every file opened."""
        for fd in self._open.values():
            if fd is not None:
                os.close(fd)
        self._open.clear()

    def _fd(self, run_id: int, name: str | None) -> int | None:
        key = name or ""
        if key not in self._open:
            fd = None
            if not name or "/" in name or name.startswith("."):
                self._problem(run_id, name, "no valid file name recorded")
            else:
                try:
                    fd = os.open(self.directory / name, os.O_RDONLY)
                except OSError as exc:
                    self._problem(run_id, name, exc.strerror or str(exc))
            self._open[key] = fd
        return self._open[key]

    def _problem(self, run_id: int, name: str | None, reason: str) -> bytes:
        where = self.directory / name if name else self.directory
        message = (f"some output of run {run_id} is lost from the history ({where}: {reason}); "
                   "it is shown as a line '[hostbatch: output lost ...]'")
        if message not in self.problems:
            self.problems.append(message)
        return _lost()


def _lost() -> bytes:
    return b"[hostbatch: output lost from the history]\n"


def remove(directory: Path, names: Sequence[str], referenced: set[str]) -> None:
    """Delete the files ``names`` of pruned runs, and files no run refers to that are older
    than :data:`ORPHAN_AGE` (left by a run that could not record its start). Best effort:
    a file that cannot be removed stays, to be removed by a later prune."""
    for name in names:
        if name and "/" not in name and not name.startswith("."):
            _unlink(directory / name)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    cutoff = time.time() - ORPHAN_AGE
    for entry in entries:
        if (entry.name.startswith(PREFIX) and entry.name not in referenced
                and _older(entry, cutoff)):
            _unlink(Path(entry.path))


def _older(entry: os.DirEntry[str], cutoff: float) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_mtime < cutoff
    except OSError:
        return False


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
