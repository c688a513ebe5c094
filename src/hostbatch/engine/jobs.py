"""Jobs: one action paired with one finished host, and the plan of a whole run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hostbatch.actions import Action
from hostbatch.inventory.model import HostSpec


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work: an action on one host. Plain data, so it crosses process boundaries."""

    host: HostSpec
    action: Action


def plan(hosts: Sequence[HostSpec], action: Action) -> list[Job]:
    """One job per host, in selection order."""
    return [Job(host, action) for host in hosts]
