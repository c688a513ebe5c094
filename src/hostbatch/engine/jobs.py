"""What to do on every host: actions, and jobs pairing an action with one host."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hostbatch.inventory.model import HostSpec


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Run ``command`` through the remote user's login shell, as ``ssh host command`` does."""

    command: str


Action = RunCommand


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work: an action on one host. Plain data, so it crosses process boundaries."""

    host: HostSpec
    action: Action


def plan(hosts: Sequence[HostSpec], action: Action) -> list[Job]:
    """One job per host, in selection order."""
    return [Job(host, action) for host in hosts]
