"""What one host's job carries into the SSH layer besides its action: :class:`HostContext`.

One object instead of long keyword lists: the time limit, the run's cancellation and wake-up,
the per-run marker, and the callbacks through which a session reports what happens (lines of
output, transfer progress, files landed). The SSH layer knows nothing of events or processes:
the engine turns these callbacks into events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hostbatch.actions import Stream

#: Receives (stream, block of complete lines, whether a final newline was added to the block).
OnLines = Callable[[Stream, bytes, bool], None]
#: Receives (remote path, bytes done, bytes in all).
OnProgress = Callable[[str, int, int], None]
#: Receives (source, destination, size, seconds) for each file that landed.
OnFile = Callable[[str, str, int, float], None]
#: Receives ("send", "delete" or "chmod", path) for each change a ``--dry-run`` sync would
#: make.
OnPlan = Callable[[str, str], None]


def _ignore(*_: object) -> None:
    """A callback for reports nobody asked for."""


@dataclass(frozen=True, slots=True)
class HostContext:
    """The run-wide facts and the reporting hooks of one host's job.

    ``timeout`` is the run's ``--timeout`` (``None``: no limit) and ``started`` the moment the
    job began (``time.monotonic()``); a command's limit counts from its start, a transfer's
    from the job's (see :meth:`deadline_from`). ``cancelled`` is set when the run is cancelled
    (Ctrl-C), and ``wake_fd`` becomes readable at that moment, so a ``select`` wakes at once.
    ``marker`` is the run's random nonce, framing the kill wrapper's and sudo's lines.
    """

    host: str
    marker: str
    timeout: float | None = None
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    wake_fd: int | None = None
    on_lines: OnLines = _ignore
    on_progress: OnProgress = _ignore
    on_file: OnFile = _ignore
    on_plan: OnPlan = _ignore
    #: Counts the SSH layer keeps for the terminal event (``modes``: files whose mode alone
    #: a ``--sync`` changed in place).
    counters: dict[str, int] = field(default_factory=dict)

    def deadline_from(self, start: float) -> float | None:
        """The absolute deadline of work that began at ``start``, or ``None``."""
        return None if self.timeout is None else start + self.timeout

    @property
    def is_cancelled(self) -> bool:
        """Whether the run has been cancelled."""
        return self.cancelled.is_set()
