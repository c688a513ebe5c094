"""Live progress displays on a terminal, drawn with rich on stderr.

* Copies: bytes, rate and ETA per host with a file in flight and in total (500 hosts never
  mean 500 rows).
* Commands whose lines are not streamed to the terminal (``-b``, ``--diff``, ``-q``, ``--json``
  into a file): one line of done / running / failed / total hosts, elapsed time and ETA.

The CLI creates them only when stderr is a terminal: piped or redirected output never sees
them. They are transient: when the run ends they vanish, leaving only what was printed.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    HostStarted,
    TransferDone,
    TransferProgress,
)


def terminal_console(stderr: BinaryIO, *, color: bool) -> Console:
    """A rich console drawing on ``stderr`` (known to be a terminal), colour as decided."""
    import io

    text = io.TextIOWrapper(stderr, encoding="utf-8", errors="replace",
                            line_buffering=True, write_through=True)
    return Console(file=text, force_terminal=True, no_color=not color, highlight=False)


class ConsoleStream:
    """A binary stream that prints through the live display, so lines appear above it."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, data: bytes) -> int:
        """Print ``data`` above the progress bars."""
        self.console.print(data.decode("utf-8", "replace"), end="", markup=False,
                           highlight=False, soft_wrap=True)
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the console writes at once."""

    def fileno(self) -> int:
        """The console's file descriptor (for :class:`SafeStream`'s broken-pipe handling)."""
        file: Any = self.console.file
        return int(file.fileno())


class TransferProgressRenderer:
    """Per-host rows for hosts with a file in flight, and one total row."""

    def __init__(self, stderr: BinaryIO, *, total_bytes: int | None, hosts: int,
                 color: bool) -> None:
        self.console = terminal_console(stderr, color=color)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=24),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            refresh_per_second=8,
        )
        self.total = self.progress.add_task(f"total (0/{hosts} hosts)", total=total_bytes)
        self.hosts = hosts
        self.finished = 0
        self._rows: dict[str, TaskID] = {}
        self._done_bytes: dict[str, int] = {}
        self._current: dict[str, int] = {}
        self.progress.start()

    def _sum(self) -> int:
        return sum(self._done_bytes.values()) + sum(self._current.values())

    def handle(self, event: Event) -> None:
        """Update the rows for one event."""
        if isinstance(event, TransferProgress):
            row = self._rows.get(event.host)
            if row is None:
                row = self._rows[event.host] = self.progress.add_task(event.host, total=None)
            self.progress.update(row, completed=event.bytes, total=event.total or None,
                                 description=f"{event.host} {event.path}")
            self._current[event.host] = event.bytes
        elif isinstance(event, FileTransferred):
            self._done_bytes[event.host] = self._done_bytes.get(event.host, 0) + event.size
            self._current[event.host] = 0
        elif isinstance(event, TransferDone | HostFailed):
            self.finished += 1
            self._current.pop(event.host, None)
            row = self._rows.pop(event.host, None)
            if row is not None:
                self.progress.remove_task(row)
        else:
            return
        self.progress.update(self.total, completed=self._sum(),
                             description=f"total ({self.finished}/{self.hosts} hosts)")

    def close(self) -> None:
        """Remove the display (it is transient), leaving only the printed lines."""
        self.progress.stop()


class RunProgressRenderer:
    """One line for a command run: ``done D / running R / failed F / total T``, a bar,
    elapsed time and an ETA (from the rate at which hosts finish)."""

    def __init__(self, stderr: BinaryIO, *, hosts: int, color: bool) -> None:
        self.console = terminal_console(stderr, color=color)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            refresh_per_second=4,
        )
        self.hosts = hosts
        self.running: set[str] = set()
        self.done = 0
        self.failed = 0
        self.task = self.progress.add_task(self._describe(), total=hosts)
        self.progress.start()

    def _describe(self) -> str:
        return (f"done {self.done} / running {len(self.running)} / failed {self.failed} / "
                f"total {self.hosts}")

    def handle(self, event: Event) -> None:
        """Count hosts starting and ending."""
        if isinstance(event, HostStarted):
            self.running.add(event.host)
        elif isinstance(event, HostExited | HostFailed | TransferDone):
            self.running.discard(event.host)
            self.done += 1
            if not ((isinstance(event, HostExited) and event.exit_status == 0)
                    or isinstance(event, TransferDone)):
                self.failed += 1
        else:
            return
        self.progress.update(self.task, completed=self.done, description=self._describe())

    def close(self) -> None:
        """Remove the line (it is transient)."""
        self.progress.stop()
