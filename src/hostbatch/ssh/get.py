"""Get a remote file or tree from a host into ``LOCAL/HOST/`` over SFTP, each file landing
atomically (see :mod:`.sftp`)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko

from hostbatch.actions import GetFiles
from hostbatch.atomic import atomic_write
from hostbatch.errors import FailureKind
from hostbatch.ssh import stream_get, stream_put
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.sftp import (
    READ_BLOCK,
    REQUEST_SIZE,
    TransferState,
    abandon,
    close_quietly,
    expand_remote,
    in_parallel,
    listdir_raw,
    open_sftp,
    read_link,
    remote_sha256,
    sftp_failure,
    wire_path,
)


def get_all(transport: paramiko.Transport, action: GetFiles, state: TransferState) -> None:
    """Get every remote path of ``action`` in order, each as :func:`get` does; the first that
    fails ends the host's job, its message naming that path (the ones before it stay)."""
    parts = action.each_remote()
    for part in parts:
        try:
            get(transport, part, state)
        except HostJobError as exc:
            named = part.remote in exc.message  # most messages name the path already
            if len(parts) == 1 or exc.kind is not FailureKind.TRANSFER or named:
                raise
            raise HostJobError(exc.kind, f"{part.remote}: {exc.message}") from None


def get(transport: paramiko.Transport, action: GetFiles, state: TransferState) -> None:
    """Get ``action.remote`` into ``local_dir/HOST/``; raise :class:`HostJobError` on problems."""
    sftp = open_sftp(transport, state)
    remote = expand_remote(action.remote).rstrip("/") or "/"
    try:
        try:
            top = sftp.stat(wire_path(remote))
        except OSError as exc:
            raise sftp_failure("get", remote, exc) from None
        is_dir = stat.S_ISDIR(top.st_mode or 0)
        if is_dir and not action.recursive:
            raise HostJobError(FailureKind.TRANSFER, f"remote {remote} is a directory "
                              "(use -r to get a tree)")
        host_dir = Path(action.local_dir) / state.host
        host_dir.mkdir(parents=True, exist_ok=True)
        name = posixpath.basename(remote) if remote not in ("/", ".") else state.host
        target = host_dir / name
        if not is_dir:
            if not (action.sync.enabled and _file_unchanged(sftp, transport, action, remote, top,
                                                            target, state)):
                _get_file(sftp, transport, action, remote, top, target, state)
            return
        state.note = stream_put.probe(transport, state)
        if not state.note:
            stream_get.get_tree(transport, action, remote, target, state)
            return
        if action.sync.enabled:
            raise HostJobError(FailureKind.TRANSFER, "--sync of a tree needs GNU tar and find "
                               "on the host")
        dirs: list[tuple[Path, paramiko.SFTPAttributes]] = [(target, top)]
        target.mkdir(exist_ok=True)
        files: list[tuple[str, paramiko.SFTPAttributes, Path]] = []
        for path, attrs, local in _walk_remote(sftp, remote, target):
            state.check(sftp)
            mode = attrs.st_mode or 0
            if stat.S_ISDIR(mode):
                local.mkdir(exist_ok=True)
                dirs.append((local, attrs))
            elif stat.S_ISLNK(mode):
                _get_link(sftp, path, local)
            elif stat.S_ISREG(mode):
                files.append((path, attrs, local))

        def get_one(session: paramiko.SFTPClient,
                    item: tuple[str, paramiko.SFTPAttributes, Path]) -> None:
            _get_file(session, transport, action, item[0], item[1], item[2], state)

        in_parallel(transport, sftp, state, files, get_one)
        for local, attrs in reversed(dirs):
            os.chmod(local, stat.S_IMODE(attrs.st_mode or 0o755))
            if action.preserve_times and attrs.st_mtime is not None:
                os.utime(local, (attrs.st_atime or attrs.st_mtime, attrs.st_mtime))
    except Exception as exc:
        raise sftp_failure("get", remote, exc) from None
    finally:
        close_quietly(sftp)


def _walk_remote(sftp: paramiko.SFTPClient, remote: str,
                 local: Path) -> Iterator[tuple[str, paramiko.SFTPAttributes, Path]]:
    """Every entry below ``remote``, parents before children, with its local counterpart.

    Names are listed as raw bytes (:func:`.sftp.listdir_raw`): one that is not UTF-8 arrives
    as a surrogate-escaped str, lands locally under its own bytes, and is sent back to the
    host as those bytes by every later request (:func:`.sftp.wire_path`).
    """
    for name, attrs in sorted(listdir_raw(sftp, remote), key=lambda entry: entry[0]):
        path = posixpath.join(remote, name)
        target = local / name
        yield path, attrs, target
        if stat.S_ISDIR(attrs.st_mode or 0):
            yield from _walk_remote(sftp, path, target)


def _get_link(sftp: paramiko.SFTPClient, remote: str, local: Path) -> None:
    link_target = read_link(sftp, remote)
    temp = local.with_name(f".{local.name}.hostbatch-{secrets.token_hex(4)}.part")
    os.symlink(link_target, temp)
    os.replace(temp, local)


def _get_file(sftp: paramiko.SFTPClient, transport: paramiko.Transport, action: GetFiles,
              remote: str, attrs: paramiko.SFTPAttributes, local: Path,
              state: TransferState) -> None:
    started = time.monotonic()
    total = attrs.st_size or 0
    if action.sync.dry_run:
        state.ctx.on_plan("send", str(local))
        state.files, state.bytes = state.files + 1, state.bytes + total
        return
    try:
        received = _receive(sftp, transport, action, remote, attrs, local, state)
    except BaseException as exc:
        # Closing a file with prefetch requests in flight reads every one of them first (the
        # rest of the file): abandoning the SFTP channel makes Ctrl-C and errors take effect
        # at once.
        abandon(sftp)
        if isinstance(exc, HostJobError) or not isinstance(exc, Exception):
            raise
        if (isinstance(exc, OSError) and exc.filename is not None
                and Path(exc.filename).parent == local.parent):
            raise HostJobError(FailureKind.TRANSFER, f"cannot write {local}: "
                               f"{exc.strerror}") from None
        raise sftp_failure("get", remote, exc) from None
    state.progress(remote, received, total, final=True)
    state.landed(remote, str(local), received, time.monotonic() - started)


def _receive(sftp: paramiko.SFTPClient, transport: paramiko.Transport, action: GetFiles,
             remote: str, attrs: paramiko.SFTPAttributes, local: Path,
             state: TransferState) -> int:
    """Copy ``remote`` to ``local`` through a temporary file; return the bytes received."""
    total = attrs.st_size or 0
    digest = hashlib.sha256()
    received = 0

    def set_times(temp: Path) -> None:
        if (action.preserve_times or action.sync.enabled) and attrs.st_mtime is not None:
            os.utime(temp, (attrs.st_atime or attrs.st_mtime, attrs.st_mtime))

    source = sftp.open(wire_path(remote), "rb")
    # Not fsynced, as scp does not: a tree of many small files would pay one disk flush per
    # file; the rename still never shows a half-written file.
    with atomic_write(local, stat.S_IMODE(attrs.st_mode or 0o644), before_rename=set_times,
                      durable=False) as sink:
        source.MAX_REQUEST_SIZE = REQUEST_SIZE
        source.prefetch(total)
        while received < total:
            state.check(sftp)
            block = source.read(min(READ_BLOCK, total - received))
            if not block:
                break
            sink.write(block)
            digest.update(block)
            received += len(block)
            state.throttle(len(block))
            state.progress(remote, received, total)
        if received != total:
            raise HostJobError(FailureKind.TRANSFER, f"get {remote}: got {received} of "
                               f"{total} bytes")
        if action.verify and remote_sha256(transport, sftp, remote) != digest.hexdigest():
            raise HostJobError(FailureKind.TRANSFER, f"get {remote}: SHA-256 mismatch")
    source.close()
    return received


def _file_unchanged(sftp: paramiko.SFTPClient, transport: paramiko.Transport,
                    action: GetFiles, remote: str, attrs: paramiko.SFTPAttributes,
                    local: Path, state: TransferState) -> bool:
    """``--sync`` of one file: whether the local copy's content already matches the remote
    file (a regular file of the same size, and mtime or with ``--checksum`` SHA-256), so
    nothing is fetched.

    A match counts as unchanged, unless only its mode differs: then the local mode is changed
    in place (``os.chmod``; ``--dry-run`` names it) and counted in ``modes``, as a tree sync
    does.
    """
    try:
        info = local.lstat()
    except FileNotFoundError:
        return False
    same = stat.S_ISREG(info.st_mode) and info.st_size == attrs.st_size
    if same and action.sync.checksum:
        digest = hashlib.sha256()
        with open(local, "rb") as handle:
            while block := handle.read(READ_BLOCK):
                digest.update(block)
        same = digest.hexdigest() == remote_sha256(transport, sftp, remote)
    elif same:
        same = int(info.st_mtime) == int(attrs.st_mtime or 0)
    if not same:
        return False
    mode = stat.S_IMODE(attrs.st_mode or 0)
    if stat.S_IMODE(info.st_mode) == mode:
        state.unchanged += 1
    elif action.sync.dry_run:
        state.ctx.on_plan("chmod", str(local))
        state.changed_modes(1)
    else:
        os.chmod(local, mode)
        state.changed_modes(1)
    return True
