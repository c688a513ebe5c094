"""hostbatch.relay.protocol and the relay's handshake: versioned JSON lines, never pickle;
secrets only inside a job; another protocol is one clear line, never a hang."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

import pytest

from hostbatch.actions import PutFiles, RunCommand, RunInput
from hostbatch.engine.events import HostExited, HostFailed, OutputLines
from hostbatch.errors import FailureKind
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import HostSpec
from hostbatch.local_files import scan_source
from hostbatch.relay import protocol
from hostbatch.relay.server import serve
from hostbatch.relay.staging import Staging, send_source
from hostbatch.secrets import Secret
from hostbatch.settings import RunSettings

SECRET = "s3cr3t-relay-pw"


def test_a_job_survives_the_line_with_its_secrets_and_settings() -> None:
    hop = HostSpec("bastion", "10.0.0.1", password=Secret("hop-pw"))
    host = HostSpec("web01", "127.0.0.1", 2222, "deploy", password=Secret(SECRET),
                    sudo_password=Secret("sudo-pw"), jump_chain=(hop,))
    job = protocol.RelayJob(RunCommand("uptime", sudo=True), (host,),
                            RunInput(stdin=b"\x00data", script=None),
                            RunSettings(forks=7, command_timeout=3.5, accept_new=True),
                            ("web01 ssh-ed25519 AAAA",))
    line = protocol.dumps(job)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.loads(line) == job
    decoded = protocol.loads(line)
    assert isinstance(decoded, protocol.RelayJob)
    assert decoded.hosts[0].password is not None
    assert decoded.hosts[0].password.reveal() == SECRET


@pytest.mark.parametrize("message", [
    protocol.Hello(), protocol.Heartbeat(), protocol.Cancel(), protocol.Done(),
    protocol.RelayFailed("no such thing"),
    HostExited("web01", 3, 1.5), HostFailed("web01", FailureKind.RELAY, "outcome unknown"),
    OutputLines("web01", "stdout", b"a\nb\n")])  # type: ignore[arg-type]
def test_every_message_round_trips(message: protocol.Message) -> None:
    assert protocol.loads(protocol.dumps(message)) == message


def test_file_chunks_travel_raw_after_a_header_line() -> None:
    data = b"line\nmore\x00\xff" * 1000
    wire_bytes = protocol.dumps(protocol.FileChunk("d/f", data, True))
    assert len(wire_bytes) < len(data) + 100  # no base64
    reader = protocol.LineReader()
    reader.feed(wire_bytes + protocol.dumps(protocol.Done()))
    assert protocol.read_message(reader) == protocol.FileChunk("d/f", data, True)
    assert protocol.read_message(reader) == protocol.Done()
    truncated = protocol.LineReader()
    truncated.feed(wire_bytes[:-1])
    truncated.feed(b"")
    with pytest.raises(protocol.ProtocolError, match="inside a file chunk"):
        protocol.read_message(truncated)


def test_events_never_carry_a_secret() -> None:
    with pytest.raises(protocol.wire.WireError):
        protocol.dumps(HostSpec("x", "x", password=Secret(SECRET)))  # type: ignore[arg-type]


@pytest.mark.parametrize("line", [b"not json\n", b"[1]\n", b'{"v": 99, "type": "done"}\n',
                                  b'{"hello": "hostbatch-relay", "protocol": "1"}\n',
                                  b'{"v": 1, "type": "job", "hosts": []}\n'])
def test_malformed_lines_are_protocol_errors(line: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.loads(line)


def test_a_mismatch_names_both_versions_on_one_line() -> None:
    ours = protocol.Hello(1, "0.1.0")
    assert ours.mismatch(protocol.Hello(1, "0.2.0"), "relay1") is None
    message = ours.mismatch(protocol.Hello(2, "0.9.0"), "relay1")
    assert message is not None and "\n" not in message
    assert "relay relay1" in message
    assert "protocol 2 (hostbatch 0.9.0)" in message and "protocol 1 (hostbatch 0.1.0)" in message


def test_line_reader_splits_fed_bytes_and_reports_the_end() -> None:
    reader = protocol.LineReader()
    reader.feed(b'{"a"')
    assert reader.pending() is None
    reader.feed(b': 1}\n{"b": 2}\n')
    assert reader.pending() == b'{"a": 1}\n'
    assert reader.pending() == b'{"b": 2}\n'
    assert reader.pending() is None and not reader.eof
    reader.feed(b"")
    assert reader.eof and reader.readline() is None


def _serve(controller_lines: list[bytes], close: bool = True) -> tuple[int, list[bytes]]:
    """Run the relay side in-process on pipes, feeding it ``controller_lines``."""
    to_relay_r, to_relay_w = os.pipe()
    from_relay_r, from_relay_w = os.pipe()
    for line in controller_lines:
        os.write(to_relay_w, line)
    if close:
        os.close(to_relay_w)
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(
        serve(to_relay_r, from_relay_w, "/nonexistent")))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the relay hung"
    # Read what was written, not up to end of file: the relay's worker processes (forked
    # from this one) may hold the write end a moment longer.
    os.set_blocking(from_relay_r, False)
    output = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(from_relay_r, 65536):
            output += chunk
    for fd in (to_relay_r, from_relay_r, from_relay_w, *([] if close else [to_relay_w])):
        os.close(fd)
    return status[0], output.splitlines(keepends=True)


def test_the_relay_says_hello_first_and_refuses_another_protocol() -> None:
    hello = json.dumps({"hello": "hostbatch-relay", "protocol": 99, "version": "9.9"})
    status, lines = _serve([hello.encode() + b"\n"])
    assert status == ExitStatus.UNREACHABLE
    assert isinstance(protocol.loads(lines[0]), protocol.Hello)
    failed = protocol.loads(lines[1])
    assert isinstance(failed, protocol.RelayFailed)
    assert "controller of protocol 99 (hostbatch 9.9)" in failed.message


def test_a_controller_gone_before_its_hello_ends_the_relay_quietly() -> None:
    status, lines = _serve([])
    assert status == ExitStatus.OK
    assert len(lines) == 1 and isinstance(protocol.loads(lines[0]), protocol.Hello)


def test_a_job_of_no_hosts_ends_with_done() -> None:
    job = protocol.RelayJob(RunCommand("true"), ())
    status, lines = _serve([protocol.dumps(protocol.Hello()), protocol.dumps(job)])
    assert status == ExitStatus.OK
    assert isinstance(protocol.loads(lines[-1]), protocol.Done)


def test_staging_rebuilds_the_tree_and_refuses_paths_outside_it(tmp_path: Path) -> None:
    source = tmp_path / "src" / "tree"
    (source / "d").mkdir(parents=True)
    (source / "d" / "f").write_bytes(b"x" * 3000)
    (source / "empty").write_bytes(b"")
    os.symlink("d/f", source / "link")
    action = PutFiles(str(source), "/dest", scan_source(str(source), recursive=True, verify=False),
                      recursive=True)
    sent: list[bytes] = []
    assert send_source(action, sent.append) == 3000
    staging = Staging(tmp_path / "relay")
    (tmp_path / "relay").mkdir()
    reader = protocol.LineReader()
    reader.feed(b"".join(sent))
    for _ in sent:
        chunk = protocol.read_message(reader)
        assert isinstance(chunk, protocol.FileChunk)
        staging.write(chunk)
    assert reader.pending() is None
    staged = staging.prepare(action)
    root = Path(staged.source)
    assert root.name == "tree"
    assert (root / "d" / "f").read_bytes() == b"x" * 3000
    assert (root / "empty").read_bytes() == b""
    assert os.readlink(root / "link") == "d/f"
    assert (root / "d" / "f").stat().st_mtime == (source / "d" / "f").stat().st_mtime
    for bad in ("../escape", "/etc/passwd", "d/../../x"):
        with pytest.raises(protocol.ProtocolError):
            staging.write(protocol.FileChunk(bad, b"", True))
