"""Run one command on an open connection: stream its lines, enforce a deadline, kill it.

Output: stdout and stderr are drained together from one ``select`` loop (reading one stream to
its end first is paramiko's classic deadlock when the other fills its window), split into lines
with a bounded buffer, and handed to a callback batch by batch.

Killing: closing a channel without a pty leaves the remote command running, OpenSSH refuses
the RFC 4254 ``signal`` request for root in its default configuration, and a pty would merge
stderr into stdout. So the command is sent as ``echo MARKER $$; COMMAND``: sshd starts every
session's shell with ``setsid()``, so ``$$`` is the process group of the command and all its
children. To stop it (timeout, Ctrl-C), a second channel on the same connection runs
``kill -s TERM -- -PGID``, then ``KILL`` if it has not ended a second later. The marker line
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

from hostbatch.actions import Stream
from hostbatch.engine.remote import sudo_kill
from hostbatch.errors import FailureKind
from hostbatch.ssh.errors import HostFailure
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

#: Receives (stream, block of complete lines, whether a final newline was added to the block).
OnLines = Callable[[Stream, bytes, bool], None]


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


def wrap_command(command: str, marker: str) -> str:
    """The command line sent to the server: report the process group, then run ``command``."""
    return f"echo {marker} $$; {command}"


def run_command(
    transport: paramiko.Transport,
    command: str,
    *,
    marker: str,
    timeout: float | None,
    wake_fd: int,
    is_cancelled: Callable[[], bool],
    on_lines: OnLines,
    stdin: bytes | None = None,
    sudo: SudoAuth | None = None,
) -> CommandResult:
    """Run ``command`` and stream its output; raise :class:`HostFailure` unless it ended.

    ``wake_fd`` becomes readable when the run is cancelled, waking the loop at once.
    ``stdin`` is sent to the command, then EOF (``None``: EOF at once, as ``ssh -n``). With
    ``sudo``, ``command`` is a sudo invocation (:func:`hostbatch.engine.remote.sudo_wrap`):
    its password prompt is answered once, and stdin waits until the command has started.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        channel = transport.open_session(timeout=30)
        channel.exec_command(wrap_command(command, marker))
        if stdin is None and sudo is None:
            channel.shutdown_write()  # stdin is empty, as with ssh -n
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostFailure(FailureKind.DISCONNECT, f"could not start the command: {exc}") from None
    markers = _MarkerFilter(marker)
    out, err = LineSplitter(), LineSplitter()
    feeder = _StdinFeeder(channel, stdin or b"", open_=stdin is not None or sudo is not None)
    watch = sudo.watch() if sudo is not None else None

    def on_stderr(data: bytes) -> bytes:
        if watch is None:
            return data
        data, send_password = watch.feed(data)
        if send_password and sudo is not None:
            feeder.send_now(sudo.answer())
        if watch.failure is not None:
            feeder.close()  # EOF: sudo gives up at once instead of waiting for a password
        return data

    def drain() -> None:
        while channel.recv_ready():
            block = markers.filter(out.feed(channel.recv(65536)))
            if block:
                on_lines("stdout", block, False)
        while channel.recv_stderr_ready():
            block = err.feed(on_stderr(channel.recv_stderr(65536)))
            if block:
                on_lines("stderr", block, False)
        if watch is None or watch.started:
            feeder.pump()

    def stop(kind: FailureKind, message: str) -> HostFailure:
        killed = _kill(transport, channel, markers.pgid, drain, sudo)
        _flush(out, err, markers, on_lines)
        channel.close()
        return HostFailure(kind, f"{message}; {killed}")

    fd = channel.fileno()
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise stop(FailureKind.TIMEOUT, f"command timed out after {timeout:g}s")
        if not (channel.recv_ready() or channel.recv_stderr_ready() or channel.eof_received
                or channel.closed):
            # paramiko sets and clears the one pipe behind fileno() for both streams from two
            # threads without a lock, so a wake-up can be lost: never sleep unbounded on it.
            wait = SELECT_CAP if left is None else min(left, SELECT_CAP)
            if feeder.waiting and (watch is None or watch.started):
                wait = min(wait, feeder.poll_interval)
            readable, _, _ = select.select([fd, wake_fd], [], [], wait)
            if wake_fd in readable:
                raise stop(FailureKind.INTERRUPTED, "interrupted")
        if is_cancelled():
            raise stop(FailureKind.INTERRUPTED, "interrupted")
        drain()
        ended = channel.eof_received or channel.closed
        if ended and not (channel.recv_ready() or channel.recv_stderr_ready()):
            break
    _flush(out, err, markers, on_lines)
    # The exit status may come just after EOF; wait for it (or the close) within the deadline.
    while not channel.exit_status_ready() and not channel.closed:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise stop(FailureKind.TIMEOUT, f"command timed out after {timeout:g}s")
        if is_cancelled():
            raise stop(FailureKind.INTERRUPTED, "interrupted")
        channel.status_event.wait(0.05 if left is None else min(0.05, left))
    status = channel.exit_status if channel.exit_status_ready() else -1
    lost = not channel.eof_received or not transport.is_active()
    channel.close()
    if watch is not None and not watch.started and not lost:
        raise HostFailure(FailureKind.AUTH, watch.refusal())
    if status >= 0:
        return CommandResult(status)
    if lost:
        raise HostFailure(FailureKind.DISCONNECT, "connection lost while the command was running")
    return CommandResult(255, "ended without an exit status (killed by a signal)")


def _flush(out: LineSplitter, err: LineSplitter, markers: _MarkerFilter, on_lines: OnLines) -> None:
    rest = markers.filter(out.flush())
    if rest:
        on_lines("stdout", rest, out.added_newline)
    rest = err.flush()
    if rest:
        on_lines("stderr", rest, err.added_newline)


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
            _run_quietly(transport, f"sh -c 'kill -s {name} -- -{pgid}' >/dev/null 2>&1", 2.0)
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
