"""The per-host failure raised inside the SSH layer and caught by the worker as a value."""

from __future__ import annotations

from hostbatch.errors import FailureKind


class HostFailure(Exception):
    """One host cannot go on; ``transient`` failures may be retried by the caller."""

    def __init__(self, kind: FailureKind, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.transient = transient
