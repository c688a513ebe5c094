"""Put a local file or tree on a host over SFTP, each file landing atomically (see :mod:`.sftp`)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import time

import paramiko

from hostbatch.actions import LocalEntry, PutFiles
from hostbatch.errors import FailureKind
from hostbatch.ssh import stream_put, sync_put
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.sftp import (
    READ_BLOCK,
    REQUEST_SIZE,
    TransferState,
    close_quietly,
    expand_remote,
    in_parallel,
    is_dir,
    makedirs,
    open_sftp,
    remote_sha256,
    remove_quietly,
    set_attributes,
    sftp_failure,
    temp_name,
    wire_path,
)
from hostbatch.ssh.shared_source import source_bytes
from hostbatch.ssh.stream_file import STREAM_MIN, send_file


def _resolve_put_target(sftp: paramiko.SFTPClient, action: PutFiles) -> str:
    """Where the top item lands: ``DIR/BASENAME`` in an existing directory, else ``remote``."""
    remote = expand_remote(action.remote)
    basename = posixpath.basename(action.source.rstrip("/")) or action.source
    wants_dir = remote.endswith("/")
    remote_path = remote.rstrip("/") or "/"
    kind = is_dir(sftp, remote_path)
    if kind:
        return posixpath.join(remote_path, basename)
    if wants_dir and not action.recursive:
        if kind is False:
            raise HostJobError(FailureKind.TRANSFER, f"remote {remote_path} is not a directory")
        if not action.mkdir:
            raise HostJobError(FailureKind.TRANSFER, f"remote directory {remote_path} does not "
                              "exist (use --mkdir to create it)")
        makedirs(sftp, remote_path)
        return posixpath.join(remote_path, basename)
    parent = posixpath.dirname(remote_path) or "."
    if not is_dir(sftp, parent):
        if not action.mkdir:
            raise HostJobError(FailureKind.TRANSFER, f"remote directory {parent} does not exist "
                              "(use --mkdir to create it)")
        makedirs(sftp, parent)
    return remote_path


def put_all(transport: paramiko.Transport, action: PutFiles, state: TransferState) -> None:
    """Put every source of ``action`` in order, each as :func:`put` does (each file or tree
    lands atomically); with several, ``remote`` must be a directory (``--mkdir`` makes it).

    The first source that fails ends the host's job, its message naming that source; the
    sources before it stay copied, as with scp.
    """
    parts = action.each_source()
    if len(parts) > 1:
        _ensure_destination_dir(transport, action, state)
    for part in parts:
        try:
            put(transport, part, state)
        except HostJobError as exc:
            if len(parts) == 1 or exc.kind is not FailureKind.TRANSFER:
                raise
            raise HostJobError(exc.kind, f"{part.source}: {exc.message}") from None


def _ensure_destination_dir(transport: paramiko.Transport, action: PutFiles,
                            state: TransferState) -> None:
    """The directory that receives several sources exists (made with ``--mkdir``)."""
    remote = expand_remote(action.remote).rstrip("/") or "/"
    sftp = open_sftp(transport, state)
    try:
        kind = is_dir(sftp, remote)
        if kind is False:
            raise HostJobError(FailureKind.TRANSFER, f"remote {remote} is not a directory "
                              f"(it must be one to receive {len(action.sources)} sources)")
        if kind is None:
            if not action.mkdir:
                raise HostJobError(FailureKind.TRANSFER, f"remote directory {remote} does "
                                  "not exist (use --mkdir to create it)")
            makedirs(sftp, remote)
    except Exception as exc:
        raise sftp_failure("put", action.remote, exc) from None
    finally:
        close_quietly(sftp)


def put(transport: paramiko.Transport, action: PutFiles, state: TransferState) -> None:
    """Put ``action.source`` on the host; raise :class:`HostJobError` on any problem.

    A ``--sync`` of a tree into the copy already there goes first to :mod:`.sync_put` (one
    remote command, no SFTP unless something changed); every other case places over SFTP.
    """
    if action.sync.enabled and action.entries[0].kind == "dir":
        try:
            if sync_put.put_into_existing(transport, action, state):
                return
        except Exception as exc:
            raise sftp_failure("put", action.remote, exc) from None
    sftp = open_sftp(transport, state)
    try:
        target = _resolve_put_target(sftp, action)
        top = action.entries[0]
        if top.kind != "dir":
            if not (action.sync.enabled and _file_unchanged(sftp, transport, action, target,
                                                            state)):
                _put_file(sftp, transport, action, top, action.source, target, state)
            return
        exists = is_dir(sftp, target)
        if exists is False:
            raise HostJobError(FailureKind.TRANSFER,
                               f"remote {target} exists and is not a directory")
        listed = None
        if action.sync.enabled and exists:
            state.note, listed = stream_put.probe_and_list(transport, target, state)
        else:
            state.note = stream_put.probe(transport, state)
        if not state.note:
            stream_put.put_tree(transport, lambda: sftp, action, target, exists is True, state,
                                listed)
            return
        if action.sync.enabled:
            raise HostJobError(FailureKind.TRANSFER, "--sync of a tree needs GNU tar and find "
                               "on the host")
        dirs: list[tuple[str, LocalEntry]] = []
        files: list[tuple[LocalEntry, str, str]] = []
        for entry in action.entries:
            state.check(sftp)
            local = os.path.join(action.source, *entry.relpath.split("/")) if entry.relpath \
                else action.source
            remote = posixpath.join(target, entry.relpath) if entry.relpath else target
            if entry.kind == "dir":
                _ensure_dir(sftp, remote)
                dirs.append((remote, entry))
            elif entry.kind == "link":
                _put_link(sftp, entry, remote)
            else:
                files.append((entry, local, remote))

        def put_one(session: paramiko.SFTPClient, item: tuple[LocalEntry, str, str]) -> None:
            _put_file(session, transport, action, item[0], item[1], item[2], state)

        in_parallel(transport, sftp, state, files, put_one)
        for remote, entry in reversed(dirs):  # after the files, so read-only dirs still fill
            set_attributes(sftp, remote, entry, action.preserve_times)
    except Exception as exc:
        raise sftp_failure("put", action.remote, exc) from None
    finally:
        close_quietly(sftp)


def _ensure_dir(sftp: paramiko.SFTPClient, path: str) -> None:
    kind = is_dir(sftp, path)
    if kind is False:
        raise HostJobError(FailureKind.TRANSFER, f"remote {path} exists and is not a directory")
    if kind is None:
        try:
            sftp.mkdir(wire_path(path), 0o700)
        except OSError as exc:
            raise sftp_failure("mkdir", path, exc) from None


def _put_link(sftp: paramiko.SFTPClient, entry: LocalEntry, remote: str) -> None:
    temp = temp_name(remote)
    try:
        sftp.symlink(wire_path(entry.link_target), wire_path(temp))
        sftp.posix_rename(wire_path(temp), wire_path(remote))
    except Exception as exc:
        with contextlib.suppress(Exception):
            sftp.remove(wire_path(temp))
        raise sftp_failure("symlink", remote, exc) from None


def _put_file(sftp: paramiko.SFTPClient, transport: paramiko.Transport, action: PutFiles,
              entry: LocalEntry, local: str, remote: str, state: TransferState) -> None:
    started = time.monotonic()
    temp = temp_name(remote)
    if action.sync.dry_run:
        state.ctx.on_plan("send", remote)
        state.files, state.bytes = state.files + 1, state.bytes + entry.size
        return
    try:
        data = source_bytes(local, entry.size)
        with sftp.open(wire_path(temp), "wb") as sink:
            if len(data) >= STREAM_MIN and send_file(transport, data, temp, remote, state):
                sent = len(data)
                state.method = "stream"
            else:
                sent = _write_sftp(sink, sftp, data, remote, state)
        set_attributes(sftp, temp, entry, action.preserve_times or action.sync.enabled)
        size = sftp.stat(wire_path(temp)).st_size
        if size != sent:
            raise HostJobError(FailureKind.TRANSFER, f"put {remote}: remote size {size} "
                              f"differs from {sent} bytes sent (disk full, or a write failed)")
        if action.verify:
            digest = remote_sha256(transport, sftp, temp)
            if digest != entry.sha256:
                raise HostJobError(FailureKind.TRANSFER, f"put {remote}: SHA-256 mismatch "
                                  "after transfer")
        sftp.posix_rename(wire_path(temp), wire_path(remote))
    except BaseException as exc:
        remove_quietly(transport, temp)
        if isinstance(exc, HostJobError):
            raise
        if isinstance(exc, OSError) and exc.filename == local:
            raise HostJobError(FailureKind.TRANSFER, f"cannot read {local}: "
                              f"{exc.strerror}") from None
        if isinstance(exc, Exception):
            raise sftp_failure("put", remote, exc) from None
        raise
    state.progress(remote, sent, entry.size, final=True)
    state.landed(local, remote, sent, time.monotonic() - started)


def _write_sftp(sink: paramiko.SFTPFile, sftp: paramiko.SFTPClient, data: memoryview | bytes,
                remote: str, state: TransferState) -> int:
    """Write ``data`` through the open ``sink`` in pipelined requests; the bytes written."""
    sink.MAX_REQUEST_SIZE = REQUEST_SIZE
    sink.set_pipelined(True)
    sent = 0
    while sent < len(data):
        state.check(sftp)
        block = data[sent:sent + READ_BLOCK]
        sink.write(bytes(block))
        sent += len(block)
        state.throttle(len(block))
        state.progress(remote, sent, len(data))
    return sent


def _file_unchanged(sftp: paramiko.SFTPClient, transport: paramiko.Transport,
                    action: PutFiles, target: str, state: TransferState) -> bool:
    """``--sync`` of one file: whether the target's content already matches (a regular file
    of the same size, and mtime or with ``--checksum`` SHA-256), so nothing is sent.

    A match counts as unchanged, unless only its mode differs: then the mode is changed in
    place (``chmod`` over SFTP; ``--dry-run`` names it) and counted in ``modes``, as a tree
    sync does. ``lstat``: a symlink at the target is replaced by the file, never followed.
    """
    top = action.entries[0]
    try:
        attrs = sftp.lstat(wire_path(target))
    except FileNotFoundError:
        return False
    same = stat.S_ISREG(attrs.st_mode or 0) and attrs.st_size == top.size
    if same and action.sync.checksum:
        same = remote_sha256(transport, sftp, target) == top.sha256
    elif same:
        same = int(attrs.st_mtime or 0) == int(top.mtime)
    if not same:
        return False
    mode = stat.S_IMODE(top.mode)
    if stat.S_IMODE(attrs.st_mode or 0) == mode:
        state.unchanged += 1
    elif action.sync.dry_run:
        state.ctx.on_plan("chmod", target)
        state.changed_modes(1)
    else:
        sftp.chmod(wire_path(target), mode)
        state.changed_modes(1)
    return True
