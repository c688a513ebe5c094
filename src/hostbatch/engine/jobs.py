"""Jobs: one action paired with one finished host, and the plan of a whole run.

Hosts reached through relays (``HostSpec.relays``) are not jobs of their own: they are
grouped into one :class:`ShardJob` per route (the same relays in the same order), which one
worker thread drives by starting ``hostbatch relay --stdio`` on the relay (see
:mod:`hostbatch.relay`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from hostbatch.actions import Action
from hostbatch.inventory.model import HostSpec


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work: an action on one host. Plain data, so it crosses process boundaries."""

    host: HostSpec
    action: Action


@dataclass(frozen=True, slots=True)
class ShardJob:
    """The hosts of one route, run by a relay: ``relays`` are tried in order until one starts;
    ``hosts`` are the shard's hosts as the relay must reach them (directly: their own relays
    removed)."""

    relays: tuple[HostSpec, ...]
    hosts: tuple[HostSpec, ...]
    action: Action

    @property
    def host(self) -> HostSpec:
        """The first relay: what the pool's worker planning looks at (its jump chain)."""
        return self.relays[0]

    @property
    def names(self) -> tuple[str, ...]:
        """The shard's host names, in plan order."""
        return tuple(spec.name for spec in self.hosts)


AnyJob = Job | ShardJob


def job_hosts(job: AnyJob) -> tuple[str, ...]:
    """The names of the hosts a job ends with one terminal event each."""
    return job.names if isinstance(job, ShardJob) else (job.host.name,)


def plan(hosts: Sequence[HostSpec], action: Action, *,
         host_by_host: bool = False) -> list[AnyJob]:
    """One job per direct host, in selection order, and one shard per relay route (placed
    where its first host is).

    ``host_by_host`` (a rollout: the controller gates every host across all relays) makes
    each relayed host a shard of its own, in selection order: one relay session per host.
    """
    if host_by_host:
        return [ShardJob(spec.relays, (dataclasses.replace(spec, via=(), relays=()),), action)
                if spec.relays else Job(spec, action) for spec in hosts]
    jobs: list[AnyJob] = []
    shards: dict[tuple[str, ...], list[HostSpec]] = {}
    for spec in hosts:
        if not spec.relays:
            jobs.append(Job(spec, action))
            continue
        route = tuple(relay.name for relay in spec.relays)
        if route not in shards:
            shards[route] = []
            jobs.append(Job(spec, action))  # a placeholder, replaced below
        shards[route].append(dataclasses.replace(spec, via=(), relays=()))
    done: set[tuple[str, ...]] = set()
    planned: list[AnyJob] = []
    for job in jobs:
        route = tuple(relay.name for relay in job.host.relays)
        if not route:
            planned.append(job)
        elif route not in done:
            done.add(route)
            planned.append(ShardJob(job.host.relays, tuple(shards[route]), action))
    return planned
