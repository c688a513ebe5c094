"""Run-wide settings: limits, timeouts and host-key policy, the same for every host.

Per-host values (and the command-line values that override them) are finished by
:func:`hostbatch.prepare.prepare_hosts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
