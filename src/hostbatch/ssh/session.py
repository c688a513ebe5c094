"""One open, authenticated connection to one host: :class:`Session`, the SSH layer's interface.

The engine asks a :class:`~hostbatch.ssh.connect.Connector` for a session, performs actions on
it (``run``, ``put``, ``get``, ``scan_key``) and closes it; it never sees a paramiko object.
A session may carry several actions in turn (the console keeps one per host between
commands); each action gets a :class:`~hostbatch.ssh.context.HostContext` with its time
limit, the run's cancellation and the callbacks that report what happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import paramiko

from hostbatch.actions import GetFiles, PutFiles, RunCommand, RunInput
from hostbatch.errors import FailureKind
from hostbatch.inventory.model import HostSpec
from hostbatch.ssh import get as get_files
from hostbatch.ssh import put as put_files
from hostbatch.ssh import script
from hostbatch.ssh.command import CommandResult, run_command
from hostbatch.ssh.context import HostContext
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.keyscan import ScannedKey, read_host_key
from hostbatch.ssh.pipe import RemotePipe, open_pipe
from hostbatch.ssh.resident import ResidentShell, ShellGone
from hostbatch.ssh.sftp import TransferState
from hostbatch.ssh.shell import SudoMarkers, build_command, script_invocation
from hostbatch.ssh.sudo import SudoAuth

#: How often the reader thread of a lingering session wakes while nothing arrives (seconds).
LINGER_POLL = 1.0


@dataclass(frozen=True, slots=True)
class TransferTotals:
    """What a put or get moved: files landed and their bytes, what a sync left unchanged and
    deleted, and how (``stream`` or ``sftp``, with the reason for SFTP in ``note``)."""

    files: int
    bytes: int
    unchanged: int = 0
    deleted: int = 0
    method: str = "sftp"
    note: str = ""

    @classmethod
    def of(cls, state: TransferState) -> TransferTotals:
        """The totals a finished transfer's state counted."""
        return cls(state.files, state.bytes, state.unchanged, state.deleted, state.method,
                   state.note)


class Session:
    """An authenticated connection to ``spec`` (or, from ``Connector.open(key_only=True)``,
    one that stopped after the key exchange: only :meth:`scan_key` works on it)."""

    def __init__(self, spec: HostSpec, transport: paramiko.Transport, *,
                 release: Callable[[paramiko.Transport], None],
                 verdict: Callable[[paramiko.Transport], str | None]) -> None:
        self.spec = spec
        self._transport = transport
        self._release = release
        self._verdict = verdict
        self._closed = False
        #: The console's resident shell (see :meth:`keep_shell`): ``None`` not started yet,
        #: ``False`` this host keeps a channel per command.
        self._shell: ResidentShell | bool | None = False

    @contextmanager
    def _liveness(self) -> Iterator[None]:
        """Name the keepalive verdict when the connection died because the host went quiet
        (the command or transfer itself sees only a lost connection)."""
        try:
            yield
        except HostJobError:
            verdict = self._verdict(self._transport)
            if verdict is not None:
                raise HostJobError(FailureKind.DISCONNECT, verdict) from None
            raise
        except (EOFError, OSError, paramiko.SSHException):
            # A paramiko call that writes (a window ack, a channel close) on a connection
            # that just died raises; the connection is lost, not the program broken. While
            # the connection is up, the exception is a real bug and stays one.
            if self._transport.is_active():
                raise
            verdict = self._verdict(self._transport)
            raise HostJobError(FailureKind.DISCONNECT,
                               verdict or "connection lost during the job") from None

    def linger(self, poll: float = LINGER_POLL) -> None:
        """Prepare the connection to stay open between actions (the console's sessions).

        paramiko's reader thread wakes every 0.1 s to check its state; with hundreds of
        connections kept open that is thousands of wake-ups a second, each taking the GIL
        (measured with 500 idle hosts: 14% of a core idle, and 40% more worker CPU per
        command). Waking every ``poll`` seconds costs only a slower exit of that thread
        after :meth:`close`.
        """
        self._transport.sock.settimeout(poll)

    def keep_shell(self) -> None:
        """Run plain commands (no ``--sudo``, script or stdin) through one shell kept running
        on the host (:mod:`hostbatch.ssh.resident`), started at the first such command: no
        session fork and shell exec on the host, no channel per command. A host whose shell
        cannot do it keeps a channel per command."""
        if self._shell is False:
            self._shell = None

    def prepare_shell(self, ctx: HostContext) -> None:
        """Start the resident shell now, if :meth:`keep_shell` asked for one (the console
        does it while connecting, so that its first command does not wait for the shell).
        A failure here is not the host's: the first command tries again."""
        if self._shell is None:
            try:
                self._shell = ResidentShell.start(self._transport, ctx) or False
            except HostJobError:
                self._shell = None

    def _run_resident(self, command: str, ctx: HostContext) -> CommandResult | None:
        """Run ``command`` in the resident shell, starting one if needed (once more if the
        last one was found gone before the command began); ``None``: no usable shell."""
        for _ in range(2):
            if self._shell is None or (isinstance(self._shell, ResidentShell)
                                       and not self._shell.usable):
                self._shell = ResidentShell.start(self._transport, ctx) or False
            if not isinstance(self._shell, ResidentShell):
                return None
            try:
                return self._shell.run(command, ctx)
            except ShellGone:
                self._shell.close()
        return None

    @property
    def is_active(self) -> bool:
        """Whether the connection is still up."""
        return not self._closed and self._transport.is_active()

    def run(self, action: RunCommand, inputs: RunInput, ctx: HostContext) -> CommandResult:
        """Run a command (or upload, run and remove a script), streaming its lines to
        ``ctx.on_lines``; raise :class:`~hostbatch.ssh.errors.HostJobError` unless it ended."""
        sudo = None
        if action.sudo:
            sudo = SudoAuth(SudoMarkers.from_nonce(ctx.marker.rsplit("-", 1)[-1]),
                            self.spec.sudo_password)
        remote_script = None
        with self._liveness():
            if action.script is not None:
                remote_script = script.upload(self._transport, inputs.script or b"",
                                              action.script)
            try:
                body = (action.command if remote_script is None
                        else script_invocation(remote_script, action.script_args))
                command = build_command(body, action.env,
                                        sudo=None if sudo is None else sudo.markers)
                if self._shell is not False and sudo is None and remote_script is None \
                        and inputs.stdin is None:
                    result = self._run_resident(command, ctx)
                    if result is not None:
                        return result
                return run_command(self._transport, command, ctx, stdin=inputs.stdin,
                                   sudo=sudo)
            finally:
                if remote_script is not None:
                    script.remove(self._transport, remote_script)

    def put(self, action: PutFiles, ctx: HostContext) -> TransferTotals:
        """Copy the local sources to the host in order, each file landing atomically."""
        state = TransferState(ctx, action.limit_rate)
        with self._liveness():
            put_files.put_all(self._transport, action, state)
        return TransferTotals.of(state)

    def get(self, action: GetFiles, ctx: HostContext) -> TransferTotals:
        """Copy the remote paths into ``LOCAL/HOST/`` in order, each file landing atomically."""
        state = TransferState(ctx, action.limit_rate)
        with self._liveness():
            get_files.get_all(self._transport, action, state)
        return TransferTotals.of(state)

    def open_pipe(self, command: str, timeout: float, *,
                  forward_agent: bool = False) -> RemotePipe:
        """Start ``command`` with its stdin and stdout as a byte pipe (a relay's protocol);
        ``timeout`` bounds opening the channel; ``forward_agent`` forwards this machine's
        ssh-agent to the command for as long as the pipe is open."""
        return open_pipe(self._transport, command, timeout, forward_agent=forward_agent)

    def scan_key(self) -> ScannedKey:
        """The host key the server proved it holds during the key exchange."""
        return read_host_key(self._transport)

    def close(self) -> None:
        """Close the connection (and release the jump host it went through); idempotent."""
        if not self._closed:
            self._closed = True
            if isinstance(self._shell, ResidentShell):
                self._shell.close()
            self._release(self._transport)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
