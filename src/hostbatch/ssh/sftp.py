"""What put and get over SFTP share (:mod:`.put`, :mod:`.get`): nothing is ever half-written.

Every file goes to a temporary name beside its target (``.NAME.hostbatch-RANDOM.part``), is
checked (size, and SHA-256 with ``verify``) and only then renamed over the target with
``posix-rename@openssh.com`` (atomic; plain SFTP rename refuses to replace a file). A failure at
any point (Ctrl-C, deadline, dropped connection, disk full, permission denied) removes the
temporary file where the connection still allows it and leaves the old target untouched.

Speed: paramiko's default SFTP write is one 32 KiB request at a time waiting for each reply.
Here writes are pipelined (no wait per request) in 255 KiB requests, which OpenSSH's
sftp-server accepts (its limit is 256 KiB per message): measured 176 -> 303 MB/s on loopback.
Reads use paramiko's prefetch (many requests in flight) with the same request size.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import secrets
import stat
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import paramiko
from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR

from hostbatch.actions import LocalEntry
from hostbatch.errors import FailureKind
from hostbatch.ssh.context import HostContext
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.shell import sha256_command

#: Bytes per SFTP read/write request: just under sftp-server's 256 KiB message limit.
REQUEST_SIZE = 255 * 1024
READ_BLOCK = 1024 * 1024
#: A large channel window keeps many pipelined requests in flight.
SFTP_WINDOW = 64 * 1024 * 1024
PROGRESS_INTERVAL = 0.25
#: Time allowed to remove a temporary file after a failure (even past the deadline).
CLEANUP_SECONDS = 10.0
_T = TypeVar("_T")
#: SFTP sessions per host for the files of a tree.
TREE_CHANNELS = 4


class TransferState:
    """One host's transfer in progress: its deadline and cancellation (from the
    :class:`HostContext`), rate-limited progress reports, and the files and bytes landed."""

    def __init__(self, ctx: HostContext, limit_rate: int = 0) -> None:
        self.ctx = ctx
        self.host = ctx.host
        #: A transfer's time limit counts from the start of the host's job.
        self.deadline = ctx.deadline_from(ctx.started)
        self.files = 0
        self.bytes = 0
        #: What a sync found: files (and links) left as they were, entries deleted.
        self.unchanged = 0
        self.deleted = 0
        #: How the files moved: "stream" (tar over an exec channel) or "sftp".
        self.method = "sftp"
        #: Why a tree went over SFTP instead of a stream ("" when it did not).
        self.note = ""
        #: --limit-rate in bytes per second (0: none), over every byte this host moves.
        self.limit_rate = limit_rate
        self._moved = 0
        self._rate_start = time.monotonic()
        self._last_progress = 0.0
        self._lock = threading.Lock()

    def changed_modes(self, count: int) -> None:
        """Count files whose mode alone a ``--sync`` changed in place (or would, in a dry
        run): the ``modes`` of the host's ``done`` event, summed over its sources."""
        counters = self.ctx.counters
        counters["modes"] = counters.get("modes", 0) + count

    def throttle(self, size: int) -> None:
        """Count ``size`` bytes moved and, under ``--limit-rate``, sleep until the host's
        average rate is back under the limit (waking at once on Ctrl-C)."""
        if not self.limit_rate:
            return
        with self._lock:
            self._moved += size
            due = self._rate_start + self._moved / self.limit_rate
        while (wait := due - time.monotonic()) > 0:
            self.ctx.cancelled.wait(min(wait, 0.25))
            self.check()

    def check(self, sftp: paramiko.SFTPClient | None = None,
              channel: paramiko.Channel | None = None) -> None:
        """Raise if the run was cancelled or the host's deadline passed.

        Also bounds the next blocking call on ``sftp`` (or ``channel``) by the time left, so a
        server that stops answering mid-transfer cannot hold the host past its deadline.
        """
        if self.ctx.is_cancelled:
            raise HostJobError(FailureKind.INTERRUPTED, "interrupted during the transfer")
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise HostJobError(FailureKind.TIMEOUT,
                                   f"transfer timed out after {self.ctx.timeout:g}s")
            if sftp is not None:
                channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(left)

    def progress(self, path: str, done: int, total: int, *, final: bool = False) -> None:
        """Report progress, at most every :data:`PROGRESS_INTERVAL` seconds per host."""
        now = time.monotonic()
        with self._lock:
            due = final or now - self._last_progress >= PROGRESS_INTERVAL
            if due:
                self._last_progress = now
        if due:
            self.ctx.on_progress(path, done, total)

    def landed(self, source: str, destination: str, size: int, duration: float) -> None:
        """Count a file that landed and report it."""
        with self._lock:
            self.files += 1
            self.bytes += size
        self.ctx.on_file(source, destination, size, duration)


def wire_path(path: str) -> bytes:
    """A path as the bytes SFTP carries: a name that is not UTF-8 (a str holding surrogate
    escapes) goes back to its own bytes, where paramiko's strict UTF-8 would refuse it."""
    return os.fsencode(path)


def listdir_raw(sftp: paramiko.SFTPClient, path: str) -> list[tuple[str, paramiko.SFTPAttributes]]:
    """The entries of the remote directory ``path`` (not ``.`` and ``..``), each name with its
    attributes, in no order.

    paramiko's ``listdir_attr`` decodes every name as strict UTF-8 and fails a whole listing
    on one name that is not (Linux allows any byte but ``/`` and NUL). This reads the same
    SSH_FXP_READDIR replies, keeping each name's raw bytes, and decodes them as the local file
    system would (``os.fsdecode``: undecodable bytes become surrogate escapes, which
    :func:`wire_path` turns back into the same bytes).
    """
    # paramiko's request layer and attribute parser are private (no stubs): reached untyped.
    client: Any = sftp
    parse: Any = paramiko.SFTPAttributes
    kind, msg = client._request(CMD_OPENDIR, wire_path(path))
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = msg.get_binary()
    entries: list[tuple[str, paramiko.SFTPAttributes]] = []
    try:
        while True:
            try:
                kind, msg = client._request(CMD_READDIR, handle)
            except EOFError:  # the end of the listing
                break
            if kind != CMD_NAME:
                raise paramiko.SFTPError("Expected name response")
            for _ in range(msg.get_int()):
                raw = msg.get_string()
                msg.get_string()  # the ls -l style long name, unused
                attrs: paramiko.SFTPAttributes = parse._from_msg(msg)
                name = os.fsdecode(raw)
                attrs.filename = name
                if raw not in (b".", b".."):
                    entries.append((name, attrs))
    finally:
        client._request(CMD_CLOSE, handle)
    return entries


def read_link(sftp: paramiko.SFTPClient, path: str) -> str:
    """The target of the remote symlink ``path``, any bytes kept (as surrogate escapes)."""
    target: str | bytes | None = sftp.readlink(wire_path(path))
    return os.fsdecode(target) if target is not None else ""


def temp_name(path: str) -> str:
    directory, name = posixpath.split(path)
    return posixpath.join(directory, f".{name}.hostbatch-{secrets.token_hex(4)}.part")


def expand_remote(path: str) -> str:
    """``~`` and ``~/x`` mean the remote home; SFTP resolves relative paths against it."""
    if path == "~":
        return "."
    if path.startswith("~/"):
        return path[2:] or "."
    return path


def describe_error(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return os.strerror(code)
    text = str(exc.args[-1]) if getattr(exc, "args", None) else str(exc)
    return text or type(exc).__name__


def sftp_failure(action: str, path: str, exc: BaseException) -> HostJobError:
    """Classify an exception from an SFTP operation on ``path``."""
    if isinstance(exc, HostJobError):
        return exc
    if isinstance(exc, TimeoutError):
        return HostJobError(FailureKind.TIMEOUT, f"{action} {path}: the host stopped answering "
                           "before the deadline")
    if isinstance(exc, (EOFError, paramiko.SSHException, ConnectionError)) or (
        isinstance(exc, OSError) and "closed" in str(exc).lower()
    ):
        return HostJobError(FailureKind.DISCONNECT, f"connection lost during {action} {path}")
    return HostJobError(FailureKind.TRANSFER, f"{action} {path}: {describe_error(exc)}")


def is_dir(sftp: paramiko.SFTPClient, path: str) -> bool | None:
    """True for a directory, False for anything else, None when nothing is there."""
    try:
        return stat.S_ISDIR(sftp.stat(wire_path(path)).st_mode or 0)
    except FileNotFoundError:
        return None


def open_sftp(transport: paramiko.Transport, state: TransferState) -> paramiko.SFTPClient:
    state.check()
    try:
        sftp = paramiko.SFTPClient.from_transport(transport, window_size=SFTP_WINDOW)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostJobError(FailureKind.TRANSFER, f"SFTP is not available: {exc}") from None
    if sftp is None:
        raise HostJobError(FailureKind.TRANSFER, "SFTP is not available on this host")
    state.check(sftp)
    return sftp


def in_parallel(transport: paramiko.Transport, first: paramiko.SFTPClient,
                 state: TransferState, items: Sequence[_T],
                 work: Callable[[paramiko.SFTPClient, _T], None]) -> None:
    """Call ``work(sftp, item)`` for every item, over up to :data:`TREE_CHANNELS` SFTP
    sessions at once: a tree of small files is bound by round trips, not bytes, so several
    files in flight hide the latency. The first failure stops the others and is raised."""
    channels = min(TREE_CHANNELS, len(items))
    if channels <= 1:
        for item in items:
            work(first, item)
        return
    pending = iter(items)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run(sftp: paramiko.SFTPClient) -> None:
        while True:
            with lock:
                if failures:
                    return
                item = next(pending, None)
            if item is None:
                return
            try:
                work(sftp, item)
            except BaseException as exc:
                with lock:
                    failures.append(exc)
                return

    extra = [open_sftp(transport, state) for _ in range(channels - 1)]
    threads = [threading.Thread(target=run, args=(sftp,), daemon=True) for sftp in extra]
    for thread in threads:
        thread.start()
    run(first)
    for thread in threads:
        thread.join()
    for sftp in extra:
        close_quietly(sftp)
    if failures:
        raise failures[0]


def remove_quietly(transport: paramiko.Transport, path: str) -> None:
    """Best-effort removal of a temporary file after a failure.

    Uses a new SFTP channel: the failed one may hold a half-sent request (a deadline can strike
    inside a pipelined write), after which nothing on it gets an answer.
    """
    with contextlib.suppress(Exception):
        channel = transport.open_session(timeout=CLEANUP_SECONDS)
        channel.settimeout(CLEANUP_SECONDS)
        channel.invoke_subsystem("sftp")
        cleanup = paramiko.SFTPClient(channel)
        try:
            cleanup.remove(wire_path(path))
        finally:
            cleanup.close()


def abandon(sftp: paramiko.SFTPClient) -> None:
    """Close an SFTP session's channel without waiting for the answers still in flight (a
    prefetching read has the rest of its file in flight); its requests are abandoned."""
    with contextlib.suppress(Exception):
        channel = sftp.get_channel()
        if channel is not None:
            channel.close()


def close_quietly(sftp: paramiko.SFTPClient) -> None:
    """Close an SFTP session whose connection may already be gone; the outcome is decided."""
    with contextlib.suppress(Exception):
        sftp.close()


def remote_sha256(transport: paramiko.Transport, sftp: paramiko.SFTPClient, path: str) -> str:
    """SHA-256 of a remote file, computed there with ``sha256sum`` when it exists, else by
    reading the file back."""
    channel = transport.open_session(timeout=30)
    try:
        channel.exec_command(sha256_command(path))
        channel.shutdown_write()
        output = b""
        while chunk := channel.recv(4096):
            output += chunk
        status = channel.recv_exit_status()
    finally:
        channel.close()
    if status == 0 and output:
        return output.split()[0].decode("ascii", "replace").lstrip("\\")
    digest = hashlib.sha256()
    with sftp.open(wire_path(path), "rb") as handle:
        handle.MAX_REQUEST_SIZE = REQUEST_SIZE
        handle.prefetch()
        while block := handle.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    missing: list[str] = []
    current = path
    while current not in ("", "/", ".") and is_dir(sftp, current) is None:
        missing.append(current)
        current = posixpath.dirname(current)
    for directory in reversed(missing):
        try:
            sftp.mkdir(wire_path(directory))
        except OSError as exc:
            raise sftp_failure("mkdir", directory, exc) from None


def set_attributes(sftp: paramiko.SFTPClient, path: str, entry: LocalEntry,
                    preserve_times: bool) -> None:
    sftp.chmod(wire_path(path), stat.S_IMODE(entry.mode))
    if preserve_times:
        sftp.utime(wire_path(path), (entry.atime, entry.mtime))
