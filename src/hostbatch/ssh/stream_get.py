"""``get -r`` as one tar stream per host (``tar -c`` on the host), staged locally beside
``LOCAL/HOST/NAME`` and moved into place only once complete and verified.

The stream is read defensively (:func:`~hostbatch.ssh.tarstream.read_members`): nothing a
host sends lands outside the staging directory. Moving into an existing local copy never
follows a symlink there: an entry that the host now has as a directory replaces a local
link of that name instead of writing through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import threading
import time
from pathlib import Path

import paramiko

from hostbatch.actions import GetFiles
from hostbatch.errors import FailureKind
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.remote_exec import RemoteProcess, first_error_line, run_remote
from hostbatch.ssh.sftp import TransferState
from hostbatch.ssh.shell import tar_create_command, tree_listing_command
from hostbatch.ssh.stream_put import remote_sums, shell_path
from hostbatch.ssh.sync import (
    Stat,
    SyncPlan,
    checksum_candidates,
    compare,
    local_listing,
    parse_listing,
)
from hostbatch.ssh.tarstream import Member, UnsafeMember, local_path, read_members

CHUNK = 1024 * 1024


class _Reader:
    """The remote tar's stdout as the binary file :mod:`tarfile` reads."""

    def __init__(self, process: RemoteProcess) -> None:
        self.process = process

    def read(self, size: int = -1) -> bytes:
        return self.process.read(size if size > 0 else CHUNK)


def _local_sums(root: str, relpaths: list[str]) -> dict[str, str]:
    sums = {}
    for rel in relpaths:
        digest = hashlib.sha256()
        with open(local_path(root, rel), "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
        sums[rel] = digest.hexdigest()
    return sums


def _plan(transport: paramiko.Transport, action: GetFiles, remote: str, target: str,
          state: TransferState) -> tuple[SyncPlan, dict[str, Stat]]:
    status, output, errors = run_remote(transport, tree_listing_command(remote), state)
    if status != 0:
        raise HostJobError(FailureKind.TRANSFER, f"list {remote}: "
                           f"{first_error_line(errors, status)}")
    source, dest = parse_listing(output), local_listing(target)
    if not action.sync.checksum:
        return compare(source, dest, delete=action.sync.delete), source
    wanted = checksum_candidates(source, dest)
    return compare(source, dest, delete=action.sync.delete,
                   source_sums=remote_sums(transport, remote, wanted, state),
                   dest_sums=_local_sums(target, wanted)), source


def get_tree(transport: paramiko.Transport, action: GetFiles, remote: str, target: Path,
             state: TransferState) -> None:
    """Get the remote tree ``remote`` into the local ``target`` as one stream."""
    remote = shell_path(remote)
    state.method = "stream"
    names: list[str] | None = None
    plan = SyncPlan()
    if action.sync.enabled:
        plan, source = _plan(transport, action, remote, str(target), state)
        state.unchanged += plan.unchanged
        if action.sync.dry_run:
            for rel in plan.send:
                state.ctx.on_plan("send", str(target / rel))
                state.files, state.bytes = state.files + 1, state.bytes + source[rel].size
            for rel, _ in plan.chmod:
                state.ctx.on_plan("chmod", str(target / rel))
            for rel, _ in plan.delete:
                state.ctx.on_plan("delete", str(target / rel))
            state.deleted += len(plan.delete)
            state.changed_modes(len(plan.chmod))
            return
        names = ["", *sorted(rel for rel, item in source.items() if item.kind == "dir"),
                 *plan.send]
    stage = target.parent / f".{target.name}.hostbatch-{os.urandom(4).hex()}.stage"
    os.mkdir(stage, 0o700)
    try:
        received, dirs = _receive(transport, action, remote, names, str(stage), state)
        if action.verify:
            files = [rel for rel in received if rel]
            sums = remote_sums(transport, remote, files, state)
            for rel in files:
                if sums.get(rel) != received[rel][0]:
                    raise HostJobError(FailureKind.TRANSFER, f"get {remote}/{rel}: SHA-256 "
                                       "mismatch")
        _replace(str(stage), str(target), dirs, plan, fresh=names is None and
                 not os.path.lexists(target), preserve=action.preserve_times or
                 action.sync.enabled)
    finally:
        _remove(str(stage))
    state.deleted += len(plan.delete)
    state.changed_modes(len(plan.chmod))
    for rel, (_, size, duration) in received.items():
        if rel:
            state.landed(f"{remote}/{rel}", str(target / rel), size, duration)


Received = dict[str, tuple[str, int, float]]
#: Mode and mtime of each directory unpacked, applied once everything is in place.
DirModes = dict[str, tuple[int, float]]


def _receive(transport: paramiko.Transport, action: GetFiles, remote: str,
             names: list[str] | None, stage: str,
             state: TransferState) -> tuple[Received, DirModes]:
    """Unpack the host's tar stream into ``stage``: (SHA-256, size, seconds) per file, and
    the directories' modes and times."""
    process = RemoteProcess(transport, tar_create_command(remote, names is not None), state)
    if names is not None:
        listing = b"".join(os.fsencode("./" + rel if rel else ".") + b"\0" for rel in names)
        threading.Thread(target=_feed, args=(process, listing), daemon=True).start()
    received: Received = {}
    dirs: DirModes = {}
    broken = ""
    try:
        try:
            for item, archive in read_members(_Reader(process)):  # type: ignore[arg-type]
                received.update(_unpack(item, archive, stage, action, state, remote, dirs))
        except UnsafeMember as exc:
            raise HostJobError(FailureKind.TRANSFER, f"get {remote}: {exc}") from None
        except OSError as exc:
            if exc.filename is None:
                raise
            raise HostJobError(FailureKind.TRANSFER, f"cannot write {exc.filename}: "
                               f"{exc.strerror}") from None
        except (EOFError, tarfile.TarError) as exc:
            broken = f"the stream broke off ({exc})"
        status, errors = process.finish()
    finally:
        process.close()
    if status != 0 or broken:
        reason = first_error_line(errors, status) if status != 0 else broken
        raise HostJobError(FailureKind.TRANSFER, f"get {remote}: {reason}")
    return received, dirs


def _feed(process: RemoteProcess, listing: bytes) -> None:
    with contextlib.suppress(Exception):
        process.write(listing)
        process.channel.shutdown_write()


def _unpack(item: Member, archive: tarfile.TarFile, stage: str, action: GetFiles,
            state: TransferState, remote: str, dirs: DirModes) -> Received:
    """Write one member below ``stage`` (directories stay writable until :func:`_replace`)."""
    path = local_path(stage, item.relpath)
    started = time.monotonic()
    if item.kind == "dir":
        if item.relpath:
            os.mkdir(path, 0o700)
        dirs[item.relpath] = (item.mode, item.mtime)
        return {}
    if item.kind == "link":
        os.symlink(item.link_target, path)
        return {}
    source = archive.extractfile(item.info)
    if source is None:
        raise UnsafeMember(f"unreadable member in the stream: {item.relpath!r}")
    digest = hashlib.sha256()
    done = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as sink:
        while block := source.read(CHUNK):
            sink.write(block)
            digest.update(block)
            done += len(block)
            state.progress(f"{remote}/{item.relpath}", done, item.size)
    if done != item.size:
        raise EOFError("stream ended inside a file")
    os.chmod(path, item.mode)
    if action.preserve_times or action.sync.enabled:
        os.utime(path, (item.mtime, item.mtime))
    return {item.relpath: (digest.hexdigest(), done, time.monotonic() - started)}


def _replace(stage: str, target: str, dirs: dict[str, tuple[int, float]], plan: SyncPlan, *,
             fresh: bool, preserve: bool) -> None:
    """Move the staged tree into place: every file by ``os.replace`` (atomic), then the
    modes that alone changed, the deletions, then the directories' modes and times (deepest
    first)."""
    if fresh:
        os.rename(stage, target)
        root = target
    else:
        root = target
        for rel in sorted(dirs, key=lambda r: r.count("/") if r else -1):
            _real_dir(local_path(target, rel))
        for directory, _, files in os.walk(stage):
            rel_dir = os.path.relpath(directory, stage)
            for name in files:
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                destination = os.path.join(target, rel)
                if os.path.isdir(destination) and not os.path.islink(destination):
                    shutil.rmtree(destination)
                os.replace(os.path.join(directory, name), destination)
        for rel, mode in plan.chmod:
            path = local_path(target, rel)
            if stat.S_ISREG(os.lstat(path).st_mode):  # chmod would follow a symlink
                os.chmod(path, mode)
        for rel, is_dir in plan.delete:
            path = local_path(target, rel)
            if is_dir and not os.path.islink(path):
                _remove(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    for rel in sorted(dirs, key=lambda r: -r.count("/") if r else 1):
        mode, mtime = dirs[rel]
        path = local_path(root, rel)
        os.chmod(path, mode)
        if preserve:
            os.utime(path, (mtime, mtime))


def _real_dir(path: str) -> None:
    """Make ``path`` a real directory: a symlink or file there is replaced, never followed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o700)
        return
    if stat.S_ISDIR(info.st_mode):
        os.chmod(path, stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
        return
    os.unlink(path)
    os.mkdir(path, 0o700)


def _remove(path: str) -> None:
    """Remove a directory tree, read-only directories included; missing is fine."""
    def unlock(func: object, failed: str, _: object) -> None:
        del func
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(failed) and not os.path.islink(failed):
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=unlock)
