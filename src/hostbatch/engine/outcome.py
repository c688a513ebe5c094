"""Fold the event stream into per-host outcomes and the run's exit status."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from hostbatch.engine.events import (
    Event,
    HostExited,
    HostFailed,
    HostKeyScanned,
    HostStarted,
    TransferDone,
)
from hostbatch.errors import FailureKind
from hostbatch.exit_status import ExitStatus

#: Failure kinds that mean "the host did not complete", so the run exits 3.
UNREACHABLE_KINDS = frozenset({
    FailureKind.CONNECT, FailureKind.AUTH, FailureKind.HOSTKEY, FailureKind.TIMEOUT,
    FailureKind.PROTOCOL, FailureKind.DISCONNECT, FailureKind.INTERNAL, FailureKind.RELAY,
})


_SIGNAL_STATUS: dict[int, ExitStatus] = {
    signal.SIGINT: ExitStatus.INTERRUPTED, signal.SIGTERM: ExitStatus.TERMINATED,
    signal.SIGHUP: ExitStatus.HANGUP}


@dataclass(frozen=True, slots=True)
class HostOutcome:
    """How one host ended: exactly one of ``exit_status`` or ``failure`` is set."""

    host: str
    duration: float
    exit_status: int | None = None
    failure: FailureKind | None = None
    message: str = ""
    files: int = 0
    bytes: int = 0
    #: For a ``--sync`` copy: files left unchanged and entries deleted (``sync`` set).
    unchanged: int = 0
    deleted: int = 0
    sync: bool = False
    #: For a ``--sync`` copy: files whose mode alone was changed in place.
    modes: int = 0

    @property
    def ok(self) -> bool:
        """The command ran and exited 0."""
        return self.exit_status == 0


@dataclass
class BatchResult:
    """Every host's outcome, in selection order once complete, plus the run's exit status.

    ``stop_reason`` says why a rollout (``--canary``, ``--max-fail``) stopped starting hosts.
    """

    hosts: list[str]
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    interrupted: bool = False
    #: The signal that interrupted the run (SIGINT, SIGTERM, SIGHUP), when one did.
    signal: int | None = None
    stop_reason: str | None = None

    def record(self, event: Event) -> None:
        """Fold one event in; events other than start and terminal ones are ignored."""
        if isinstance(event, HostStarted):
            self.started.add(event.host)
        elif isinstance(event, HostExited):
            self.outcomes[event.host] = HostOutcome(event.host, event.duration,
                                                    exit_status=event.exit_status,
                                                    message=event.note)
        elif isinstance(event, TransferDone):
            self.outcomes[event.host] = HostOutcome(
                event.host, event.duration, exit_status=0, files=event.files,
                bytes=event.bytes, unchanged=event.unchanged, deleted=event.deleted,
                sync=event.sync, modes=event.modes)
        elif isinstance(event, HostFailed):
            self.outcomes[event.host] = HostOutcome(event.host, event.duration,
                                                    failure=event.kind, message=event.message)
        elif isinstance(event, HostKeyScanned):
            self.outcomes[event.host] = HostOutcome(event.host, event.duration, exit_status=0)

    def missing(self) -> list[str]:
        """Hosts with no terminal event yet, in selection order."""
        return [host for host in self.hosts if host not in self.outcomes]

    @property
    def ok(self) -> list[HostOutcome]:
        """Hosts whose command exited 0."""
        return [o for o in self._ordered() if o.ok]

    @property
    def failed(self) -> list[HostOutcome]:
        """Hosts whose command ran and exited non-zero, or whose transfer failed."""
        return [o for o in self._ordered()
                if o.exit_status not in (None, 0) or o.failure is FailureKind.TRANSFER]

    @property
    def unreachable(self) -> list[HostOutcome]:
        """Hosts that did not complete: connection, auth, host key, timeout, lost connection."""
        return [o for o in self._ordered() if o.failure in UNREACHABLE_KINDS]

    @property
    def not_completed(self) -> list[HostOutcome]:
        """Hosts stopped by an interruption or never started."""
        return [o for o in self._ordered()
                if o.failure in (FailureKind.INTERRUPTED, FailureKind.SKIPPED)]

    def _ordered(self) -> list[HostOutcome]:
        return [self.outcomes[h] for h in self.hosts if h in self.outcomes]

    @property
    def exit_status(self) -> ExitStatus:
        """128 + the signal if interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), else 3 if any
        host did not complete, else 1 if any command failed or a host was skipped, else 0."""
        if self.interrupted:
            return _SIGNAL_STATUS.get(self.signal or 0, ExitStatus.INTERRUPTED)
        if self.unreachable or self.missing():
            return ExitStatus.UNREACHABLE
        if self.failed or self.not_completed:
            return ExitStatus.COMMAND_FAILED
        return ExitStatus.OK
