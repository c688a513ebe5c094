"""Run-wide settings, and the one place where command-line values override inventory values."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from hostbatch.engine.rollout import RolloutPolicy
from hostbatch.inventory.model import HostSpec

DEFAULT_FORKS = 64
DEFAULT_RETRIES = 2


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How to run, for every host: limits, host-key policy, and the command deadline.

    ``connect_timeout`` here is the command-line override (``None``: each host keeps its
    inventory value). ``command_timeout`` of ``None`` means no deadline. ``rollout`` holds
    ``--canary``/``--batch``/``--max-fail`` (by default every host starts at once).
    """

    forks: int = DEFAULT_FORKS
    retries: int = DEFAULT_RETRIES
    connect_timeout: float | None = None
    command_timeout: float | None = None
    accept_new: bool = False
    workers: int | None = None
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)


def resolve_hosts(hosts: Sequence[HostSpec], settings: RunSettings) -> list[HostSpec]:
    """Apply command-line overrides to each host: command line > [host:] > [defaults] > built-in.

    The inventory loader already merged the last three; only flags remain to apply here.
    """
    if settings.connect_timeout is None:
        return list(hosts)
    return [dataclasses.replace(spec, connect_timeout=settings.connect_timeout) for spec in hosts]
