"""Run-wide settings, and the one place where command-line values override inventory values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hostbatch.inventory.model import HostSpec
from hostbatch.inventory.resolve import apply_overrides
from hostbatch.rollout import RolloutPolicy

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
    """Apply ``settings.connect_timeout`` (the command-line layer) to hosts a library caller
    resolved without it; the full order lives in :mod:`hostbatch.inventory.resolve`."""
    return apply_overrides(hosts, settings.connect_timeout)
