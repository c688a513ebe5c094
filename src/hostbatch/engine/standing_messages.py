"""The messages between the console's parent process and its standing workers.

Plain frozen dataclasses (pickled over the workers' private pipes, as the run's own pool
does); see :mod:`hostbatch.engine.standing` for the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from hostbatch.actions import RunCommand
from hostbatch.engine.events import Event
from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import Secret
from hostbatch.settings import RunSettings


@dataclass(frozen=True, slots=True)
class StandingConfig:
    """What a standing worker needs before its first command."""

    index: int
    threads: int
    settings: RunSettings
    home: str
    #: Every secret of the session; unpickling them registers them with the redactor.
    secrets: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class RunBatch:
    """Run ``action`` on ``hosts`` (this worker's share), reconnecting those not connected;
    ``action`` ``None`` only connects them (the console's start)."""

    seq: int
    marker: str
    action: RunCommand | None
    timeout: float | None
    hosts: tuple[HostSpec, ...]


@dataclass(frozen=True, slots=True)
class CancelBatch:
    """Ctrl-C during command ``seq``: kill it on every host (ignored once it has ended)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask an idle worker which of its hosts are connected (answered by a :class:`BatchEnd`)."""

    seq: int


@dataclass(frozen=True, slots=True)
class HostConnected:
    """The terminal event of a connect-only batch: the host is connected (or still was)."""

    host: str
    duration: float


@dataclass(frozen=True, slots=True)
class BatchEnd:
    """A worker finished batch (or probe) ``seq``; ``connected``: its hosts whose connection
    is up now."""

    seq: int
    worker: int
    connected: tuple[str, ...] = ()


#: What the parent yields to its caller for one command.
StandingEvent: TypeAlias = Event | HostConnected
