"""Commands of a tree stream on the host (tar, find, sha256sum, the replace script), each on
an exec channel of its own, bounded by the host's deadline and woken by Ctrl-C.

:class:`RemoteProcess` feeds a command's stdin as a stream (the tar of a put) or reads its
stdout as one (the tar of a get); :func:`run_remote` runs a short command to completion.
stderr is drained all along (a command's errors must never stall it on a full window) and
kept, bounded, for the failure message.
"""

from __future__ import annotations

import contextlib
import threading

import paramiko

from hostbatch.errors import FailureKind
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.sftp import CLEANUP_SECONDS, TransferState

#: Bytes per channel send: paramiko splits into 32 KiB packets anyway.
SEND_CHUNK = 256 * 1024
#: How often a blocked read or wait looks at the deadline and Ctrl-C.
POLL_SECONDS = 0.2
#: stderr kept for a failure message.
STDERR_KEEP = 16 * 1024


class RemoteProcess:
    """One command on the host, reached through its own exec channel."""

    def __init__(self, transport: paramiko.Transport, command: bytes,
                 state: TransferState) -> None:
        state.check()
        self.state = state
        self.transport = transport
        try:
            self.channel = transport.open_session(timeout=30)
            self.channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostJobError(FailureKind.DISCONNECT, f"cannot start a command: {exc}") \
                from None
        self._stderr = bytearray()

    def _drain_stderr(self) -> None:
        while self.channel.recv_stderr_ready():
            data = self.channel.recv_stderr(32768)
            if len(self._stderr) < STDERR_KEEP:
                self._stderr += data[:STDERR_KEEP - len(self._stderr)]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` to the command's stdin; raise :class:`BrokenPipeError` when the
        command has stopped reading (it failed: :meth:`finish` tells why)."""
        view = memoryview(data)
        while view:
            self.state.check()
            self._drain_stderr()
            self.channel.settimeout(POLL_SECONDS)
            try:
                # A view, not a copy: paramiko sends one packet per call and copies that.
                sent = self.channel.send(view[:SEND_CHUNK])  # type: ignore[arg-type]
            except TimeoutError:
                continue  # no window yet: look at the deadline and Ctrl-C again
            except OSError:
                raise BrokenPipeError("the remote command stopped reading") from None
            if sent <= 0:
                raise BrokenPipeError("the remote command stopped reading")
            self.state.throttle(sent)
            view = view[sent:]

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of stdout (``b""`` at its end), waiting for at least one."""
        while True:
            self.state.check()
            self._drain_stderr()
            self.channel.settimeout(POLL_SECONDS)
            try:
                data: bytes = self.channel.recv(size)
            except TimeoutError:
                continue
            self.state.throttle(len(data))
            return data

    @property
    def errors(self) -> bytes:
        """The command's stderr read so far (bounded)."""
        self._drain_stderr()
        return bytes(self._stderr)

    def finish(self) -> tuple[int, bytes]:
        """Close stdin, wait for the command to end; its exit status and stderr."""
        with contextlib.suppress(OSError, EOFError):
            self.channel.shutdown_write()
        while not self.channel.status_event.wait(POLL_SECONDS):
            self.state.check()
            if not self.channel.get_transport() or not self.transport.is_active():
                raise HostJobError(FailureKind.DISCONNECT, "connection lost during the copy")
            if self.channel.closed:
                # The exit status comes before the close: read it if it raced this check;
                # a channel closed without one was ended by a signal.
                if self.channel.status_event.wait(POLL_SECONDS):
                    break
                return -1, bytes(self._stderr)
            self._drain_stderr()
            with contextlib.suppress(OSError):
                while self.channel.recv_ready():
                    self.channel.recv(32768)
        self._drain_stderr()
        return self.channel.recv_exit_status(), bytes(self._stderr)

    def close(self) -> None:
        """Close the channel (the command gets EOF and SIGPIPE); idempotent."""
        with contextlib.suppress(Exception):
            self.channel.close()


def run_remote(transport: paramiko.Transport, command: bytes, state: TransferState,
               stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """Run ``command`` with ``stdin`` (sent from a thread, so a command that writes before it
    has read everything cannot deadlock); its exit status, stdout and stderr."""
    process = RemoteProcess(transport, command, state)
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            if stdin:
                process.write(stdin)
            process.channel.shutdown_write()
        except BaseException as exc:
            failure.append(exc)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        output = bytearray()
        while block := process.read(65536):
            output += block
        feeder.join()
        if failure and not isinstance(failure[0], BrokenPipeError):
            raise failure[0]
        status, errors = process.finish()
        return status, bytes(output), errors
    finally:
        process.close()


def cleanup_remote(transport: paramiko.Transport, command: bytes) -> None:
    """Best effort, on a fresh channel (the failed one may be wedged mid-packet), within
    :data:`CLEANUP_SECONDS` even past the deadline or after Ctrl-C: remove what a failed
    stream left."""
    with contextlib.suppress(Exception):
        channel = transport.open_session(timeout=CLEANUP_SECONDS)
        try:
            channel.settimeout(CLEANUP_SECONDS)
            channel.exec_command(command)
            channel.shutdown_write()
            channel.status_event.wait(CLEANUP_SECONDS)
        finally:
            channel.close()


def first_error_line(errors: bytes, status: int) -> str:
    """The most telling line of a failed command's stderr, for a one-line message."""
    lines = [line for line in errors.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        # GNU tar reports a short write (what a full disk causes) as "Wrote only N of M".
        if "No space left" in line or "Disk quota" in line or "Wrote only" in line:
            return f"disk full (No space left on device): {line}"
    return lines[0] if lines else f"exit status {status}"
