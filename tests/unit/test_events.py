"""hostbatch.engine.events: the --json schema, decoding, and pickling across processes."""

from __future__ import annotations

import json
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
from hostbatch.errors import FailureKind


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_lines_json(stream: str) -> None:
    event = OutputLines.from_lines("web1", stream, (b"first", b"", b"third line"))  # type: ignore[arg-type]
    assert event.to_json() == [
        {"host": "web1", "event": stream, "data": "first"},
        {"host": "web1", "event": stream, "data": ""},
        {"host": "web1", "event": stream, "data": "third line"},
    ]


def test_output_lines_json_keys_exactly() -> None:
    (obj,) = OutputLines.from_lines("web1", "stdout", (b"x",)).to_json()
    assert list(obj) == ["host", "event", "data"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"caf\xc3\xa9", "caf\u00e9"),
        (b"bad \xff byte", "bad \ufffd byte"),
        (b"\xc3", "\ufffd"),  # truncated sequence
        (b"\xe2\x82", "\ufffd"),
        (b"latin1 \xe9t\xe9", "latin1 \ufffdt\ufffd"),
        (b"tab\there\x1b[31m", "tab\there\x1b[31m"),
        (b"nul\x00", "nul\x00"),
    ],
)
def test_non_utf8_bytes_are_replaced(raw: bytes, expected: str) -> None:
    (obj,) = OutputLines.from_lines("h", "stdout", (raw,)).to_json()
    assert obj["data"] == expected
    json.loads(json.dumps(obj))  # always serialisable


def test_exit_json() -> None:
    obj = HostExited("web1", 0, 0.31).to_json()
    assert obj == {"host": "web1", "event": "exit", "exit_status": 0, "duration": 0.31}
    assert list(obj) == ["host", "event", "exit_status", "duration"]


def test_exit_json_rounds_duration() -> None:
    obj = HostExited("web1", 3, 1.23456789, note="a note").to_json()
    assert obj == {"host": "web1", "event": "exit", "exit_status": 3, "duration": 1.235}
    assert isinstance(obj["exit_status"], int)


def test_error_json_is_the_issue_schema() -> None:
    """The issue's error event is {"host", "event": "error", "kind", "error"}; the README adds
    "duration" (a documented superset), and nothing else may appear."""
    obj = HostFailed("web1", FailureKind.CONNECT, "connection refused", 0.5).to_json()
    assert list(obj)[:4] == ["host", "event", "kind", "error"]
    assert {key: obj[key] for key in ("host", "event", "kind", "error")} == {
        "host": "web1", "event": "error", "kind": "connect", "error": "connection refused"}
    assert set(obj) - {"host", "event", "kind", "error"} <= {"duration"}
    if "duration" in obj:
        assert obj["duration"] == 0.5


@pytest.mark.parametrize("kind", list(FailureKind))
def test_error_json_kind_strings(kind: FailureKind) -> None:
    obj = HostFailed("web1", kind, "msg").to_json()
    assert obj["host"] == "web1"
    assert obj["event"] == "error"
    assert obj["kind"] == kind.value
    assert obj["error"] == "msg"
    json.dumps(obj)


def test_failure_kind_values() -> None:
    expected = {"connect", "auth", "hostkey", "timeout", "interrupted", "skipped"}
    assert expected <= {kind.value for kind in FailureKind}


EVENTS: list[Event] = [
    HostStarted("web1", 3),
    OutputLines.from_lines("web1", "stdout", (b"a", b"\xff\xfe", b"")),
    OutputLines.from_lines("web1", "stderr", (b"x" * 100_000,)),
    HostExited("web1", 0, 0.31),
    HostExited("web1", 255, 2.0, note="killed by a signal"),
    HostFailed("web1", FailureKind.TIMEOUT, "command timed out after 5s", 5.0),
    HostKeyLearned("web1", "/root/.ssh/known_hosts", "web1 ssh-ed25519 AAAA", "SHA256:abc"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_pickle_round_trip(event: Event) -> None:
    restored = pickle.loads(pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL))
    assert restored == event
    assert type(restored) is type(event)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_are_frozen(event: Event) -> None:
    with pytest.raises(AttributeError):
        event.host = "other"  # type: ignore[misc]
