"""A remote command used as a byte pipe: what a relay's protocol runs over.

:meth:`Session.open_pipe <hostbatch.ssh.session.Session.open_pipe>` starts the command (no
pty, no kill wrapper: closing the channel closes the command's stdin, which is how a relay
learns that its controller is gone) and hands back a :class:`RemotePipe`. The caller reads
with ``select`` on :meth:`RemotePipe.fileno` and sends with a time limit, so a frozen peer
can never hang it.

With ``forward_agent``, the controller's ssh-agent (``SSH_AUTH_SOCK``) is forwarded over the
pipe's connection (paramiko's :class:`~paramiko.agent.AgentRequestHandler`, OpenSSH's
``auth-agent@openssh.com``): the command sees its own ``SSH_AUTH_SOCK`` and signs with the
controller's keys, which never leave the controller, for as long as the pipe is open.
"""

from __future__ import annotations

import contextlib
import os

import paramiko
from paramiko.agent import AgentRequestHandler

from hostbatch.errors import FailureKind
from hostbatch.ssh.errors import HostJobError

#: Bytes of the command's stderr kept for error messages (the last ones).
STDERR_TAIL = 4096
#: Channel window: a relay's events are bursts of output blocks.
PIPE_WINDOW = 4 * 1024 * 1024


class RemotePipe:
    """The stdin (:meth:`send`) and stdout (:meth:`recv`) of a command on the host."""

    def __init__(self, channel: paramiko.Channel,
                 agent: AgentRequestHandler | None = None) -> None:
        self._channel = channel
        self._agent = agent
        self._stderr = bytearray()

    def fileno(self) -> int:
        """Readable when output, stderr or the end of the command is waiting."""
        return self._channel.fileno()

    def send(self, data: bytes, timeout: float) -> None:
        """Write ``data`` to the command's stdin within ``timeout`` seconds, else
        :class:`HostJobError` (a peer that stopped reading, or a lost connection)."""
        self._channel.settimeout(timeout)
        try:
            self._channel.sendall(data)
        except TimeoutError:
            raise HostJobError(FailureKind.DISCONNECT,
                               f"the relay read nothing for {timeout:.0f}s") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostJobError(FailureKind.DISCONNECT, f"connection lost: {exc}") from None

    def recv(self) -> bytes | None:
        """What stdout has now (b"" at its end, None when nothing is waiting yet); drains
        stderr into :meth:`stderr_tail` on the way. Never blocks."""
        try:
            while self._channel.recv_stderr_ready():
                self._stderr += self._channel.recv_stderr(65536)
                del self._stderr[:-STDERR_TAIL]
            if self._channel.recv_ready() or self._channel.eof_received or \
                    self._channel.closed:
                data: bytes = self._channel.recv(1024 * 1024)
                return data
        except (OSError, EOFError, paramiko.SSHException):
            return b""
        return None

    def stderr_tail(self) -> str:
        """The end of what the command wrote to stderr, as one line."""
        try:
            while self._channel.recv_stderr_ready():
                self._stderr += self._channel.recv_stderr(65536)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        text = bytes(self._stderr[-STDERR_TAIL:]).decode("utf-8", "replace")
        return " ".join(text.split())

    def close_stdin(self) -> None:
        """End the command's stdin (it reads end of file); the pipe still reads."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self._channel.shutdown_write()

    def close(self) -> None:
        """Close the channel: the command's stdin ends, a forwarded agent is no longer
        served (idempotent)."""
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self._channel.close()
        if self._agent is not None:
            agent, self._agent = self._agent, None
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                agent.close()


def open_pipe(transport: paramiko.Transport, command: str, timeout: float, *,
              forward_agent: bool = False) -> RemotePipe:
    """Start ``command`` on the host with its stdin and stdout as a pipe; with
    ``forward_agent`` (and an agent here: ``SSH_AUTH_SOCK``), forward the agent to it."""
    agent = None
    try:
        channel = transport.open_session(timeout=timeout, window_size=PIPE_WINDOW)
        if forward_agent and os.environ.get("SSH_AUTH_SOCK"):
            agent = AgentRequestHandler(channel)  # asked for before the command starts
        channel.exec_command(command)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise HostJobError(FailureKind.CONNECT, f"cannot start {command!r}: {exc}") from None
    return RemotePipe(channel, agent)
