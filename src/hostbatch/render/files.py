"""``-o DIR`` / ``-e DIR``: each host's stdout / stderr in ``DIR/HOST``, as pssh writes them.

Output streams into a temporary ``DIR/.HOST.hostbatch-RANDOM.part`` and is renamed to
``DIR/HOST`` when the host ends (:class:`hostbatch.atomic.AtomicFile`), so a name under ``DIR``
is either absent, the previous run's complete file, or this run's complete file: never
half-written. ``DIR/HOST.status`` (written the same way, in each directory given) holds how the
host ended, one line: the exit status (``0``) or ``error KIND: MESSAGE`` (``error connect:
connection refused by ...``). Every host that ends gets both files, an empty output file
included. Files are private (mode 0600): command output may hold secrets.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable
from pathlib import Path

from hostbatch.atomic import AtomicFile, write_atomically
from hostbatch.engine.events import Event, HostExited, HostFailed, OutputLines
from hostbatch.errors import UsageError
from hostbatch.secrets import redact


def prepare_dir(path: str, flag: str) -> Path:
    """Create ``path`` if missing; a directory that cannot be made or written is a usage error
    (raised before anything connects)."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot create the directory: "
                         f"{exc.strerror or exc}") from None
    if not directory.is_dir():
        raise UsageError(f"{flag} {path}: not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: directory is not writable")
    return directory


def status_text(event: HostExited | HostFailed) -> str:
    """The content of ``HOST.status``: ``N`` or ``error KIND: MESSAGE``, on one line."""
    if isinstance(event, HostExited):
        return f"{event.exit_status}\n"
    message = " ".join(redact(event.message).splitlines())
    return f"error {event.kind.value}: {message}\n"


def _raise_open_file_limit() -> None:
    """Each running host may hold a file per directory: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class HostFilesRenderer:
    """Streams each host's stdout into ``out_dir`` and stderr into ``err_dir``."""

    def __init__(self, out_dir: Path | None, err_dir: Path | None, *,
                 warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.dirs: dict[str, Path] = {}
        if out_dir is not None:
            self.dirs["stdout"] = out_dir
        if err_dir is not None:
            self.dirs["stderr"] = err_dir
        self._open: dict[tuple[str, str], AtomicFile] = {}
        self._failed: dict[tuple[str, str], bool] = {}
        _raise_open_file_limit()

    def _file(self, host: str, stream: str) -> AtomicFile:
        handle = self._open.get((host, stream))
        if handle is None:
            handle = self._open[(host, stream)] = AtomicFile(self.dirs[stream] / host)
        return handle

    def handle(self, event: Event) -> None:
        """Append output to the host's temporary file; publish its files when it ends.

        A local write error (disk full, directory removed) costs that host's file, with a
        warning; it does not stop the run.
        """
        if isinstance(event, OutputLines):
            if event.stream in self.dirs and (event.host, event.stream) not in self._failed:
                try:
                    self._file(event.host, event.stream).file.write(event.exact_data)
                except OSError as exc:
                    self._fail(event.host, event.stream, exc)
        elif isinstance(event, HostExited | HostFailed):
            status = status_text(event).encode()
            for stream, directory in self.dirs.items():
                if not self._failed.pop((event.host, stream), False):
                    try:
                        self._file(event.host, stream).commit()
                        del self._open[(event.host, stream)]
                    except OSError as exc:
                        self._fail(event.host, stream, exc)
                        self._failed.pop((event.host, stream), None)
                try:  # the outcome is recorded even when the output could not be
                    write_atomically(directory / f"{event.host}.status", status)
                except OSError as exc:
                    self.warn(f"{event.host}: cannot write {directory / event.host}.status: "
                              f"{exc.strerror or exc}")

    def _fail(self, host: str, stream: str, exc: OSError) -> None:
        self._failed[(host, stream)] = True
        handle = self._open.pop((host, stream), None)
        if handle is not None:
            handle.discard()
        self.warn(f"{host}: cannot write {self.dirs[stream] / host}: {exc.strerror or exc}")

    def close(self) -> None:
        """Remove temporary files of hosts that never ended (only after an internal error)."""
        for handle in self._open.values():
            handle.discard()
        self._open.clear()
