"""The rollout policy, table-tested: which hosts start when, and when a rollout stops."""

from __future__ import annotations

import pytest

from hostbatch.rollout import Amount, Rollout, RolloutPolicy


@pytest.mark.parametrize(("text", "amount"), [
    ("3", Amount(3)), ("25%", Amount(25, True)), (" 100% ", Amount(100, True)),
    ("1", Amount(1)),
])
def test_amount_parse(text: str, amount: Amount) -> None:
    assert Amount.parse(text) == amount


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "x", "5 %%", "", "2.5"])
def test_amount_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Amount.parse(text)


@pytest.mark.parametrize(("amount", "total", "hosts"), [
    (Amount(3), 10, 3), (Amount(25, True), 10, 3), (Amount(50, True), 4, 2),
    (Amount(1, True), 10, 1), (Amount(100, True), 7, 7), (Amount(10, True), 1, 1),
])
def test_amount_resolve(amount: Amount, total: int, hosts: int) -> None:
    assert amount.resolve(total) == hosts


def drive(total: int, policy: RolloutPolicy, slots: int, failing: set[int]) -> tuple[
        list[list[int]], list[int], str | None]:
    """Run a rollout, ending hosts in start order; return the start rounds, the never started
    hosts and the stop reason."""
    rollout = Rollout(total, policy, slots)
    rounds: list[list[int]] = []
    running: list[int] = []
    while True:
        starts = rollout.next_starts()
        if starts:
            rounds.append(starts)
        running.extend(starts)
        if not running:
            break
        host = running.pop(0)
        rollout.finished(host, host in failing)
    return rounds, list(rollout.never_started()), rollout.stop_reason


@pytest.mark.parametrize(("total", "policy", "slots", "failing", "rounds", "never", "reason"), [
    # continuous flow under max-fail: one start per end, up to the slots
    (5, RolloutPolicy(max_fail=Amount(2)), 2, set(), [[0, 1], [2], [3], [4]], [], None),
    (5, RolloutPolicy(max_fail=Amount(1)), 1, {1}, [[0], [1]], [2, 3, 4],
     "--max-fail 1 reached"),
    (6, RolloutPolicy(max_fail=Amount(2)), 2, {0, 1}, [[0, 1], [2]], [3, 4, 5],
     "--max-fail 2 reached"),
    # canary alone first, then the rest
    (4, RolloutPolicy(canary=1), 8, set(), [[0], [1, 2, 3]], [], None),
    (4, RolloutPolicy(canary=2), 8, {1}, [[0, 1]], [2, 3], "a --canary host failed"),
    # a failure after the canary does not stop without --max-fail
    (4, RolloutPolicy(canary=1), 8, {2}, [[0], [1, 2, 3]], [], None),
    # waves wait for the previous wave to end
    (5, RolloutPolicy(batch=Amount(2)), 8, set(), [[0, 1], [2, 3], [4]], [], None),
    (5, RolloutPolicy(canary=1, batch=Amount(2)), 8, set(), [[0], [1, 2], [3, 4]], [], None),
    (4, RolloutPolicy(batch=Amount(50, percent=True)), 8, set(), [[0, 1], [2, 3]], [], None),
    # a wave larger than the slots flows within itself
    (4, RolloutPolicy(batch=Amount(3)), 2, set(), [[0, 1], [2], [3]], [], None),
    # max-fail during a wave: the wave's in-flight hosts end, nothing new starts
    (6, RolloutPolicy(batch=Amount(3), max_fail=Amount(1)), 8, {0}, [[0, 1, 2]], [3, 4, 5],
     "--max-fail 1 reached"),
    (4, RolloutPolicy(max_fail=Amount(50, True)), 1, {0, 2}, [[0], [1], [2]], [3],
     "--max-fail 50% reached"),
    # a canary larger than the selection
    (2, RolloutPolicy(canary=5), 8, set(), [[0, 1]], [], None),
])
def test_rollout_table(total: int, policy: RolloutPolicy, slots: int, failing: set[int],
                       rounds: list[list[int]], never: list[int], reason: str | None) -> None:
    assert drive(total, policy, slots, failing) == (rounds, never, reason)


def test_policy_active() -> None:
    assert not RolloutPolicy().active
    assert RolloutPolicy(canary=1).active
    assert RolloutPolicy(batch=Amount(1)).active
    assert RolloutPolicy(max_fail=Amount(1)).active


def test_done_once_stopped_or_all_started() -> None:
    rollout = Rollout(2, RolloutPolicy(max_fail=Amount(1)), 1)
    assert rollout.next_starts() == [0] and not rollout.done
    rollout.finished(0, True)
    assert rollout.done and rollout.next_starts() == []
