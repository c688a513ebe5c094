"""hostbatch.engine.outcome: folding events into outcomes and the run's exit status."""

from __future__ import annotations

import pickle

import pytest

from hostbatch.engine.events import (
    Event,
    HostExited,
    HostFailed,
    HostKeyLearned,
    HostStarted,
    OutputLines,
)
from hostbatch.engine.outcome import BatchResult, ExitStatus, HostOutcome
from hostbatch.errors import FailureKind


def ok(host: str, duration: float = 0.1) -> HostExited:
    return HostExited(host, 0, duration)


def exited(host: str, status: int) -> HostExited:
    return HostExited(host, status, 0.2)


def failed(host: str, kind: FailureKind) -> HostFailed:
    return HostFailed(host, kind, f"{kind.value} went wrong", 0.3)


def result_of(hosts: list[str], events: list[Event], interrupted: bool = False) -> BatchResult:
    result = BatchResult(hosts)
    for event in events:
        result.record(event)
    result.interrupted = interrupted
    return result


def test_exit_status_values() -> None:
    assert [int(s) for s in ExitStatus] == [0, 1, 2, 3, 70, 129, 130, 143]


UNREACHABLE = [FailureKind.CONNECT, FailureKind.AUTH, FailureKind.HOSTKEY, FailureKind.TIMEOUT,
               FailureKind.PROTOCOL, FailureKind.DISCONNECT, FailureKind.INTERNAL]

CASES = [
    ("all-ok", ["a", "b"], [ok("a"), ok("b")], False, 0),
    ("no-hosts", [], [], False, 0),
    ("one-nonzero", ["a", "b"], [ok("a"), exited("b", 1)], False, 1),
    ("nonzero-255", ["a"], [exited("a", 255)], False, 1),
    ("nonzero-127", ["a", "b"], [exited("a", 127), exited("b", 2)], False, 1),
    *[(f"{kind.value}-gives-3", ["a", "b"], [ok("a"), failed("b", kind)], False, 3)
      for kind in UNREACHABLE],
    ("3-beats-1", ["a", "b"], [exited("a", 1), failed("b", FailureKind.CONNECT)], False, 3),
    ("3-beats-1-any-order", ["a", "b"], [failed("a", FailureKind.TIMEOUT), exited("b", 7)],
     False, 3),
    ("missing-host-gives-3", ["a", "b"], [ok("a")], False, 3),
    ("started-not-finished-gives-3", ["a", "b"], [ok("a"), HostStarted("b", 0)], False, 3),
    ("missing-beats-1", ["a", "b"], [exited("a", 1)], False, 3),
    ("nothing-finished", ["a"], [], False, 3),
    ("interrupted-all-ok", ["a"], [ok("a")], True, 130),
    ("130-beats-3", ["a", "b"], [failed("a", FailureKind.CONNECT), exited("b", 1)], True, 130),
    ("130-beats-missing", ["a", "b"], [ok("a")], True, 130),
    ("skipped-by-rollout-gives-1", ["a", "b"], [ok("a"), failed("b", FailureKind.SKIPPED)],
     False, 1),
    ("skipped-and-unreachable-gives-3", ["a", "b", "c"],
     [failed("a", FailureKind.CONNECT), failed("b", FailureKind.SKIPPED), ok("c")], False, 3),
    ("130-with-interrupted-and-skipped", ["a", "b", "c"],
     [exited("a", 1), failed("b", FailureKind.INTERRUPTED), failed("c", FailureKind.SKIPPED)],
     True, 130),
]


@pytest.mark.parametrize(
    ("hosts", "events", "interrupted", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_exit_status(hosts: list[str], events: list[Event], interrupted: bool,
                     expected: int) -> None:
    status = result_of(hosts, events, interrupted).exit_status
    assert isinstance(status, ExitStatus)
    assert status == expected


def test_missing_hosts_in_selection_order() -> None:
    result = result_of(["c", "a", "b"], [ok("a")])
    assert result.missing() == ["c", "b"]


def test_partitions_in_selection_order() -> None:
    hosts = ["h1", "h2", "h3", "h4", "h5", "h6", "h7"]
    events: list[Event] = [
        failed("h7", FailureKind.SKIPPED),
        exited("h4", 2),
        ok("h3"),
        failed("h2", FailureKind.AUTH),
        ok("h1"),
        failed("h5", FailureKind.INTERRUPTED),
        exited("h6", 1),
    ]
    result = result_of(hosts, events)
    assert [o.host for o in result.ok] == ["h1", "h3"]
    assert [o.host for o in result.failed] == ["h4", "h6"]
    assert [o.host for o in result.unreachable] == ["h2"]
    assert [o.host for o in result.not_completed] == ["h5", "h7"]
    assert result.missing() == []


def test_record_builds_outcomes() -> None:
    result = result_of(["a", "b"], [
        HostStarted("a", 1),
        OutputLines("a", "stdout", (b"x",)),
        HostKeyLearned("a", "/kh", "a ssh-ed25519 AAAA", "SHA256:x"),
        HostExited("a", 255, 1.5, note="killed by a signal"),
        HostFailed("b", FailureKind.HOSTKEY, "changed key", 0.25),
    ])
    assert result.started == {"a"}
    assert result.outcomes["a"] == HostOutcome("a", 1.5, exit_status=255,
                                               message="killed by a signal")
    assert result.outcomes["b"] == HostOutcome("b", 0.25, failure=FailureKind.HOSTKEY,
                                               message="changed key")
    assert not result.outcomes["a"].ok


def test_output_alone_is_not_an_outcome() -> None:
    result = result_of(["a"], [OutputLines("a", "stdout", (b"x",))])
    assert result.outcomes == {}
    assert result.exit_status == ExitStatus.UNREACHABLE


def test_host_outcome_ok() -> None:
    assert HostOutcome("a", 0.0, exit_status=0).ok
    assert not HostOutcome("a", 0.0, exit_status=1).ok
    assert not HostOutcome("a", 0.0, failure=FailureKind.CONNECT).ok


def test_batch_result_pickles() -> None:
    result = result_of(["a", "b"], [ok("a"), failed("b", FailureKind.CONNECT)])
    restored = pickle.loads(pickle.dumps(result))
    assert restored.outcomes == result.outcomes
    assert restored.exit_status == ExitStatus.UNREACHABLE
