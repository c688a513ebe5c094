"""The console's resident shell: one login shell per host that runs command after command.

A command on a fresh channel costs the host a forked sshd session and an exec of the login
shell, and the client a channel opened and closed: most of what a console command costs
(bench/results-console.md). A :class:`ResidentShell` is started once per connection
(``$SHELL -s`` on a session channel, :data:`~hostbatch.ssh.shell.RESIDENT_SHELL`) and gets
one line per command (:func:`~hostbatch.ssh.shell.resident_line`): the command runs in a
subshell (so ``cd``, variables and options do not carry over to the next command), as a job
with its own process group (job control, ``set -m``), stdin from /dev/null. The shell frames
it: a ``start`` line with the process group, an ``end`` line with the exit status on both
streams (:mod:`hostbatch.ssh.frames` removes them from the output).

Stopping (Ctrl-C, ``--timeout``): the process group is signalled from a second channel, as
:mod:`hostbatch.ssh.command` does, and the shell stays for the next command; a shell whose
command did not end even after ``KILL`` is closed (the next command starts a new one).

A shell that cannot run commands this way (no job control without a terminal, e.g. dash, or
a login shell that is not a POSIX shell) is reported by :meth:`ResidentShell.start` as
``None``; the session then keeps a channel per command. A shell that ended before a
command began raises :class:`ShellGone`, so the session can start another.
"""

from __future__ import annotations

import contextlib
import secrets
import select
import time

import paramiko

from hostbatch.actions import Stream
from hostbatch.errors import FailureKind
from hostbatch.ssh.command import (
    COMMAND_WINDOW,
    KILL_GRACE,
    READ_MAX,
    SELECT_CAP,
    CommandResult,
    LineSplitter,
    time_left,
)
from hostbatch.ssh.context import HostContext
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.frames import FrameScanner
from hostbatch.ssh.shell import (
    RESIDENT_SHELL,
    frame_prefix,
    kill_group,
    resident_line,
    resident_probe,
)

#: How long a new shell may take to answer its first line before the host keeps a channel
#: per command.
START_WAIT = 10.0
#: How long a stop waits for the job's process group to be announced (the line was sent, the
#: job is starting) before giving up on killing it and closing the shell.
ANNOUNCE_WAIT = 5.0
_ERRORS = (OSError, EOFError, paramiko.SSHException)


class ShellGone(Exception):
    """The resident shell ended before the command began: nothing of it ran."""


def _wait_readable(channel: paramiko.Channel, ctx: HostContext, wait: float) -> bool:
    """Sleep until the channel has news, at most ``wait`` seconds; True if the run was
    cancelled meanwhile."""
    if channel.recv_ready() or channel.recv_stderr_ready() or channel.eof_received \
            or channel.closed:
        return ctx.is_cancelled
    watched = [channel.fileno()]
    if ctx.wake_fd is not None:
        watched.append(ctx.wake_fd)
    readable, _, _ = select.select(watched, [], [], min(wait, SELECT_CAP))
    return ctx.wake_fd in readable or ctx.is_cancelled


class ResidentShell:
    """A login shell kept running on a session channel; see the module docstring."""

    def __init__(self, transport: paramiko.Transport, channel: paramiko.Channel) -> None:
        self.transport = transport
        self.channel = channel
        #: False once the shell cannot be trusted with another command.
        self.usable = True

    @classmethod
    def start(cls, transport: paramiko.Transport, ctx: HostContext) -> ResidentShell | None:
        """Start a shell and check it can run commands; ``None`` if it cannot.

        Raises :class:`HostJobError` when the run is cancelled meanwhile, or the channel
        cannot be opened at all (the connection is gone).
        """
        try:
            channel = transport.open_session(timeout=30, window_size=COMMAND_WINDOW)
            channel.exec_command(RESIDENT_SHELL)
            nonce = secrets.token_hex(8)
            channel.sendall(resident_probe(nonce).encode())
        except _ERRORS as exc:
            raise HostJobError(FailureKind.DISCONNECT,
                               f"could not start the command: {exc}") from None
        ready = FrameScanner(frame_prefix("ready", nonce))
        deadline = time.monotonic() + START_WAIT
        try:
            while not ready.found:
                left = deadline - time.monotonic()
                if left <= 0 or channel.closed or channel.eof_received:
                    break  # what an rc file printed before the answer is dropped
                if _wait_readable(channel, ctx, left):
                    raise HostJobError(FailureKind.INTERRUPTED, "interrupted")
                while channel.recv_ready():
                    ready.feed(channel.recv(READ_MAX))
                while channel.recv_stderr_ready():
                    channel.recv_stderr(READ_MAX)
        except _ERRORS:
            pass
        except HostJobError:
            _close(channel)
            raise
        if ready.number != 1:
            _close(channel)
            return None
        return cls(transport, channel)

    def run(self, command: str, ctx: HostContext) -> CommandResult:
        """Run ``command`` (shell text) and stream its output to ``ctx.on_lines``.

        Raises :class:`ShellGone` if the shell was gone before the command began, and
        :class:`HostJobError` when it was stopped (cancelled, timed out) or the connection
        was lost.
        """
        nonce = secrets.token_hex(8)
        try:
            self.channel.sendall(resident_line(command, nonce).encode())
        except _ERRORS:
            self.usable = False
            raise ShellGone() from None
        return _ShellRun(self, ctx, nonce).run()

    def close(self) -> None:
        """Close the shell's channel (the shell ends on its end of input)."""
        self.usable = False
        _close(self.channel)


def _close(channel: paramiko.Channel) -> None:
    with contextlib.suppress(*_ERRORS):
        channel.close()


def _signal_group(transport: paramiko.Transport, signal_name: str, pgid: int) -> None:
    """Signal process group ``pgid`` from a channel of its own (the shell's is busy waiting
    for the job), waiting a moment for the ``kill`` to have run."""
    channel = transport.open_session(timeout=KILL_GRACE * 2)
    try:
        channel.exec_command(kill_group(signal_name, pgid))
        channel.shutdown_write()
        channel.status_event.wait(KILL_GRACE * 2)
    finally:
        _close(channel)


def _through(scanner: FrameScanner, data: bytes) -> bytes:
    """``data`` without ``scanner``'s frame (what followed the frame included)."""
    passed = scanner.feed(data)
    if scanner.rest:
        passed, scanner.rest = passed + scanner.rest, b""
    return passed


class _ShellRun:
    """One command in a resident shell: the output loop, the deadline, the kill."""

    def __init__(self, shell: ResidentShell, ctx: HostContext, nonce: str) -> None:
        self.shell = shell
        self.channel = shell.channel
        self.ctx = ctx
        self.deadline = ctx.deadline_from(time.monotonic())
        self.start = FrameScanner(frame_prefix("start", nonce))
        self.out_end = FrameScanner(frame_prefix("end", nonce))
        self.err_end = FrameScanner(frame_prefix("end", nonce))
        self.out, self.err = LineSplitter(), LineSplitter()
        self._splitters: tuple[tuple[Stream, LineSplitter], ...] = (("stdout", self.out),
                                                                    ("stderr", self.err))
        self.passed = False  # some output of this command went on
        self.lost = False

    @property
    def ended(self) -> bool:
        """Both end frames arrived: everything the command wrote has been read."""
        return self.out_end.found and self.err_end.found

    def _pass(self, stream: Stream, data: bytes) -> None:
        splitter = self.out if stream == "stdout" else self.err
        block = splitter.feed(data)
        if data:
            self.passed = True
        if block:
            self.ctx.on_lines(stream, block, False)

    def drain(self) -> None:
        """Pass on what arrived on both streams, without the frames. What follows a stream's
        end frame (output of a process the command left in the background) passes on too,
        so both streams are always read to the last byte."""
        channel = self.channel
        try:
            while channel.recv_ready():
                data = _through(self.start, channel.recv(READ_MAX))
                self._pass("stdout", _through(self.out_end, data))
            while channel.recv_stderr_ready():
                self._pass("stderr", _through(self.err_end, channel.recv_stderr(READ_MAX)))
        except _ERRORS:
            self.lost = True

    def flush(self) -> None:
        """Pass on the last, unterminated lines of both streams."""
        if not self.out_end.found:
            self._pass("stdout", self.out_end.feed(self.start.flush()) + self.out_end.flush())
        if not self.err_end.found:
            self._pass("stderr", self.err_end.flush())
        for stream, splitter in self._splitters:
            rest = splitter.flush()
            if rest:
                self.ctx.on_lines(stream, rest, splitter.added_newline)

    def _check_time(self) -> float:
        """Seconds to wait at most; stops the command when cancelled or past its deadline."""
        left = time_left(self.ctx, self.deadline, self.stop)
        return SELECT_CAP if left is None else left

    def run(self) -> CommandResult:
        """Stream until both end frames arrived or the shell ended."""
        channel = self.channel
        while not self.ended:
            if _wait_readable(channel, self.ctx, self._check_time()):
                raise self.stop(FailureKind.INTERRUPTED, "interrupted")
            self.drain()
            if self.lost or ((channel.eof_received or channel.closed)
                             and not (channel.recv_ready() or channel.recv_stderr_ready())):
                break
        self.flush()
        if self.ended:
            return CommandResult(self.out_end.number or 0)
        self.shell.close()
        if self.lost or not self.shell.transport.is_active():
            raise HostJobError(FailureKind.DISCONNECT,
                               "connection lost while the command was running")
        if not self.start.found and not self.passed:
            raise ShellGone()
        return CommandResult(255, "the console's shell on the host ended during the command")

    def stop(self, kind: FailureKind, message: str) -> HostJobError:
        """Kill the command's process group, pass on what it printed, say why it stopped."""
        killed = self._kill()
        self.flush()
        if not self.ended:
            self.shell.close()  # its command is still there or it is gone: not reusable
        return HostJobError(kind, f"{message}; {killed}")

    def _await(self, seconds: float, done: bool = False) -> bool:
        """Drain for up to ``seconds`` until the start frame (``done``: the end) arrived."""
        end = time.monotonic() + seconds
        while not (self.ended if done else self.start.found) and time.monotonic() < end:
            if self.lost or self.channel.closed or self.channel.eof_received:
                return False
            select.select([self.channel.fileno()], [], [], 0.05)
            self.drain()
        return self.ended if done else self.start.found

    def _kill(self) -> str:
        transport = self.shell.transport
        if not self._await(ANNOUNCE_WAIT) or self.start.number is None \
                or not transport.is_active():
            return "no remote process id known, the console's shell closed"
        pgid = self.start.number
        try:
            _signal_group(transport, "TERM", pgid)
            if self._await(KILL_GRACE, done=True):
                return "remote process group terminated"
            _signal_group(transport, "KILL", pgid)
            self._await(KILL_GRACE, done=True)
            return "remote process group killed"
        except _ERRORS as exc:
            return f"could not kill the remote process ({exc})"
