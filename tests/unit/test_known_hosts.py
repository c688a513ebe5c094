"""hostbatch.known_hosts: lookups (plain, [host]:port, patterns, hashed, revoked) and appending."""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostbatch.known_hosts import KeyStatus, KnownHosts, append_lines, fingerprint, host_entry_name

ED = "ssh-ed25519"
RSA = "ssh-rsa"
KEY_A = base64.b64encode(b"key-a" * 8).decode()
KEY_B = base64.b64encode(b"key-b" * 8).decode()
KEY_C = base64.b64encode(b"key-c" * 8).decode()


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    """A hashed host pattern as ``ssh-keygen -H`` writes it."""
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def known(tmp_path: Path, *lines: str) -> KnownHosts:
    path = tmp_path / "known_hosts"
    path.write_text("".join(line + "\n" for line in lines))
    return KnownHosts.load([str(path)])


@pytest.mark.parametrize(
    ("hostname", "port", "expected"),
    [("web1", 22, "web1"), ("web1", 2222, "[web1]:2222"),
     ("127.100.0.1", 2200, "[127.100.0.1]:2200"), ("::1", 2222, "[::1]:2222")],
)
def test_host_entry_name(hostname: str, port: int, expected: str) -> None:
    assert host_entry_name(hostname, port) == expected


# (id, file lines, name looked up, key type, key, expected status)
CHECK_CASES = [
    ("plain-known", [f"web1 {ED} {KEY_A}"], "web1", ED, KEY_A, KeyStatus.KNOWN),
    ("plain-changed", [f"web1 {ED} {KEY_A}"], "web1", ED, KEY_B, KeyStatus.CHANGED),
    ("plain-unknown", [f"web1 {ED} {KEY_A}"], "web2", ED, KEY_A, KeyStatus.UNKNOWN),
    ("plain-prefix-is-not-a-match", [f"web1 {ED} {KEY_A}"], "web", ED, KEY_A,
     KeyStatus.UNKNOWN),
    ("plain-case-insensitive", [f"Web1.Example.COM {ED} {KEY_A}"], "web1.example.com", ED,
     KEY_A, KeyStatus.KNOWN),
    ("plain-with-comment", [f"web1 {ED} {KEY_A} root@somewhere"], "web1", ED, KEY_A,
     KeyStatus.KNOWN),
    ("second-line-matches", [f"web1 {ED} {KEY_A}", f"web1 {ED} {KEY_B}"], "web1", ED, KEY_B,
     KeyStatus.KNOWN),
    ("empty-file", [], "web1", ED, KEY_A, KeyStatus.UNKNOWN),
    # [host]:port
    ("port-known", [f"[web1]:2222 {ED} {KEY_A}"], "[web1]:2222", ED, KEY_A, KeyStatus.KNOWN),
    ("port-changed", [f"[web1]:2222 {ED} {KEY_A}"], "[web1]:2222", ED, KEY_B,
     KeyStatus.CHANGED),
    ("port-22-entry-not-for-other-port", [f"web1 {ED} {KEY_A}"], "[web1]:2222", ED, KEY_B,
     KeyStatus.UNKNOWN),
    ("port-entry-not-for-port-22", [f"[web1]:2222 {ED} {KEY_A}"], "web1", ED, KEY_B,
     KeyStatus.UNKNOWN),
    ("other-port", [f"[web1]:2222 {ED} {KEY_A}"], "[web1]:2223", ED, KEY_A, KeyStatus.UNKNOWN),
    ("ipv6-port", [f"[::1]:2222 {ED} {KEY_A}"], "[::1]:2222", ED, KEY_A, KeyStatus.KNOWN),
    # comma-separated patterns
    ("comma-first", [f"web1,127.100.0.1 {ED} {KEY_A}"], "web1", ED, KEY_A, KeyStatus.KNOWN),
    ("comma-second", [f"web1,127.100.0.1 {ED} {KEY_A}"], "127.100.0.1", ED, KEY_A, KeyStatus.KNOWN),
    ("comma-port", [f"web1,[web1]:2222 {ED} {KEY_A}"], "[web1]:2222", ED, KEY_A,
     KeyStatus.KNOWN),
    ("comma-changed", [f"web1,127.100.0.1 {ED} {KEY_A}"], "127.100.0.1", ED, KEY_B,
     KeyStatus.CHANGED),
    # wildcards
    ("star", [f"*.example.com {ED} {KEY_A}"], "a.example.com", ED, KEY_A, KeyStatus.KNOWN),
    ("star-case", [f"*.EXAMPLE.com {ED} {KEY_A}"], "a.example.COM", ED, KEY_A,
     KeyStatus.KNOWN),
    ("star-no-match", [f"*.example.com {ED} {KEY_A}"], "example.com", ED, KEY_A,
     KeyStatus.UNKNOWN),
    ("star-changed", [f"*.example.com {ED} {KEY_A}"], "a.example.com", ED, KEY_B,
     KeyStatus.CHANGED),
    ("question", [f"web? {ED} {KEY_A}"], "web7", ED, KEY_A, KeyStatus.KNOWN),
    ("question-one-char-only", [f"web? {ED} {KEY_A}"], "web10", ED, KEY_A, KeyStatus.UNKNOWN),
    ("star-ip", [f"127.100.0.* {ED} {KEY_A}"], "127.100.0.42", ED, KEY_A, KeyStatus.KNOWN),
    # OpenSSH patterns only know * and ?: brackets are literal, as in "[host]:port" entries.
    ("star-with-port", [f"[*.example.com]:2222 {ED} {KEY_A}"], "[a.example.com]:2222", ED,
     KEY_A, KeyStatus.KNOWN),
    ("question-with-port", [f"[127.100.0.?]:2222 {ED} {KEY_A}"], "[127.100.0.5]:2222", ED, KEY_A,
     KeyStatus.KNOWN),
    ("star-with-port-other-port", [f"[*.example.com]:2222 {ED} {KEY_A}"],
     "[a.example.com]:2200", ED, KEY_A, KeyStatus.UNKNOWN),
    # negation
    ("negation-excludes", [f"*.example.com,!bad.example.com {ED} {KEY_A}"], "bad.example.com",
     ED, KEY_A, KeyStatus.UNKNOWN),
    ("negation-others-match", [f"*.example.com,!bad.example.com {ED} {KEY_A}"],
     "good.example.com", ED, KEY_A, KeyStatus.KNOWN),
    ("negation-first", [f"!bad.example.com,*.example.com {ED} {KEY_A}"], "bad.example.com",
     ED, KEY_A, KeyStatus.UNKNOWN),
    ("negation-only-matches-nothing", [f"!bad {ED} {KEY_A}"], "good", ED, KEY_A,
     KeyStatus.UNKNOWN),
    ("negation-glob", [f"web*,!web9* {ED} {KEY_A}"], "web99", ED, KEY_A, KeyStatus.UNKNOWN),
    ("negation-falls-to-next-line", [f"*,!bad {ED} {KEY_A}", f"bad {ED} {KEY_B}"], "bad", ED,
     KEY_B, KeyStatus.KNOWN),
    # hashed
    ("hashed-known", [f"{hashed('web1.example.com')} {ED} {KEY_A}"], "web1.example.com", ED,
     KEY_A, KeyStatus.KNOWN),
    ("hashed-changed", [f"{hashed('web1.example.com')} {ED} {KEY_A}"], "web1.example.com", ED,
     KEY_B, KeyStatus.CHANGED),
    ("hashed-other-name", [f"{hashed('web1.example.com')} {ED} {KEY_A}"], "web2.example.com",
     ED, KEY_A, KeyStatus.UNKNOWN),
    ("hashed-port", [f"{hashed('[web1]:2222')} {ED} {KEY_A}"], "[web1]:2222", ED, KEY_A,
     KeyStatus.KNOWN),
    ("hashed-port-not-22", [f"{hashed('[web1]:2222')} {ED} {KEY_A}"], "web1", ED, KEY_A,
     KeyStatus.UNKNOWN),
    ("hashed-other-salt", [f"{hashed('h', b'another-salt-xxxxxxx')} {ED} {KEY_A}"], "h", ED,
     KEY_A, KeyStatus.KNOWN),
    ("hashed-malformed-skipped", [f"|1|!!!|??? {ED} {KEY_A}", f"|1|onlysalt {ED} {KEY_B}"],
     "web1", ED, KEY_A, KeyStatus.UNKNOWN),
    # ssh lowercases host names before hashing, and plain entries match case-insensitively.
    ("hashed-case-insensitive", [f"{hashed('web1.example.com')} {ED} {KEY_A}"],
     "WEB1.example.com", ED, KEY_A, KeyStatus.KNOWN),
    # @revoked
    ("revoked-with-known-line", [f"@revoked web1 {ED} {KEY_A}", f"web1 {ED} {KEY_A}"], "web1",
     ED, KEY_A, KeyStatus.REVOKED),
    ("revoked-alone", [f"@revoked * {ED} {KEY_A}"], "web1", ED, KEY_A, KeyStatus.REVOKED),
    ("revoked-other-key-is-unknown", [f"@revoked web1 {ED} {KEY_A}"], "web1", ED, KEY_B,
     KeyStatus.UNKNOWN),
    ("revoked-other-key-known", [f"@revoked web1 {ED} {KEY_A}", f"web1 {ED} {KEY_B}"], "web1",
     ED, KEY_B, KeyStatus.KNOWN),
    ("revoked-other-host", [f"@revoked web1 {ED} {KEY_A}"], "web2", ED, KEY_A,
     KeyStatus.UNKNOWN),
    # skipped lines
    ("cert-authority-skipped", [f"@cert-authority *.example.com {ED} {KEY_A}"],
     "a.example.com", ED, KEY_A, KeyStatus.UNKNOWN),
    ("comment-skipped", [f"# web1 {ED} {KEY_A}"], "web1", ED, KEY_A, KeyStatus.UNKNOWN),
    ("short-line-skipped", ["web1 ssh-ed25519", "", "   ", f"web1 {ED} {KEY_A}"], "web1", ED,
     KEY_A, KeyStatus.KNOWN),
    # another key type is on record: not silently accepted
    ("other-type-on-record", [f"web1 {RSA} {KEY_C}"], "web1", ED, KEY_A, KeyStatus.CHANGED),
    ("both-types-on-record", [f"web1 {RSA} {KEY_C}", f"web1 {ED} {KEY_A}"], "web1", ED, KEY_A,
     KeyStatus.KNOWN),
]


@pytest.mark.parametrize(
    ("lines", "name", "key_type", "key", "expected"),
    [case[1:] for case in CHECK_CASES],
    ids=[case[0] for case in CHECK_CASES],
)
def test_check(tmp_path: Path, lines: list[str], name: str, key_type: str, key: str,
               expected: KeyStatus) -> None:
    assert known(tmp_path, *lines).check(name, key_type, key) is expected


def test_load_reads_several_files_and_skips_missing(tmp_path: Path) -> None:
    first = tmp_path / "inventory_known_hosts"
    second = tmp_path / "user_known_hosts"
    first.write_text(f"web1 {ED} {KEY_A}\n")
    second.write_text(f"web2 {ED} {KEY_B}\n")
    kh = KnownHosts.load([str(first), str(tmp_path / "missing"), str(second)])
    assert kh.check("web1", ED, KEY_A) is KeyStatus.KNOWN
    assert kh.check("web2", ED, KEY_B) is KeyStatus.KNOWN


def test_load_survives_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(b"\xff\xfe\x00garbage\n" + f"web1 {ED} {KEY_A}\n".encode())
    assert KnownHosts.load([str(path)]).check("web1", ED, KEY_A) is KeyStatus.KNOWN


def test_load_of_a_directory_is_skipped(tmp_path: Path) -> None:
    assert KnownHosts.load([str(tmp_path)]).check("x", ED, KEY_A) is KeyStatus.UNKNOWN


def test_key_types(tmp_path: Path) -> None:
    kh = known(
        tmp_path,
        f"web1 {RSA} {KEY_C}",
        f"*.example.com,web1 {ED} {KEY_A}",
        f"web1 {ED} {KEY_B}",
        f"@revoked web1 ecdsa-sha2-nistp256 {KEY_A}",
    )
    assert kh.key_types("web1") == [RSA, ED]
    assert kh.key_types("WEB1") == [RSA, ED]
    assert kh.key_types("a.example.com") == [ED]
    assert kh.key_types("nobody") == []


# --------------------------------------------------------------------------- append_lines


def test_append_creates_file_0600_and_dir_0700(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".ssh" / "known_hosts"
    assert append_lines(str(path), [f"web1 {ED} {KEY_A}", f"web2 {ED} {KEY_B}"]) == 2
    assert path.read_text() == f"web1 {ED} {KEY_A}\nweb2 {ED} {KEY_B}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_append_skips_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"web1 {ED} {KEY_A}\n# comment\n")
    written = append_lines(str(path), [f"web1 {ED} {KEY_A}", f"web2 {ED} {KEY_B}",
                                       f"web2 {ED} {KEY_B}"])
    assert written == 1
    assert append_lines(str(path), [f"web2 {ED} {KEY_B}"]) == 0
    assert append_lines(str(path), []) == 0
    assert path.read_text() == f"web1 {ED} {KEY_A}\n# comment\nweb2 {ED} {KEY_B}\n"


def test_append_adds_missing_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"web1 {ED} {KEY_A}")
    assert append_lines(str(path), [f"web2 {ED} {KEY_B}"]) == 1
    assert path.read_text() == f"web1 {ED} {KEY_A}\nweb2 {ED} {KEY_B}\n"


def test_append_to_empty_file_has_no_leading_newline(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("")
    append_lines(str(path), [f"web1 {ED} {KEY_A}"])
    assert path.read_text() == f"web1 {ED} {KEY_A}\n"


def test_appended_lines_are_found_by_load(tmp_path: Path) -> None:
    path = tmp_path / "kh"
    append_lines(str(path), [f"[web1]:2222 {ED} {KEY_A}"])
    kh = KnownHosts.load([str(path)])
    assert kh.check(host_entry_name("web1", 2222), ED, KEY_A) is KeyStatus.KNOWN


def test_append_keeps_an_existing_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("")
    path.chmod(0o644)
    append_lines(str(path), [f"web1 {ED} {KEY_A}"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


WRITERS = 8
LINES_EACH = 50


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs when there is one: append_lines fsyncs, and the lock is under test,
    not the disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="hostbatch-test-") as name:
        yield Path(name)


def _line(writer: int, index: int) -> str:
    # long enough that an unlocked, interleaved write would be visible
    return f"[w{writer}-h{index}.example.com]:2222 {ED} {KEY_A}{writer:02d}{index:03d}" + "x" * 200


def _writer(path: str, writer: int, per_call: int, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    lines = [_line(writer, i) for i in range(LINES_EACH)]
    for start in range(0, LINES_EACH, per_call):
        append_lines(path, lines[start:start + per_call])


@pytest.mark.parametrize("per_call", [LINES_EACH, 5], ids=["one-call", "5-lines-a-call"])
def test_append_concurrently_from_many_processes(fast_dir: Path, per_call: int) -> None:
    """8 processes append 50 distinct lines each, all at once: 400 intact lines, none lost."""
    path = fast_dir / "ssh" / "known_hosts"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(path), w, per_call, barrier))
             for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    expected = {_line(w, i) for w in range(WRITERS) for i in range(LINES_EACH)}
    assert len(lines) == WRITERS * LINES_EACH == 400
    assert set(lines) == expected


# --------------------------------------------------------------------------- fingerprint


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa"])
def test_fingerprint_matches_ssh_keygen(tmp_path: Path, key_type: str) -> None:
    key = tmp_path / f"id_{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "test", "-f", str(key)],
                   check=True, env={**os.environ, "HOME": str(tmp_path)})
    blob = key.with_suffix(".pub").read_text().split()[1]
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"],
                            check=True, capture_output=True, text=True).stdout.split()
    assert fingerprint(blob) == listed[1]
    assert fingerprint(blob).startswith("SHA256:") and not fingerprint(blob).endswith("=")


def _same_lines_writer(path: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    for start in range(0, LINES_EACH, 5):
        append_lines(path, [_line(0, i) for i in range(start, start + 5)])


def test_concurrent_appends_of_the_same_lines_record_each_once(fast_dir: Path) -> None:
    """The lock covers read-check-write: racing writers of one key never duplicate it."""
    path = fast_dir / "known_hosts"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_same_lines_writer, args=(str(path), barrier))
             for _ in range(WRITERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert path.read_text().splitlines() == [_line(0, i) for i in range(LINES_EACH)]
