"""Helpers for the ``batch_scp`` integration tests: views of the hosts' private file systems,
size and checksum checks, tree snapshots.  Fixtures are in ``conftest.py``.

The CLI runner and the output parsers are shared with the batch_run suite and live in
``tests.support.cli``; the ones the scp tests use are re-exported here."""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import (
    BATCH_SCP,
    Cli,
    Result,
    parse_jsonl,
    split_lines,
)
from tests.support.cli import terminal_events as _terminal_events
from tests.support.fleet import PRIVATE_DIR, Fleet

#: Re-exported from tests.support.cli (the runner and parsers shared with the batch_run suite):
#: the batch_scp tests import them from this module.
__all__ = ["BATCH_SCP", "Cli", "Result", "parse_jsonl", "split_lines"]

TEST_USER = "hbtest"


TEST_PASSWORD = "pw%#;x"


NAMES = ("scp1", "scp2", "scp3")


FIRST_ADDRESS = "127.0.9.10"


FAULT_ADDRESS = "127.0.9.200"


SILENT_ADDRESS = "127.0.9.250"


def terminal_events(events: Iterable[Mapping[str, Any]],
                    hosts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Exactly one ``done``/``error`` event per selected host, none for others."""
    return _terminal_events(events, hosts, "scp")


_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def assert_size_text(text: str, size: int) -> None:
    """``text`` (``512 B``, ``68.4 KiB``...) is ``size`` bytes, up to its rounding."""
    number, unit = text.split()
    scale = _UNITS[unit]
    assert abs(float(number) * scale - size) <= 0.05 * scale + 0.5, (text, size)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _host_pid(fleet: Fleet, name: str) -> int:
    """pid of host ``name``'s sshd listener (found by its config path in the command line)."""
    needle = f"{fleet.host_dir(name) / 'sshd_config'}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and b"sshd" in cmdline and b"unshare" not in cmdline:
            return int(entry)
    raise AssertionError(f"no sshd process for {name}")


class Hosts:
    """The private ``/srv/hostbatch-fleet`` of each host, seen from the test process."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.names = list(fleet.names)
        self._pids: dict[str, int] = {}
        user = pwd.getpwnam(TEST_USER)
        self.uid, self.gid = user.pw_uid, user.pw_gid

    def pid(self, name: str) -> int:
        pid = self._pids.get(name)
        if pid is None or not Path(f"/proc/{pid}").exists():
            pid = self._pids[name] = _host_pid(self.fleet, name)
        return pid

    def local(self, name: str, remote: str) -> Path:
        """The path under which the test process sees host ``name``'s ``remote`` path."""
        assert remote.startswith(str(PRIVATE_DIR)), remote
        return Path(f"/proc/{self.pid(name)}/root") / remote.lstrip("/")

    def chown(self, path: Path) -> None:
        os.lchown(path, self.uid, self.gid)

    def chown_tree(self, path: Path) -> None:
        self.chown(path)
        for root, dirs, files in os.walk(path):
            for item in dirs + files:
                self.chown(Path(root) / item)

    def write(self, name: str, remote: str, data: bytes, mode: int = 0o644) -> Path:
        path = self.local(name, remote)
        path.write_bytes(data)
        os.chmod(path, mode)
        self.chown(path)
        return path

    def ssh(self, name: str, command: str) -> subprocess.CompletedProcess[str]:
        return self.fleet.ssh(name, command, timeout=60)

    def nsenter(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (as root) in host ``name``'s mount namespace."""
        return subprocess.run(["nsenter", "-t", str(self.pid(name)), "-m", "--", *argv],
                              capture_output=True, text=True, timeout=30, check=False)

    def temp_files(self, name: str, remote_dir: str) -> list[str]:
        """Every hostbatch temporary file below ``remote_dir`` on host ``name``."""
        found = []
        for root, dirs, files in os.walk(self.local(name, remote_dir)):
            found += [os.path.join(root, f) for f in dirs + files if ".hostbatch-" in f]
        return found


@dataclass
class RemoteDir:
    """A fresh directory, owned by hbtest, at the same path on every host."""

    path: str
    hosts: Hosts
    mounts: list[tuple[str, str]]

    def __truediv__(self, other: str) -> str:
        return f"{self.path}/{other}"

    def local(self, name: str, relative: str = "") -> Path:
        base = self.hosts.local(name, self.path)
        return base / relative if relative else base

    def write(self, name: str, relative: str, data: bytes, mode: int = 0o644) -> Path:
        return self.hosts.write(name, self / relative, data, mode)

    def write_all(self, relative: str, data: bytes, mode: int = 0o644) -> None:
        for name in self.hosts.names:
            self.write(name, relative, data, mode)

    def mkdir(self, name: str, relative: str, mode: int = 0o755) -> Path:
        path = self.local(name, relative)
        path.mkdir(parents=True)
        os.chmod(path, mode)
        self.hosts.chown(path)
        return path

    def temp_files(self, names: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Hosts that have hostbatch temporary files left in this directory, with the files."""
        result = {}
        for name in names or self.hosts.names:
            left = self.hosts.temp_files(name, self.path)
            if left:
                result[name] = left
        return result

    def mount_tiny(self, name: str, relative: str, size: str = "1m") -> Path:
        """Mount a tmpfs of ``size`` on ``relative`` (created here) on host ``name`` only."""
        path = self.mkdir(name, relative)
        remote = self / relative
        proc = self.hosts.nsenter(name, "mount", "-t", "tmpfs", "-o",
                                  f"size={size},mode=0755,uid={self.hosts.uid},"
                                  f"gid={self.hosts.gid}", "hbtiny", remote)
        assert proc.returncode == 0, proc.stderr
        self.mounts.append((name, remote))
        return path


def connections_seen(sock: socket.socket) -> int:
    """Accept (and close) every pending connection; return how many there were."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@dataclass(frozen=True)
class Node:
    kind: str  # "d", "f", "l"
    mode: int | None  # None for links
    content: str  # sha256 for files, target for links, "" for dirs
    mtime: int | None = None


def snapshot(root: Path, *, times: bool = False) -> dict[str, Node]:
    """Every entry below (and including) ``root`` by relative path: type, mode, content."""
    result: dict[str, Node] = {}

    def visit(path: Path, rel: str) -> None:
        info = path.lstat()
        mtime = int(info.st_mtime) if times else None
        if stat.S_ISLNK(info.st_mode):
            result[rel] = Node("l", None, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            result[rel] = Node("d", stat.S_IMODE(info.st_mode), "", mtime)
            for child in sorted(os.listdir(path)):
                visit(path / child, child if rel == "." else f"{rel}/{child}")
        elif stat.S_ISREG(info.st_mode):
            result[rel] = Node("f", stat.S_IMODE(info.st_mode), sha256_file(path), mtime)
        else:
            result[rel] = Node("?", stat.S_IMODE(info.st_mode), "")

    visit(root, ".")
    return result


def diff_snapshots(expected: Mapping[str, Node], actual: Mapping[str, Node]) -> list[str]:
    problems = [f"missing: {p!r}" for p in sorted(set(expected) - set(actual))]
    problems += [f"unexpected: {p!r} {actual[p]}" for p in sorted(set(actual) - set(expected))]
    problems += [f"differs: {p!r} expected {expected[p]}, got {actual[p]}"
                 for p in sorted(set(expected) & set(actual)) if expected[p] != actual[p]]
    return problems


#: Names that break naive shell or argv handling.
AWKWARD_NAMES = ("with space.txt", "it's.txt", 'say "hi".txt', "é日本.txt", "-rf",
                 "tab\there.txt", "$(touch pwned).txt")


def make_tree(root: Path) -> Path:
    """A tree with files, nested dirs, an empty dir, symlinks, modes and awkward names."""
    root.mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "exec.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "exec.sh", 0o750)
    (root / "secret").write_bytes(secrets.token_bytes(3000))
    os.chmod(root / "secret", 0o600)
    for name in AWKWARD_NAMES:
        (root / name).write_bytes(f"content of {name}\n".encode())
    sub = root / "sub"
    (sub / "nested" / "deeper").mkdir(parents=True)
    (sub / "nested" / "deeper" / "file.bin").write_bytes(secrets.token_bytes(300_000))
    (sub / "b.txt").write_bytes(b"bravo\n")
    os.chmod(sub, 0o700)
    (root / "empty").mkdir()
    (root / "dir with space" / "日本").mkdir(parents=True)
    (root / "dir with space" / "日本" / "-n").write_bytes(b"dash n\n")
    (root / "--help").mkdir()
    (root / "--help" / "x").write_bytes(b"x\n")
    (root / "ro").mkdir()
    (root / "ro" / "inside").write_bytes(b"in a read-only dir\n")
    os.chmod(root / "ro", 0o555)
    os.symlink("a.txt", root / "link")
    os.symlink("sub/nested", root / "dirlink")
    os.symlink("/nonexistent/target", root / "dangling")
    return root


MID_SIZE = 50 * 1024 * 1024


#: Big enough to be in flight for a while on every host at once (the private tmpfs is 256 MiB).
BIG_SIZE = 200 * 1024 * 1024


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            handle.write(block)
            left -= len(block)
    return path
