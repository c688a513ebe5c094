"""In-process paramiko SSH server that misbehaves on purpose (fault injection).

A real OpenSSH server (see ``tests.support.fleet``) cannot be told to stall
before its banner, to drop the TCP connection in the middle of a command's
output, or to never answer authentication.  hostbatch must handle all of these
(timeouts, retries, "connection lost" reporting), so this module provides a
small SSH server, modelled on paramiko's own test server, whose behaviour is
selected by ``mode``:

``no_banner``
    accept TCP, never send anything (sockets held open until ``stop()``).
``close_before_banner`` / ``reset_before_banner``
    close (FIN) / reset (RST) the first ``fail_first`` connections right away,
    like an sshd past ``MaxStartups``; later connections behave like ``normal``.
    Without ``fail_first`` every connection fails.
``normal``
    real SSH server; ``exec`` runs ``/bin/sh -c CMD`` locally, streaming stdin,
    stdout and stderr and sending the exit status.
``drip``
    ``exec`` sends ``lines`` lines (``"line 1\\n"``...) one every ``interval``
    seconds, then exit status ``exit_status`` (default 0).
``drop_after``
    ``exec`` sends ``bytes`` bytes of stdout, then cuts the TCP connection (FIN,
    or RST with ``reset=True``) without exit status or channel close.
``hang``
    authentication and ``exec`` succeed, then nothing is ever sent (keepalives are still
    answered: a command that is merely silent).
``freeze_after``
    ``exec`` sends ``lines`` lines (``"line 1\\n"``..., default 1), then the server freezes
    as a hung machine does: no more output, no exit status, and the first global request
    (a client's keepalive) blocks its transport for good, so nothing is ever answered or
    read again while the TCP connection stays open.
``auth_hang``
    banner and key exchange complete, authentication is never answered.

Authentication: publickey for ``authorized_key`` (a ``.pub`` file, an
authorized_keys line or an unencrypted private key) and/or password auth for
``password``; with neither configured, any key or password is accepted.
``username`` (optional) restricts the accepted user name.

Everything runs on daemon threads and ``stop()`` closes every socket, transport
and child process, so a forgotten server never blocks interpreter exit.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

__all__ = ["MODES", "FaultServer", "generate_host_key"]

#: Supported modes and the extra keyword parameters each one accepts.
MODES: dict[str, frozenset[str]] = {
    "no_banner": frozenset(),
    "close_before_banner": frozenset({"fail_first"}),
    "reset_before_banner": frozenset({"fail_first"}),
    "normal": frozenset(),
    "drip": frozenset({"lines", "interval", "exit_status"}),
    "drop_after": frozenset({"bytes", "reset"}),
    "hang": frozenset(),
    "freeze_after": frozenset({"lines"}),
    "auth_hang": frozenset(),
}

_LOG_CHANNEL = "tests.support.fault_server"
_log = logging.getLogger(_LOG_CHANNEL)
_LINGER_RST = struct.pack("ii", 1, 0)
_CLIENT_GONE = (OSError, EOFError, paramiko.SSHException)


def cut_connection(transport: paramiko.Transport, *, reset: bool = False) -> None:
    """Cut the TCP connection under ``transport`` without any SSH-level goodbye.

    With ``reset``, the peer sees a TCP reset (as from a crashed host or a firewall), otherwise
    a FIN.  The transport itself is left for the caller to close.  Used for the mid-session
    faults of :class:`FaultServer` (mode ``drop_after``) and of the SFTP fault server.
    """
    sock = transport.sock
    if not isinstance(sock, socket.socket):
        return
    with contextlib.suppress(OSError):
        if reset:
            # SHUT_RD wakes the transport thread without sending anything; its
            # close() then sends RST because of SO_LINGER 0.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            sock.shutdown(socket.SHUT_RD)
        else:
            sock.shutdown(socket.SHUT_RDWR)


def generate_host_key() -> paramiko.PKey:
    """A fresh ed25519 key (paramiko cannot generate ed25519 keys, ssh-keygen can, fast)."""
    with tempfile.TemporaryDirectory(prefix="fault-server-key-") as tmp:
        path = Path(tmp) / "key"
        subprocess.run(
            ["ssh-keygen", "-t", "ed25519", "-N", "", "-q", "-C", "fault-server", "-f", path],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        return paramiko.Ed25519Key(filename=str(path))


def _public_blob(path: Path) -> str:
    """Base64 public key blob from a .pub file, an authorized_keys line or a private key."""
    text = path.read_text().strip()
    if text.startswith("-----BEGIN"):
        return paramiko.PKey.from_path(path).get_base64()
    for field in text.split():
        if field.startswith("AAAA"):
            return field
    raise ValueError(f"no public key found in {path}")


class _Transport(paramiko.Transport):
    """Transport that starts exec workers only after the exec reply is on the wire.

    ``check_channel_exec_request`` runs before paramiko sends CHANNEL_SUCCESS;
    a worker starting there could send exit-status and CLOSE first, and
    paramiko clients then fail ``exec_command`` with "Channel closed".  Work
    registered with ``defer()`` runs right after the transport thread's next
    outgoing message (the reply), or after 0.2 s if the client wanted no reply.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._deferred: list[Callable[[], None]] = []
        self._deferred_lock = threading.Lock()

    def defer(self, job: Callable[[], None]) -> None:
        """Run ``job`` on a new daemon thread once the pending reply has been sent."""
        with self._deferred_lock:
            self._deferred.append(job)
        timer = threading.Timer(0.2, self._run_deferred)
        timer.daemon = True
        timer.start()

    def _run_deferred(self) -> None:
        with self._deferred_lock:
            jobs, self._deferred = self._deferred, []
        for job in jobs:
            threading.Thread(target=job, name="fault-server-exec", daemon=True).start()

    def _send_user_message(self, data: paramiko.Message) -> None:
        paramiko.Transport._send_user_message(self, data)  # type: ignore[attr-defined]
        if threading.current_thread() is self:
            self._run_deferred()


class _Handler(paramiko.ServerInterface):
    """paramiko server callbacks for one connection."""

    def __init__(self, server: FaultServer, transport: _Transport) -> None:
        self._server = server
        self._transport = transport

    # -- authentication
    def _hang_auth(self) -> None:
        if self._server.mode == "auth_hang":
            self._server._stopping.wait()

    def _user_ok(self, username: str) -> bool:
        return self._server.username is None or username == self._server.username

    def get_allowed_auths(self, username: str) -> str:
        self._hang_auth()
        server = self._server
        if server.password is None and server.authorized_blob is None:
            return "publickey,password"
        methods = []
        if server.authorized_blob is not None:
            methods.append("publickey")
        if server.password is not None:
            methods.append("password")
        return ",".join(methods)

    def check_auth_none(self, username: str) -> int:
        self._hang_auth()
        return AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        self._hang_auth()
        server = self._server
        if not self._user_ok(username):
            return AUTH_FAILED
        if server.password is None:
            ok = server.authorized_blob is None
        else:
            ok = password == server.password
        return AUTH_SUCCESSFUL if ok else AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self._hang_auth()
        server = self._server
        if not self._user_ok(username):
            return AUTH_FAILED
        if server.authorized_blob is None:
            ok = server.password is None
        else:
            ok = key.get_base64() == server.authorized_blob
        return AUTH_SUCCESSFUL if ok else AUTH_FAILED

    # -- global requests
    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        if self._server.mode == "freeze_after":
            # Runs on the transport thread: blocking it stops every answer and every read.
            self._server._stopping.wait()
        return False

    # -- channels
    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode("utf-8", "replace")
        self._server._record_command(text)
        if self._server.mode != "hang":
            self._transport.defer(lambda: self._server._exec(self._transport, channel, text))
        return True

    def check_channel_pty_request(
        self,
        channel: paramiko.Channel,
        term: bytes,
        width: int,
        height: int,
        pixelwidth: int,
        pixelheight: int,
        modes: bytes,
    ) -> bool:
        return True

    def check_channel_env_request(
        self, channel: paramiko.Channel, name: bytes, value: bytes
    ) -> bool:
        return True


class FaultServer:
    """A misbehaving SSH server on a loopback address, run on background threads.

    ``port=0`` picks an ephemeral port; the real one is in ``self.port`` after
    ``start()``.  ``connections`` counts accepted TCP connections and
    ``commands`` records every exec request, for assertions about retries.
    """

    def __init__(
        self,
        mode: str,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        authorized_key: Path | None = None,
        password: str | None = None,
        username: str | None = None,
        host_key: paramiko.PKey | None = None,
        **params: Any,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {sorted(MODES)}")
        unknown = set(params) - MODES[mode]
        if unknown:
            raise TypeError(f"mode {mode!r} does not take {sorted(unknown)}")
        if ipaddress.ip_address(address) not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"{address} is not a loopback address")
        self.mode = mode
        self.address = address
        self.port = port
        self.password = password
        self.username = username
        self.authorized_blob: str | None = (
            _public_blob(Path(authorized_key)) if authorized_key is not None else None
        )
        self.host_key: paramiko.PKey = host_key if host_key is not None else generate_host_key()
        self.params: dict[str, Any] = params
        self.fail_first: int | None = params.get("fail_first")
        self.commands: list[str] = []
        self._connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._held: list[socket.socket] = []
        self._transports: list[_Transport] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------ public API

    @property
    def connections(self) -> int:
        """Number of TCP connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def host_key_pub(self) -> str:
        """Public host key as ``type base64``."""
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    def host_key_line(self, name: str | None = None) -> str:
        """known_hosts line for this server: ``[addr]:port type base64``.

        ``name`` replaces the address in the host pattern (e.g. an inventory
        alias that a client looks up instead of the address).
        """
        host = name if name is not None else self.address
        pattern = host if self.port == 22 else f"[{host}]:{self.port}"
        return f"{pattern} {self.host_key_pub}"

    def write_known_hosts(self, path: Path, name: str | None = None) -> Path:
        """Write a one-line known_hosts file for this server and return its path."""
        path = Path(path)
        path.write_text(self.host_key_line(name) + "\n")
        return path

    def start(self) -> FaultServer:
        """Bind, listen and start accepting on a daemon thread.  Idempotent."""
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.address, self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"fault-server-{self.mode}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and kill running commands.  Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            held, self._held = self._held, []
            transports, self._transports = self._transports, []
            procs, self._procs = self._procs, []
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
        for transport in transports:
            with contextlib.suppress(Exception):
                transport.close()
        for proc in procs:
            _kill_process(proc)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultServer {self.mode} {self.address}:{self.port}>"

    # -------------------------------------------------------------- internals

    def _record_command(self, command: str) -> None:
        with self._lock:
            self.commands.append(command)

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setblocking(True)
            with self._lock:
                self._connections += 1
                number = self._connections
            self._dispatch(conn, number)

    def _dispatch(self, conn: socket.socket, number: int) -> None:
        if self.mode == "no_banner":
            with self._lock:
                self._held.append(conn)
            return
        if self.mode in ("close_before_banner", "reset_before_banner") and (
            self.fail_first is None or number <= self.fail_first
        ):
            if self.mode == "reset_before_banner":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            conn.close()
            return
        threading.Thread(
            target=self._serve_ssh, args=(conn,), name="fault-server-conn", daemon=True
        ).start()

    def _serve_ssh(self, conn: socket.socket) -> None:
        transport = _Transport(conn)
        transport.set_log_channel(_LOG_CHANNEL)
        transport.add_server_key(self.host_key)
        self._configure_transport(transport)
        with self._lock:
            if self._stopping.is_set():
                transport.close()
                return
            self._transports.append(transport)
        try:
            transport.start_server(server=_Handler(self, transport))
        except _CLIENT_GONE:
            transport.close()
            return
        # Drain paramiko's queue of opened channels (requests arrive via _Handler).
        # Keep references: paramiko closes a Channel when it is garbage collected.
        channels: list[paramiko.Channel] = []
        while transport.is_active() and not self._stopping.is_set():
            channel = transport.accept(timeout=0.5)
            if channel is not None:
                channels.append(channel)

    def _configure_transport(self, transport: _Transport) -> None:
        """Hook called on every new server transport before its handshake.

        Does nothing here; a subclass overrides it to register subsystems (e.g. SFTP) or to
        change the log channel, so that it need not copy :meth:`_serve_ssh`.
        """

    def _exec(self, transport: _Transport, channel: paramiko.Channel, command: str) -> None:
        try:
            if self.mode == "drip":
                self._drip(channel)
            elif self.mode == "drop_after":
                self._drop_after(transport, channel)
            elif self.mode == "freeze_after":
                for number in range(1, int(self.params.get("lines", 1)) + 1):
                    channel.sendall(f"line {number}\n".encode())
                self._stopping.wait()
            else:
                self._run_command(channel, command)
        except _CLIENT_GONE as exc:
            _log.debug("client went away during %r: %s", command, exc)

    def _drip(self, channel: paramiko.Channel) -> None:
        lines = int(self.params.get("lines", 5))
        interval = float(self.params.get("interval", 0.1))
        for number in range(1, lines + 1):
            if self._stopping.is_set():
                return
            channel.sendall(f"line {number}\n".encode())
            if number < lines:
                self._stopping.wait(interval)
        channel.send_exit_status(int(self.params.get("exit_status", 0)))
        channel.close()

    def _drop_after(self, transport: _Transport, channel: paramiko.Channel) -> None:
        channel.sendall(b"x" * int(self.params.get("bytes", 1024)))
        assert isinstance(transport.sock, socket.socket)
        cut_connection(transport, reset=bool(self.params.get("reset", False)))
        transport.close()

    def _run_command(self, channel: paramiko.Channel, command: str) -> None:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with self._lock:
            self._procs.append(proc)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=_pump, args=(proc, proc.stdout, channel.sendall), daemon=True),
            threading.Thread(
                target=_pump, args=(proc, proc.stderr, channel.sendall_stderr), daemon=True
            ),
        ]
        feeder = threading.Thread(target=_feed_stdin, args=(channel, proc.stdin), daemon=True)
        for thread in (*pumps, feeder):
            thread.start()
        for thread in pumps:
            thread.join()
        code = proc.wait()
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)
        channel.send_exit_status(code if code >= 0 else 128 - code)
        channel.close()


def _pump(proc: subprocess.Popen[bytes], source: IO[bytes], send: Callable[[bytes], None]) -> None:
    """Copy a child's output pipe to the channel; kill the child if the client is gone."""
    fd = source.fileno()
    try:
        while chunk := os.read(fd, 32768):
            send(chunk)
    except _CLIENT_GONE:
        _kill_process(proc)
    finally:
        source.close()


def _feed_stdin(channel: paramiko.Channel, sink: IO[bytes]) -> None:
    """Copy channel input to the child's stdin until EOF (or the child stops reading)."""
    try:
        while data := channel.recv(32768):
            sink.write(data)
            sink.flush()
    except (*_CLIENT_GONE, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


def _kill_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a command's whole process group (it runs in its own session)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
