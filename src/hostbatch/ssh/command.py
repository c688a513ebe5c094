"""Run one command on an open connection: stream its lines, enforce a deadline, kill it.

Output: stdout and stderr are drained together from one ``select`` loop (reading one stream to
its end first is paramiko's classic deadlock when the other fills its window), split into lines
with a bounded buffer, and handed to a callback batch by batch.

Killing: closing a channel without a pty leaves the remote command running, OpenSSH refuses
the RFC 4254 ``signal`` request for root in its default configuration, and a pty would merge
stderr into stdout. So the command goes through the kill wrapper of :mod:`hostbatch.ssh.shell`
(``echo MARKER $$; COMMAND``: ``$$`` is the command's process group). To stop it (timeout,
Ctrl-C), a second channel on the same connection runs ``kill -s TERM -- -PGID``, then
``KILL`` if it has not ended a second later. The marker line
(with a per-run random nonce) is removed from the output.

Stdin: empty (EOF at once, as ``ssh -n``) unless the run broadcasts one; then it is sent as
the channel's window allows from the same loop, so a command that writes before it reads
cannot deadlock with us. ``--sudo``: sudo's password prompt on stderr is answered there
(:mod:`hostbatch.ssh.sudo`), and the kill goes through ``sudo kill``, since the processes
belong to root.
"""

from __future__ import annotations

import contextlib
import re
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from hostbatch.errors import FailureKind
from hostbatch.ssh.context import HostContext
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.shell import kill_group, sudo_kill, wrap_command
from hostbatch.ssh.sudo import SudoAuth

#: A line longer than this is passed on in pieces, so memory per host stays bounded.
MAX_LINE = 1024 * 1024
#: How many leading stdout lines may precede the marker (e.g. printed by a shell rc file).
MARKER_SEARCH_LINES = 64
KILL_GRACE = 1.0
#: Bytes of stdin offered per send; paramiko sends at most one packet (32 KiB) at a time.
STDIN_CHUNK = 64 * 1024
#: First sleep while stdin waits for window space (paramiko has no descriptor for
#: writability); it doubles while the command reads nothing, up to SELECT_CAP.
STDIN_POLL = 0.01
#: Longest sleep in the output loop between checks of the channel's own state.
SELECT_CAP = 0.5
#: Window of a command's channel: what a host may send ahead of what we have read. It is what
#: bounds a worker's memory on output-heavy runs (every host in flight may fill it while the
#: parent is busy), so it is smaller than the transport's default; 256 KiB per host still
#: outruns a Python client on loopback (measured: bench/results-run-issue10.md).
COMMAND_WINDOW = 256 * 1024
#: Unread bytes after which the window is reopened: half of it, not paramiko's tenth. Each
#: reopening is a packet to encrypt and send, and a wake-up of the server; acknowledging every
#: 26 KiB cost ~5,000 packets per 100 hosts x 1 MB. The server still has half the window
#: (128 KiB) to send while the acknowledgement travels.
WINDOW_ACK = COMMAND_WINDOW // 2
#: Bytes taken from the channel per read. Larger reads were measured to cost memory: a
#: worker's threads then hold and free window-sized buffers, which the allocator keeps.
READ_MAX = 64 * 1024


def time_left(ctx: HostContext, deadline: float | None,
              stop: Callable[[FailureKind, str], HostJobError]) -> float | None:
    """Seconds a running command may still take (``None``: no limit).

    Raises what ``stop`` (the command's kill-and-report) returns once the job was cancelled or
    its deadline has passed, so every command loop ends the same way on Ctrl-C and --timeout.
    """
    if ctx.is_cancelled:
        raise stop(FailureKind.INTERRUPTED, "interrupted")
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise stop(FailureKind.TIMEOUT, f"command timed out after {ctx.timeout:g}s")
    return left


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command ended: ``exit_status`` 255 with a ``note`` means ended by a signal."""

    exit_status: int
    note: str = ""


def _cut_long_lines(block: bytes) -> bytes:
    """Cut every line of ``block`` longer than :data:`MAX_LINE` every ``MAX_LINE`` bytes."""
    pieces = [line[start:start + MAX_LINE] for line in block[:-1].split(b"\n")
              for start in range(0, len(line), MAX_LINE) or (0,)]
    return b"\n".join(pieces) + b"\n"


class LineSplitter:
    """Cuts a byte stream into blocks of complete lines, holding at most :data:`MAX_LINE`
    bytes of an unfinished line.

    Blocks rather than one object per line: a chatty host prints a million lines, and per-line
    objects would cost more CPU (split, pickle, render) than the SSH itself.
    """

    def __init__(self) -> None:
        self._partial = b""
        #: Whether :meth:`flush` added the newline that ends the last line.
        self.added_newline = False

    def feed(self, data: bytes) -> bytes:
        """The complete lines (each ending in a newline) that ``data`` finishes, or ``b""``.

        Lines longer than :data:`MAX_LINE` come out in pieces cut every ``MAX_LINE`` bytes
        from the line's start, wherever the network happened to split the data.
        """
        buffer = self._partial + data
        end = buffer.rfind(b"\n") + 1
        block, self._partial = buffer[:end], buffer[end:]
        if len(block) > MAX_LINE:
            block = _cut_long_lines(block)
        if len(self._partial) > MAX_LINE:
            keep = len(self._partial) % MAX_LINE or MAX_LINE
            block += _cut_long_lines(self._partial[:-keep] + b"\n")
            self._partial = self._partial[-keep:]
        return block

    def flush(self) -> bytes:
        """The final line without a newline (given one), if any."""
        rest, self._partial = self._partial, b""
        self.added_newline = bool(rest)
        return rest + b"\n" if rest else b""


class _MarkerFilter:
    """Finds and removes the ``MARKER PGID`` line the wrapper prints, remembering the PGID."""

    def __init__(self, marker: str) -> None:
        self._pattern = re.compile(rb"(?m)^" + re.escape(marker.encode()) + rb" (\d+)\n")
        self._lines_left = MARKER_SEARCH_LINES
        self.pgid: int | None = None

    def filter(self, block: bytes) -> bytes:
        """``block`` without the marker line, while the marker is still expected."""
        if self._lines_left <= 0 or not block:
            return block
        match = self._pattern.search(block)
        if match and block.count(b"\n", 0, match.start()) < self._lines_left:
            self.pgid = int(match.group(1))
            self._lines_left = 0
            return block[:match.start()] + block[match.end():]
        self._lines_left -= block.count(b"\n")
        return block


class _CommandRun:
    """One command on one channel: the output loop, the deadline, the kill (see the module)."""

    def __init__(self, transport: paramiko.Transport, channel: paramiko.Channel,
                 ctx: HostContext, stdin: bytes | None, sudo: SudoAuth | None) -> None:
        self.transport = transport
        self.channel = channel
        self.ctx = ctx
        self.sudo = sudo
        self.deadline = ctx.deadline_from(time.monotonic())
        self.markers = _MarkerFilter(ctx.marker)
        self.out, self.err = LineSplitter(), LineSplitter()
        self.feeder = _StdinFeeder(channel, stdin or b"",
                                   open_=stdin is not None or sudo is not None)
        self.watch = sudo.watch() if sudo is not None else None
        self.lost = False

    def _on_stderr(self, data: bytes) -> bytes:
        if self.watch is None:
            return data
        data, send_password = self.watch.feed(data)
        if send_password and self.sudo is not None:
            self.feeder.send_now(self.sudo.answer())
        if self.watch.failure is not None:
            self.feeder.close()  # EOF: sudo gives up at once instead of waiting for a password
        return data

    def drain(self) -> None:
        """Pass on every complete line received so far; feed stdin as the window allows."""
        channel, on_lines = self.channel, self.ctx.on_lines
        try:
            while channel.recv_ready():
                block = self.markers.filter(self.out.feed(channel.recv(READ_MAX)))
                if block:
                    on_lines("stdout", block, False)
            while channel.recv_stderr_ready():
                block = self.err.feed(self._on_stderr(channel.recv_stderr(READ_MAX)))
                if block:
                    on_lines("stderr", block, False)
        except (OSError, EOFError, paramiko.SSHException):
            # recv() acknowledges the window it frees; on a connection that just died the
            # acknowledgement fails (the block it read goes with it): the connection is lost.
            self.lost = True
            return
        if self.watch is None or self.watch.started:
            self.feeder.pump()

    def stop(self, kind: FailureKind, message: str) -> HostJobError:
        """Kill the remote command, pass on what it printed, and say why it was stopped."""
        killed = _kill(self.transport, self.channel, self.markers.pgid, self.drain, self.sudo)
        self.flush()
        _close(self.channel)
        return HostJobError(kind, f"{message}; {killed}")

    def flush(self) -> None:
        """Pass on the last, unterminated lines of both streams."""
        rest = self.markers.filter(self.out.flush())
        if rest:
            self.ctx.on_lines("stdout", rest, self.out.added_newline)
        rest = self.err.flush()
        if rest:
            self.ctx.on_lines("stderr", rest, self.err.added_newline)

    def _time_left(self) -> float | None:
        """Seconds to the deadline, or ``None``; stops the command once it has passed."""
        return time_left(self.ctx, self.deadline, self.stop)

    def _wait_for_data(self, left: float | None) -> None:
        channel = self.channel
        if channel.recv_ready() or channel.recv_stderr_ready() or channel.eof_received \
                or channel.closed:
            return
        # paramiko sets and clears the one pipe behind fileno() for both streams from two
        # threads without a lock, so a wake-up can be lost: never sleep unbounded on it.
        wait = SELECT_CAP if left is None else min(left, SELECT_CAP)
        if self.feeder.waiting and (self.watch is None or self.watch.started):
            wait = min(wait, self.feeder.poll_interval)
        watched = [channel.fileno()]
        if self.ctx.wake_fd is not None:
            watched.append(self.ctx.wake_fd)
        readable, _, _ = select.select(watched, [], [], wait)
        if self.ctx.wake_fd in readable:
            raise self.stop(FailureKind.INTERRUPTED, "interrupted")

    def stream(self) -> None:
        """Pass on output until both streams ended."""
        channel = self.channel
        while True:
            self._wait_for_data(self._time_left())
            if self.ctx.is_cancelled:
                raise self.stop(FailureKind.INTERRUPTED, "interrupted")
            self.drain()
            if self.lost:
                break
            ended = channel.eof_received or channel.closed
            if ended and not (channel.recv_ready() or channel.recv_stderr_ready()):
                break
        self.flush()

    def finish(self) -> CommandResult:
        """Wait for the exit status (it may come just after EOF) and say how it ended."""
        channel = self.channel
        while not self.lost and not channel.exit_status_ready() and not channel.closed:
            left = self._time_left()
            channel.status_event.wait(0.05 if left is None else min(0.05, left))
        status = channel.exit_status if channel.exit_status_ready() and not self.lost else -1
        lost = self.lost or not channel.eof_received or not self.transport.is_active()
        _close(channel)
        if self.watch is not None and not self.watch.started and not lost:
            raise HostJobError(FailureKind.AUTH, self.watch.refusal())
        if status >= 0:
            return CommandResult(status)
        if lost:
            raise HostJobError(FailureKind.DISCONNECT,
                               "connection lost while the command was running")
        return CommandResult(255, "ended without an exit status (killed by a signal)")


def run_command(transport: paramiko.Transport, command: str, ctx: HostContext, *,
                stdin: bytes | None = None, sudo: SudoAuth | None = None) -> CommandResult:
    """Run ``command`` and stream its output; raise :class:`HostJobError` unless it ended.

    ``stdin`` is sent to the command, then EOF (``None``: EOF at once, as ``ssh -n``). With
    ``sudo``, ``command`` is a sudo invocation (:func:`hostbatch.ssh.shell.sudo_wrap`): its
    password prompt is answered once, and stdin waits until the command has started.
    """
    try:
        channel = transport.open_session(timeout=30, window_size=COMMAND_WINDOW)
        channel.in_window_threshold = WINDOW_ACK  # paramiko's own attribute (1/10 by default)
        channel.exec_command(wrap_command(command, ctx.marker))
        if stdin is None and sudo is None:
            channel.shutdown_write()  # stdin is empty, as with ssh -n
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostJobError(FailureKind.DISCONNECT,
                           f"could not start the command: {exc}") from None
    run = _CommandRun(transport, channel, ctx, stdin, sudo)
    run.stream()
    return run.finish()


def _close(channel: paramiko.Channel) -> None:
    """Close ``channel``; on a connection that just died, sending the close fails, harmlessly."""
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        channel.close()


class _StdinFeeder:
    """Sends a command's stdin as the channel's window allows, never blocking the output loop
    (a command that writes before it reads would otherwise deadlock with us), then EOF."""

    def __init__(self, channel: paramiko.Channel, data: bytes, *, open_: bool) -> None:
        self.channel = channel
        self.data = data
        self.sent = 0
        self.open = open_
        self._stalls = 0

    @property
    def waiting(self) -> bool:
        """Stdin bytes remain to be sent."""
        return self.open and self.sent < len(self.data)

    @property
    def poll_interval(self) -> float:
        """How long to sleep before trying again: short while the command reads, longer
        while it does not (a command that never reads stdin must not cost a busy loop)."""
        return min(SELECT_CAP, STDIN_POLL * float(1 << min(self._stalls, 6)))

    def send_now(self, data: bytes) -> None:
        """Send a few bytes ahead of the rest (sudo's password line)."""
        if self.open:
            try:
                self.channel.sendall(data)
            except (OSError, EOFError, paramiko.SSHException):
                self.open = False

    def pump(self) -> None:
        """Send what the window takes; at the end, send EOF."""
        if not self.open:
            return
        before = self.sent
        try:
            while self.waiting and self.channel.send_ready():
                self.sent += self.channel.send(self.data[self.sent:self.sent + STDIN_CHUNK])
        except (OSError, EOFError, paramiko.SSHException):
            self.open = False  # the command closed its stdin or ended: the rest is unwanted
        self._stalls = 0 if self.sent > before else self._stalls + 1
        if self.open and self.sent >= len(self.data):
            self.close()

    def close(self) -> None:
        """Send EOF (once)."""
        if self.open:
            self.open = False
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self.channel.shutdown_write()


def _run_quietly(transport: paramiko.Transport, command: str, wait: float,
                 sudo: SudoAuth | None = None) -> None:
    """Run a short helper command on a second channel, waiting at most ``wait`` seconds;
    with ``sudo``, answer its password prompt."""
    channel = transport.open_session(timeout=wait)
    try:
        channel.exec_command(command)
        if sudo is None or sudo.password is None:
            channel.shutdown_write()
            channel.status_event.wait(wait)
            return
        watch = sudo.watch()
        end = time.monotonic() + wait
        while not channel.status_event.is_set() and time.monotonic() < end:
            while channel.recv_stderr_ready():
                _, send_password = watch.feed(channel.recv_stderr(4096))
                if send_password:
                    channel.sendall(sudo.answer())
                    channel.shutdown_write()
            channel.status_event.wait(0.02)
    finally:
        channel.close()


def _kill(transport: paramiko.Transport, channel: paramiko.Channel, pgid: int | None,
          drain: Callable[[], None], sudo: SudoAuth | None = None) -> str:
    """Make the remote command and its children die; return what was done, for the message.

    A ``--sudo`` command's processes belong to root, so they are signalled through sudo.
    """
    if pgid is None or not transport.is_active():
        return "no remote process id known, channel closed"

    def signal_group(name: str) -> None:
        if sudo is None:
            _run_quietly(transport, kill_group(name, pgid), 2.0)
        else:
            _run_quietly(transport, sudo_kill(name, pgid, sudo.markers), 5.0, sudo)

    try:
        signal_group("TERM")
        end = time.monotonic() + KILL_GRACE
        while not channel.closed and not channel.exit_status_ready() and time.monotonic() < end:
            drain()
            channel.status_event.wait(0.05)
        if channel.closed or channel.exit_status_ready():
            return "remote process group terminated"
        signal_group("KILL")
        return "remote process group killed"
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return f"could not kill the remote process ({exc})"
