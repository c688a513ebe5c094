"""Rollout policy: which hosts may start next, given the outcomes so far (pure, no I/O).

``--canary N`` runs the first N hosts alone and stops if any of them fails; ``--batch N|P%``
runs the rest in waves (a wave starts only once every host of the previous one has ended);
``--max-fail N|P%`` stops starting hosts once that many have failed. Without ``--batch`` the
hosts after the canary flow continuously, a new one starting as soon as a slot frees up, so a
stop leaves at most the hosts already in flight running. Hosts never started when the rollout
stops are reported as skipped, with the rule that stopped it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_AMOUNT = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


@dataclass(frozen=True, slots=True)
class Amount:
    """A host count, either absolute (``3``) or a percentage of the selected hosts (``25%``)."""

    value: int
    percent: bool = False

    @classmethod
    def parse(cls, text: str) -> Amount:
        """``N`` (at least 1) or ``P%`` (1-100); raises ``ValueError`` with a short reason."""
        match = _AMOUNT.match(text)
        if not match:
            raise ValueError(f"{text!r} is not a number of hosts (N) or a percentage (P%)")
        value, percent = int(match.group(1)), bool(match.group(2))
        if value < 1 or (percent and value > 100):
            raise ValueError(f"{text!r} must be at least 1" + (" and at most 100%" if percent
                                                               else ""))
        return cls(value, percent)

    def resolve(self, total: int) -> int:
        """Hosts this amount stands for among ``total`` hosts: a percentage rounds up, and is
        never less than one host."""
        if not self.percent:
            return self.value
        return max(1, math.ceil(total * self.value / 100))

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """The rollout rules of a run; the default (all unset) runs every host at once."""

    canary: int = 0
    batch: Amount | None = None
    max_fail: Amount | None = None

    @property
    def active(self) -> bool:
        """Whether any rule is set (otherwise the engine feeds every job at once)."""
        return bool(self.canary) or self.batch is not None or self.max_fail is not None


class Rollout:
    """The state of one rollout over ``total`` hosts (indices in selection order).

    The engine asks :meth:`next_starts` which hosts to start, reports each end with
    :meth:`finished`, and stops feeding once :attr:`done`; :meth:`never_started` then lists
    the hosts to report as skipped, with :attr:`stop_reason`.
    """

    def __init__(self, total: int, policy: RolloutPolicy, slots: int) -> None:
        self.total = total
        self.policy = policy
        self.slots = max(1, slots)
        self.stop_reason: str | None = None
        self.failures = 0
        self._next = 0
        self._running: set[int] = set()
        self._max_fail = None if policy.max_fail is None else policy.max_fail.resolve(total)
        self._wave_ends = self._plan_waves()
        self._wave = 0

    def _plan_waves(self) -> list[int]:
        """End index (exclusive) of each wave; the last wave ends at ``total``."""
        ends: list[int] = []
        start = 0
        if self.policy.canary:
            start = min(self.policy.canary, self.total)
            ends.append(start)
        size = None if self.policy.batch is None else self.policy.batch.resolve(self.total)
        while start < self.total:
            start = self.total if size is None else min(start + size, self.total)
            ends.append(start)
        return ends

    @property
    def done(self) -> bool:
        """No host will be started any more (every host was started, or the rollout stopped)."""
        return self.stop_reason is not None or self._next >= self.total

    @property
    def in_canary(self) -> bool:
        """Whether the canary wave is the current one."""
        return bool(self.policy.canary) and self._wave == 0

    def next_starts(self) -> list[int]:
        """Hosts to start now: within the current wave, up to the free slots."""
        if self.done:
            return []
        if self._next >= self._wave_ends[self._wave]:
            if self._running:
                return []  # the wave is not over yet
            self._wave += 1
        end = self._wave_ends[self._wave]
        starts: list[int] = []
        while self._next < end and len(self._running) < self.slots:
            starts.append(self._next)
            self._running.add(self._next)
            self._next += 1
        return starts

    def finished(self, index: int, failed: bool) -> None:
        """Record that host ``index`` ended, and whether it failed."""
        self._running.discard(index)
        if not failed:
            return
        self.failures += 1
        if self.stop_reason is not None:
            return
        if self._max_fail is not None and self.failures >= self._max_fail:
            self.stop_reason = f"--max-fail {self.policy.max_fail} reached"
        elif self._index_in_canary(index):
            self.stop_reason = "a --canary host failed"

    def _index_in_canary(self, index: int) -> bool:
        return bool(self.policy.canary) and index < self._wave_ends[0]

    def never_started(self) -> range:
        """Hosts that were not (and will not be) started."""
        return range(self._next, self.total)
