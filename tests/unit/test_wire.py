"""hostbatch.engine.wire: every action, job and event survives the JSON wire format exactly,
versions are checked, and secrets travel only when asked for."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest

from hostbatch.actions import (
    Action,
    GetFiles,
    LocalEntry,
    PutFiles,
    RunCommand,
    RunInput,
    ScanHostKey,
    SyncOptions,
)
from hostbatch.engine import wire
from hostbatch.engine.events import (
    Event,
    FileTransferred,
    HostExited,
    HostFailed,
    HostKeyLearned,
    HostKeyScanned,
    HostStarted,
    OutputLines,
    TransferDone,
    TransferPlanned,
    TransferProgress,
)
from hostbatch.engine.jobs import Job
from hostbatch.errors import FailureKind
from hostbatch.inventory.model import HostSpec
from hostbatch.secrets import Secret

ALL_BYTES = bytes(range(256))
BASTION = HostSpec("bastion", "127.0.0.5", 2222, "jump", identity_file="/k/id_ed25519")
SPEC = HostSpec("web01", "127.0.0.10", 22, "deploy", password=Secret("pw-wire-1"),
                sudo_password=Secret("sudo-wire-2"), key_passphrases=(("/k/id", Secret("pp")),),
                proxy_jump=("bastion",), jump_chain=(BASTION,))

ACTIONS: list[Action] = [
    RunCommand("echo 'ü' \"$HOME\"", env=(("A", "1"), ("B", "x y")), sudo=True),
    RunCommand("", script="fix.sh", script_args=("--now", "a b")),
    PutFiles("src", "/srv/", (LocalEntry("", "dir", 0o755),
                              LocalEntry("a b", "file", 0o600, 12, 1.5, 2.5, "", "ab" * 32),
                              LocalEntry("l", "link", link_target="../x")),
             recursive=True, preserve_times=True, verify=True, mkdir=True,
             sync=SyncOptions(enabled=True, checksum=True, delete=True), limit_rate=1000),
    GetFiles("/etc/os-release", "out", recursive=False, verify=True),
    ScanHostKey(),
]
EVENTS: list[Event] = [
    HostStarted("web01", 3),
    OutputLines("web01", "stderr", ALL_BYTES + b"\n", unterminated=True),
    HostExited("web01", 255, 1.25, "ended without an exit status"),
    HostFailed("web01", FailureKind.AUTH, "authentication failed", 0.5),
    HostKeyLearned("web01", "/root/.ssh/known_hosts", "web01 ssh-ed25519 AAAA", "SHA256:x"),
    TransferProgress("web01", "/srv/a", 10, 20),
    FileTransferred("web01", "get", "/srv/a", "out/web01/a", 20, 0.1),
    TransferDone("web01", 2, 40, 0.3),
    TransferDone("web01", 1, 10, 0.3, method="stream", unchanged=5, deleted=2, sync=True,
                 dry_run=True, note="why"),
    TransferPlanned("web01", "delete", "/srv/old"),
    HostKeyScanned("web01", "[127.0.0.10]:2222", "ssh-ed25519", "AAAA", "SHA256:y", 0.2),
]


def round_trip(obj: Any, *, secrets: bool = False) -> Any:
    return wire.loads(wire.dumps(obj, secrets=secrets))


@pytest.mark.parametrize("obj", [*ACTIONS, *EVENTS, RunInput(ALL_BYTES, b"#!/bin/sh\n")],
                         ids=lambda obj: type(obj).__name__)
def test_round_trip_is_exact(obj: Any) -> None:
    assert round_trip(obj) == obj


def test_every_action_and_event_type_has_an_example() -> None:
    covered = {type(obj) for obj in (*ACTIONS, *EVENTS)}
    assert covered == {*typing.get_args(Action), *typing.get_args(Event)}


def test_a_job_with_secrets_travels_only_when_asked() -> None:
    job = Job(SPEC, ACTIONS[0])
    with pytest.raises(wire.WireError, match="secret"):
        wire.dumps(job)
    back = round_trip(job, secrets=True)
    assert back == job
    assert back.host.password.reveal() == "pw-wire-1"
    assert back.host.jump_chain[0].identity_file == "/k/id_ed25519"


def test_messages_are_one_ascii_json_line_with_the_version() -> None:
    line = wire.dumps(EVENTS[1])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    message = json.loads(line)
    assert message["v"] == wire.WIRE_VERSION and message["type"] == "OutputLines"


@pytest.mark.parametrize(("line", "reason"), [
    (b'{"v": 99, "type": "HostStarted", "host": "a", "worker": 1}', "version 99"),
    (b'{"type": "HostStarted", "host": "a", "worker": 1}', "version None"),
    (b'{"v": 1, "type": "Nope"}', "unknown message type"),
    (b'{"v": 1, "type": "HostStarted", "host": "a"}', "malformed"),
    (b'{"v": 1, "type": "HostFailed", "host": "a", "kind": "bogus", "message": ""}',
     "malformed"),
    (b'{"v": 1, "type": "OutputLines", "host": "a", "stream": "stdout", '
     b'"data": {"$bytes": "!!"}}', "malformed"),
    (b"not json", "not a JSON message"),
    (b"[1, 2]", "version None"),
])
def test_bad_messages_are_refused_clearly(line: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason):
        wire.loads(line)


def test_only_known_types_are_encoded() -> None:
    with pytest.raises(wire.WireError, match="cannot send"):
        wire.encode(object())
    with pytest.raises(wire.WireError, match="cannot send"):
        wire.encode({"a": 1})
