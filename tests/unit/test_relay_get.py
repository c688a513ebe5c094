"""A get through a relay: the files' messages round-trip, land atomically in LOCAL/HOST/,
and a relay that lies about paths or bytes never writes outside or leaves a partial file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hostbatch.actions import GetFiles
from hostbatch.engine.events import FileTransferred, HostFailed, TransferDone
from hostbatch.errors import FailureKind
from hostbatch.relay import protocol
from hostbatch.relay.fetch import GetForwarder
from hostbatch.relay.landing import Landing


@pytest.mark.parametrize("message", [
    protocol.GotEntry("web01", "tree/a b", "file", 0o640, 12.5, 3.0, 7),
    protocol.GotEntry("web01", "tree/l", "link", 0o777, 1.0, 1.0, link_target="../x"),
    protocol.GotEntry("web01", "bad\udcff", "dir", 0o755),
    protocol.GotEnd("web01", "tree/a b", "ab" * 32)])
def test_get_messages_round_trip(message: protocol.Message) -> None:
    assert protocol.loads(protocol.dumps(message)) == message


def test_pending_message_waits_for_a_whole_chunk() -> None:
    reader = protocol.LineReader()
    wire = protocol.dumps(protocol.FileChunk("f", b"x" * 100, True))
    reader.feed(wire[:-10])
    assert reader.pending_message() is None
    reader.feed(wire[-10:] + protocol.dumps(protocol.Done()))
    assert reader.pending_message() == protocol.FileChunk("f", b"x" * 100, True)
    assert reader.pending_message() == protocol.Done()
    assert reader.pending_message() is None


def _relay_side(tmp_path: Path, action: GetFiles) -> tuple[GetForwarder, list[protocol.Message]]:
    sent: list[protocol.Message] = []
    (tmp_path / "relay").mkdir()
    return GetForwarder(action, tmp_path / "relay", sent.append, lambda: False), sent


def test_files_travel_from_the_relay_staging_to_local_host(tmp_path: Path) -> None:
    action = GetFiles("/srv/tree", str(tmp_path / "local"), recursive=True, verify=True,
                      preserve_times=True)
    forwarder, sent = _relay_side(tmp_path, action)
    staged = Path(forwarder.action.local_dir) / "web01" / "tree"
    (staged / "ro").mkdir(parents=True)
    (staged / "big").write_bytes(os.urandom(3 * 1024 * 1024 + 3))
    (staged / "ro" / "f").write_bytes(b"")
    (staged / "link").symlink_to("big")
    os.utime(staged / "big", (1000, 2000))
    staged.joinpath("ro").chmod(0o500)
    forwarder.handle(FileTransferred("web01", "get", "/srv/tree/big", str(staged / "big"), 3, 1))
    forwarder.handle(TransferDone("web01", 2, 3, 1.0))
    assert not (staged.parent).exists()  # the relay's copy is gone once sent
    *files, landed, done = sent
    assert isinstance(landed, FileTransferred)
    assert landed.destination == str(tmp_path / "local" / "web01" / "tree" / "big")
    landing = Landing.of(action, ["web01"])
    for message in files:
        assert isinstance(message, protocol.GotEntry | protocol.FileChunk | protocol.GotEnd)
        landing.take(message)
    assert isinstance(done, TransferDone)
    assert landing.finish(done) == done
    local = tmp_path / "local" / "web01" / "tree"
    assert (local / "big").stat().st_mtime == 2000
    assert (local / "ro").stat().st_mode & 0o777 == 0o500
    assert os.readlink(local / "link") == "big"
    assert (local / "ro" / "f").read_bytes() == b""
    (local / "ro").chmod(0o700)


def _file(host: str, relpath: str, data: bytes, sha: str | None = None) -> list[protocol.Message]:
    return [protocol.GotEntry(host, relpath, "file", 0o600, 0, 0, len(data)),
            protocol.FileChunk(relpath, data, True),
            protocol.GotEnd(host, relpath, sha or hashlib.sha256(data).hexdigest())]


@pytest.mark.parametrize("host, relpath", [("web01", "../escape"), ("web01", "/etc/x"),
                                           ("other", "f"), ("web01", "")])
def test_paths_outside_local_host_are_refused(tmp_path: Path, host: str, relpath: str) -> None:
    landing = Landing.of(GetFiles("/x", str(tmp_path)), ["web01"])
    with pytest.raises(protocol.ProtocolError):
        landing.take(_file(host, relpath, b"data")[0])  # type: ignore[arg-type]


def test_nothing_lands_through_a_link(tmp_path: Path) -> None:
    landing = Landing.of(GetFiles("/x", str(tmp_path)), ["web01"])
    landing.take(protocol.GotEntry("web01", "l", "link", 0o777, link_target=str(tmp_path)))
    with pytest.raises(protocol.ProtocolError, match="through a link"):
        landing.take(_file("web01", "l/f", b"data")[0])  # type: ignore[arg-type]


def test_a_verify_mismatch_fails_the_host_and_lands_nothing(tmp_path: Path) -> None:
    landing = Landing.of(GetFiles("/x", str(tmp_path), verify=True), ["web01"])
    for message in _file("web01", "f", b"data", sha="0" * 64):
        landing.take(message)  # type: ignore[arg-type]
    event = landing.finish(TransferDone("web01", 1, 4, 1.0))
    assert isinstance(event, HostFailed) and event.kind is FailureKind.TRANSFER
    assert "SHA-256 mismatch" in event.message
    assert list((tmp_path / "web01").iterdir()) == []


def test_an_abort_mid_file_leaves_no_partial_file(tmp_path: Path) -> None:
    landing = Landing.of(GetFiles("/x", str(tmp_path)), ["web01"])
    for message in _file("web01", "done", b"complete"):
        landing.take(message)  # type: ignore[arg-type]
    entry, chunk, _ = _file("web01", "half", b"x" * 10)
    landing.take(entry)  # type: ignore[arg-type]
    landing.take(chunk)  # type: ignore[arg-type]
    assert len(list((tmp_path / "web01").iterdir())) == 2
    landing.abort()
    assert [p.name for p in (tmp_path / "web01").iterdir()] == ["done"]


def test_a_cancel_mid_file_interrupts_the_host_and_lands_no_part(tmp_path: Path) -> None:
    action = GetFiles("/srv/big", str(tmp_path / "local"))
    sent: list[protocol.Message] = []
    (tmp_path / "relay").mkdir()
    forwarder = GetForwarder(action, tmp_path / "relay", sent.append, lambda: len(sent) > 1)
    staged = Path(forwarder.action.local_dir) / "web01"
    staged.mkdir()
    (staged / "big").write_bytes(b"x" * (3 * 1024 * 1024))
    forwarder.handle(TransferDone("web01", 1, 3, 1.0))
    *files, terminal = sent
    assert isinstance(terminal, HostFailed) and terminal.kind is FailureKind.INTERRUPTED
    landing = Landing.of(action, ["web01"])
    for message in files:
        landing.take(message)  # type: ignore[arg-type]
    assert landing.finish(terminal) == terminal
    assert list((tmp_path / "local" / "web01").iterdir()) == []  # no .part left


def test_a_success_after_a_cancel_is_interrupted_not_done(tmp_path: Path) -> None:
    sent: list[protocol.Message] = []
    (tmp_path / "relay").mkdir()
    forwarder = GetForwarder(GetFiles("/f", str(tmp_path / "local")), tmp_path / "relay",
                             sent.append, lambda: True)
    (Path(forwarder.action.local_dir) / "web01").mkdir()
    (Path(forwarder.action.local_dir) / "web01" / "f").write_bytes(b"data")
    forwarder.handle(TransferDone("web01", 1, 4, 1.0))
    assert len(sent) == 1 and isinstance(sent[0], HostFailed)
    assert sent[0].kind is FailureKind.INTERRUPTED
