"""An SFTP-capable :class:`~tests.support.fault_server.FaultServer` that misbehaves on purpose.

OpenSSH's sftp-server cannot be told to cut a connection in the middle of a file, or to
corrupt what it writes.  This server serves a local directory (``root``: the remote ``/`` and
the remote home) through paramiko's :class:`~paramiko.SFTPServer`, after the idea of
paramiko's own ``tests/_stub_sftp.py``, and on top of that:

``drop_after_write=N``
    once N bytes of file data have been written (in total, over every connection), the TCP
    connection is shut down (FIN) and the transport closed, without an SFTP reply.
``drop_after_read=N``
    the same, after N bytes of file data have been read.
``drop_reset=True``
    drop with a TCP reset (RST, as a crashed host or a firewall does) instead of a FIN.
``write_delay=S``
    every write request is answered S seconds late (a slow disk or link), so a client with
    requests in flight soon blocks on the SSH channel window in the middle of a transfer.
``corrupt_writes=True``
    the first byte of every write at file offset 0 is inverted, so the size is right and the
    content is wrong (what ``--verify`` must catch).

Everything else (authentication, host key, ``exec`` through ``/bin/sh``) is the base
``FaultServer`` in its ``normal`` mode.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
from pathlib import Path
from typing import Any

import paramiko
from paramiko.sftp import SFTP_FAILURE, SFTP_OK

from tests.support.fault_server import FaultServer, _Handler, _Transport, cut_connection

__all__ = ["SftpFaultServer"]


class SftpFaultServer(FaultServer):
    """A FaultServer (mode ``normal``) with an SFTP subsystem serving ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        drop_after_write: int | None = None,
        drop_after_read: int | None = None,
        drop_reset: bool = False,
        corrupt_writes: bool = False,
        write_delay: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__("normal", **kwargs)
        self.root = Path(root).resolve()
        self.drop_after_write = drop_after_write
        self.drop_after_read = drop_after_read
        self.drop_reset = drop_reset
        self.corrupt_writes = corrupt_writes
        self.write_delay = write_delay
        self.written = 0
        self.read = 0
        self.dropped = threading.Event()
        self._count_lock = threading.Lock()

    # -- the fault: cut the TCP connection under the SFTP session
    def _drop(self, transport: paramiko.Transport) -> None:
        self.dropped.set()
        cut_connection(transport, reset=self.drop_reset)
        with contextlib.suppress(Exception):
            transport.close()

    def _count(self, transport: paramiko.Transport, *, written: int = 0, read: int = 0) -> bool:
        """Count file data; True (after cutting the connection) when a limit is reached."""
        with self._count_lock:
            self.written += written
            self.read += read
            over = (self.drop_after_write is not None and self.written >= self.drop_after_write) \
                or (self.drop_after_read is not None and self.read >= self.drop_after_read)
        if over:
            self._drop(transport)
        return over

    # -- the base server's connection handling, with the SFTP subsystem registered
    def _configure_transport(self, transport: _Transport) -> None:
        transport.set_log_channel("tests.integration.scp.sftp_fault_server")
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _StubSftp, fault=self)


class _Handle(paramiko.SFTPHandle):
    def __init__(self, flags: int, sftp: _StubSftp, path: str) -> None:
        super().__init__(flags)
        self.sftp = sftp
        self.local_path = path

    def stat(self) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        try:
            paramiko.SFTPServer.set_file_attr(self.local_path, attr)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return SFTP_OK

    def write(self, offset: int, data: bytes) -> int:
        fault = self.sftp.fault
        if fault._count(self.sftp.transport, written=len(data)):
            return SFTP_FAILURE
        if fault.write_delay:
            fault._stopping.wait(fault.write_delay)
        if fault.corrupt_writes and offset == 0 and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return super().write(offset, data)

    def read(self, offset: int, length: int) -> bytes | int:
        result = super().read(offset, length)
        if isinstance(result, bytes) and self.sftp.fault._count(self.sftp.transport,
                                                                 read=len(result)):
            return SFTP_FAILURE
        return result


class _StubSftp(paramiko.SFTPServerInterface):
    """Serves ``fault.root`` as the remote ``/`` (and as the home for relative paths)."""

    def __init__(self, server: _Handler, *args: Any, fault: SftpFaultServer,
                 **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.fault = fault
        self.transport: paramiko.Transport = server._transport

    def _local(self, path: str) -> str:
        virtual = posixpath.normpath(posixpath.join("/", path))
        return os.path.join(self.fault.root, virtual.lstrip("/"))

    @staticmethod
    def _error(exc: OSError) -> int:
        return paramiko.SFTPServer.convert_errno(exc.errno)

    def canonicalize(self, path: str) -> str:
        return posixpath.normpath(posixpath.join("/", path))

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        local = self._local(path)
        try:
            result = []
            for name in os.listdir(local):
                attr = paramiko.SFTPAttributes.from_stat(os.lstat(os.path.join(local, name)))
                attr.filename = name
                result.append(attr)
            return result
        except OSError as exc:
            return self._error(exc)

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self._local(path)))
        except OSError as exc:
            return self._error(exc)

    def lstat(self, path: str) -> paramiko.SFTPAttributes | int:
        try:
            return paramiko.SFTPAttributes.from_stat(os.lstat(self._local(path)))
        except OSError as exc:
            return self._error(exc)

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> _Handle | int:
        local = self._local(path)
        mode = attr.st_mode if attr is not None and attr.st_mode is not None else 0o666
        try:
            fd = os.open(local, flags | getattr(os, "O_BINARY", 0), mode)
        except OSError as exc:
            return self._error(exc)
        if flags & os.O_CREAT and attr is not None:
            attr._flags &= ~attr.FLAG_PERMISSIONS
            paramiko.SFTPServer.set_file_attr(local, attr)
        if flags & os.O_WRONLY:
            fstr = "ab" if flags & os.O_APPEND else "wb"
        elif flags & os.O_RDWR:
            fstr = "a+b" if flags & os.O_APPEND else "r+b"
        else:
            fstr = "rb"
        try:
            handle_file = os.fdopen(fd, fstr)
        except OSError as exc:
            return self._error(exc)
        handle = _Handle(flags, self, local)
        handle.filename = local
        handle.readfile = handle_file
        handle.writefile = handle_file
        return handle

    def remove(self, path: str) -> int:
        try:
            os.remove(self._local(path))
        except OSError as exc:
            return self._error(exc)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        old, new = self._local(oldpath), self._local(newpath)
        if os.path.lexists(new):
            return SFTP_FAILURE
        try:
            os.rename(old, new)
        except OSError as exc:
            return self._error(exc)
        return SFTP_OK

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        try:
            os.rename(self._local(oldpath), self._local(newpath))
        except OSError as exc:
            return self._error(exc)
        return SFTP_OK

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        local = self._local(path)
        try:
            os.mkdir(local)
            if attr is not None:
                paramiko.SFTPServer.set_file_attr(local, attr)
        except OSError as exc:
            return self._error(exc)
        return SFTP_OK

    def rmdir(self, path: str) -> int:
        try:
            os.rmdir(self._local(path))
        except OSError as exc:
            return self._error(exc)
        return SFTP_OK

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        try:
            paramiko.SFTPServer.set_file_attr(self._local(path), attr)
        except OSError as exc:
            return self._error(exc)
        return SFTP_OK

    def symlink(self, target_path: str, path: str) -> int:
        try:
            os.symlink(target_path, self._local(path))
        except OSError as exc:
            return self._error(exc)
        return SFTP_OK

    def readlink(self, path: str) -> str | int:
        try:
            return os.readlink(self._local(path))
        except OSError as exc:
            return self._error(exc)
