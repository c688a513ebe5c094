"""The exception that ends one host's job, raised inside the SSH layer.

The worker catches it and turns it into a :class:`~hostbatch.engine.events.HostFailed` event:
per-host failure is a value by the time it leaves the worker, never an exception.
"""

from __future__ import annotations

from hostbatch.errors import FailureKind


class HostJobError(Exception):
    """One host's job cannot go on (``kind``, ``message``); ``transient`` failures (a
    connection closed during the handshake) may be retried by the caller."""

    def __init__(self, kind: FailureKind, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.transient = transient
