"""Live progress displays on a terminal, drawn with rich on stderr.

* Copies: bytes, rate and ETA per host with a file in flight and in total (500 hosts never
  mean 500 rows).
* Commands whose lines are not streamed to the terminal (``-b``, ``--diff``, ``-q``, ``--json``
  into a file): one line of done / running / failed / total hosts, elapsed time and ETA; when
  few hosts remain, the ones it waits for (``waiting: web07 (12s)``) instead of the ETA.

An ETA is shown only when it can mean something: not before a few hosts have finished, not
for a staged rollout (``--canary``, ``--batch``: waves wait for each other), and not for the
last few stragglers (the rate at which the others finished says nothing about them).

The CLI creates them only when stderr is a terminal: piped or redirected output never sees
them. They are transient: when the run ends they vanish, leaving only what was printed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column
from rich.text import Text

from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    HostStarted,
    TransferDone,
    TransferProgress,
)

#: Name the hosts waited for once this many or fewer remain.
WAITING_WHEN = 10
#: At most this many names; the rest are counted (``and 4 more``).
WAITING_NAMES = 3
#: An ETA needs this many finished hosts, and :data:`ETA_MIN_SHARE` of them.
ETA_MIN_DONE = 3
ETA_MIN_SHARE = 0.05


def waiting_text(started: dict[str, float], remaining: int, now: float) -> str:
    """``waiting: web07 (12s), web09 (3s) and 2 more`` once at most :data:`WAITING_WHEN`
    hosts remain (``started``: running hosts and when they started), else ``""``.

    The longest-running hosts come first: they are the likely stragglers.
    """
    if remaining <= 0 or remaining > WAITING_WHEN or not started:
        return ""
    oldest = sorted(started.items(), key=lambda item: item[1])[:WAITING_NAMES]
    names = ", ".join(f"{host} ({max(now - since, 0):.0f}s)" for host, since in oldest)
    more = remaining - len(oldest)
    return f"waiting: {names}" + (f" and {more} more" if more > 0 else "")


def eta_meaningful(done: int, hosts: int, *, staged: bool) -> bool:
    """Whether an ETA from the rate at which hosts finish can mean anything yet."""
    if staged:
        return False
    return done >= max(ETA_MIN_DONE, math.ceil(hosts * ETA_MIN_SHARE))


class _When(ProgressColumn):
    """Shows the wrapped column's cell only while ``show(task)`` says so, else nothing."""

    def __init__(self, column: ProgressColumn, show: Callable[[Task], bool],
                 label: str = "") -> None:
        super().__init__()
        self.column = column
        self.show = show
        self.label = label

    def render(self, task: Task) -> Text:
        """The wrapped cell (after ``label``), or an empty cell."""
        if not self.show(task):
            return Text("")
        cell = self.column.render(task)
        return Text(self.label) + cell if isinstance(cell, Text) else Text(self.label + str(cell))


class _Computed(ProgressColumn):
    """A cell computed at every refresh (so elapsed seconds keep ticking); cut with ``…``
    rather than wrapped when the terminal is narrow (the display stays one line)."""

    def __init__(self, text: Callable[[], str]) -> None:
        super().__init__(table_column=Column(no_wrap=True, overflow="ellipsis"))
        self.text = text

    def render(self, task: Task) -> Text:
        """The current text."""
        return Text(self.text(), no_wrap=True, overflow="ellipsis")


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
                 color: bool, staged: bool = False) -> None:
        self.console = terminal_console(stderr, color=color)
        # A staged rollout's total waits between waves: no ETA for it (a host's row keeps its).
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=24),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            _When(TimeRemainingColumn(), lambda task: not (staged and task.id == self.total)),
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
    elapsed time, then an ETA (from the rate at which hosts finish) when it can mean
    something, or the hosts it waits for when few remain. ``staged``: a ``--canary`` or
    ``--batch`` rollout, whose waves wait for each other (no ETA)."""

    def __init__(self, stderr: BinaryIO, *, hosts: int, color: bool,
                 staged: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = terminal_console(stderr, color=color)
        self.staged = staged
        self.clock = clock
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _When(TimeRemainingColumn(), lambda _: self.shows_eta(), label="eta "),
            _Computed(self.waiting),
            console=self.console,
            transient=True,
            refresh_per_second=4,
        )
        self.hosts = hosts
        self.running: dict[str, float] = {}
        self.done = 0
        self.failed = 0
        self.task = self.progress.add_task(self._describe(), total=hosts)
        self.progress.start()

    def _describe(self) -> str:
        return (f"done {self.done} / running {len(self.running)} / failed {self.failed} / "
                f"total {self.hosts}")

    def waiting(self) -> str:
        """The hosts still running once few remain (see :func:`waiting_text`)."""
        # Called from rich's refresh thread too: work on a copy (taken in one C call).
        return waiting_text(dict(self.running), self.hosts - self.done, self.clock())

    def shows_eta(self) -> bool:
        """An ETA is shown: enough hosts done, not staged, and not down to the last few."""
        return (eta_meaningful(self.done, self.hosts, staged=self.staged)
                and not self.waiting())

    def handle(self, event: Event) -> None:
        """Count hosts starting and ending."""
        if isinstance(event, HostStarted):
            self.running[event.host] = self.clock()
        elif isinstance(event, HostExited | HostFailed | TransferDone):
            self.running.pop(event.host, None)
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
