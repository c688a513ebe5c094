"""The controller's side of a relay: one worker thread drives one :class:`ShardJob`.

It connects to the shard's first relay as to any host, starts its ``relay_command``,
exchanges hellos, sends the job and re-emits the relay's events as the run's own. The
failure rules (docs/relays.md):

* a relay that cannot be reached or started (or speaks another protocol) before the job was
  sent: the next relay of the route is tried; with none left, every host of the shard ends
  as ``relay`` with every relay's reason ("relay relay1 unreachable: ...");
* a relay lost once the job was sent (connection dropped, process killed, silent for
  :data:`~hostbatch.relay.protocol.HEARTBEAT_LOST` seconds): every host without a terminal
  event ends as ``relay`` "outcome unknown: relay relay1 lost after 12.3s", and is never
  run again;
* the run's cancellation (Ctrl-C, SIGTERM, --timeout of the whole run) is sent to the relay,
  which kills its remote commands and reports each host as usual.

A get's files come back before each host's terminal event and land through
:class:`~hostbatch.relay.landing.Landing`; a lost relay leaves no partial file.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hostbatch.actions import GetFiles, PutFiles, RunInput
from hostbatch.engine.events import (
    Event,
    HostFailed,
    HostKeyLearned,
    TerminalEvent,
)
from hostbatch.engine.jobs import ShardJob
from hostbatch.errors import FailureKind
from hostbatch.inventory.model import HostSpec
from hostbatch.relay import protocol
from hostbatch.relay.hostkeys import controller_event, shard_lines
from hostbatch.relay.landing import Landing
from hostbatch.relay.staging import send_source
from hostbatch.secrets import redact
from hostbatch.settings import RunSettings
from hostbatch.ssh.connect import Connector
from hostbatch.ssh.errors import HostJobError
from hostbatch.ssh.pipe import RemotePipe
from hostbatch.ssh.session import Session

#: Seconds a started relay command has to say hello (it imports hostbatch first).
HELLO_TIMEOUT = 30.0
#: Seconds the relay gets to exit after ``done`` before its connection is closed anyway.
DRAIN = 2.0
#: Seconds of each wait for the relay's lines: how often cancellation and heartbeats are seen.
TICK = 0.5

Emit = Callable[[Event], None]


class _StartFailed(Exception):
    """The relay could not be used; the next one of the route may be."""


@dataclass
class ShardDriver:
    """Runs one shard through the first relay of its route that starts."""

    job: ShardJob
    connector: Connector
    emit: Emit
    settings: RunSettings
    inputs: RunInput
    home: str
    _finished: set[str] = field(default_factory=set)
    _landing: Landing | None = None

    @property
    def cancelled(self) -> bool:
        """Whether the run was cancelled."""
        return self.connector.cancelled.is_set()

    def run(self) -> None:
        """Drive the shard; every host gets exactly one terminal event (or, after a cancel
        before any relay started, none: the pool reports it as never started). A bug costs
        this shard's unfinished hosts an ``internal`` failure, never the whole run."""
        try:
            self._run()
        except Exception as exc:
            if self._landing is not None:
                self._landing.abort()
            message = redact(f"internal error: {type(exc).__name__}: {exc}")
            for spec in self.job.hosts:
                self._terminal(HostFailed(spec.name, FailureKind.INTERNAL, message))

    def _run(self) -> None:
        reasons: list[str] = []
        for relay in self.job.relays:
            if self.cancelled:
                return
            session: Session | None = None
            pipe: RemotePipe | None = None
            try:
                session, pipe, reader = self._start(relay)
                self._drive(relay, pipe, reader)
                return
            except _StartFailed as failure:
                reasons.append(redact(str(failure)))
            finally:
                if pipe is not None:
                    pipe.close()
                if session is not None:
                    session.close()
        if self.cancelled:
            return
        message = "; ".join(reasons)
        for spec in self.job.hosts:
            self._terminal(HostFailed(spec.name, FailureKind.RELAY, message))

    # --- starting ---------------------------------------------------------------------
    def _start(self, relay: HostSpec) -> tuple[Session, RemotePipe, protocol.LineReader]:
        """A session to ``relay`` running its relay command, hellos exchanged."""

        def learn(path: str, line: str, fingerprint: str) -> None:
            self.emit(HostKeyLearned(relay.name, path, line, fingerprint))

        try:
            session = self.connector.open(relay, learn)
        except HostJobError as failure:
            failure = self.connector.blame(relay, failure)
            raise _StartFailed(f"relay {relay.name} unreachable: {failure.message}") from None
        try:
            pipe = session.open_pipe(relay.relay_command, relay.connect_timeout,
                                     forward_agent=relay.forward_agent)
            pipe.send(protocol.dumps(protocol.Hello()), HELLO_TIMEOUT)
            reader = protocol.LineReader()
            theirs = self._hello(relay, pipe, reader)
        except HostJobError as failure:
            session.close()
            raise _StartFailed(f"relay {relay.name} unreachable: {failure.message}") from None
        except protocol.ProtocolError as exc:
            session.close()
            raise _StartFailed(f"relay {relay.name} failed: {exc}") from None
        except _StartFailed:
            session.close()
            raise
        mismatch = protocol.Hello().mismatch(theirs, relay.name)
        if mismatch is not None:
            pipe.close()
            session.close()
            raise _StartFailed(mismatch)
        return session, pipe, reader

    def _hello(self, relay: HostSpec, pipe: RemotePipe,
               reader: protocol.LineReader) -> protocol.Hello:
        """The relay's hello, read within :data:`HELLO_TIMEOUT`."""
        deadline = time.monotonic() + HELLO_TIMEOUT
        while True:
            line = reader.pending()
            if line is not None:
                try:
                    message = protocol.loads(line)
                except protocol.ProtocolError:
                    continue  # a login banner or a shell's noise before the relay starts
                if isinstance(message, protocol.Hello):
                    return message
                if isinstance(message, protocol.RelayFailed):
                    raise _StartFailed(f"relay {relay.name} failed: {message.message}")
                continue
            if reader.eof:
                tail = pipe.stderr_tail()
                raise _StartFailed(f"relay {relay.name} unreachable: {relay.relay_command!r} "
                                   f"ended before its hello{': ' + tail if tail else ''}")
            if self.cancelled or time.monotonic() > deadline:
                raise _StartFailed(f"relay {relay.name} unreachable: no hello from "
                                   f"{relay.relay_command!r} in {HELLO_TIMEOUT:.0f}s")
            self._read(pipe, reader)

    @staticmethod
    def _read(pipe: RemotePipe, reader: protocol.LineReader) -> None:
        """Wait up to :data:`TICK` for the relay's output and hand it to ``reader``."""
        select.select([pipe], [], [], TICK)
        data = pipe.recv()
        if data is not None:
            reader.feed(data)

    # --- running ----------------------------------------------------------------------
    def _job(self, relay: HostSpec) -> protocol.RelayJob:
        """The job for ``relay``: the shard with the relay's own ``-f`` (``relay_forks``)."""
        relay_settings = replace(self.settings, forks=relay.relay_forks, workers=None)
        return protocol.RelayJob(self.job.action, self.job.hosts, self.inputs,
                                 relay_settings, shard_lines(self.job.hosts, self.home))

    def _drive(self, relay: HostSpec, pipe: RemotePipe, reader: protocol.LineReader) -> None:
        """Send the job, re-emit the relay's events until ``done``; a lost relay leaves its
        unfinished hosts with an unknown outcome."""
        job = self._job(relay)
        started = time.monotonic()
        link = _Link(pipe, started)
        if isinstance(job.action, GetFiles):
            self._landing = Landing.of(job.action, self.job.names)
        try:
            if isinstance(job.action, PutFiles):  # the source goes to the relay once
                send_source(job.action, lambda data: pipe.send(data, protocol.HEARTBEAT_LOST))
            pipe.send(protocol.dumps(job), protocol.HEARTBEAT_LOST)
            if self._follow(relay, link, reader):
                return
        except (HostJobError, protocol.ProtocolError):
            pass  # lost: what the relay's hosts did is unknown
        if self._landing is not None:
            self._landing.abort()
        self._lost(relay, time.monotonic() - started)

    def _follow(self, relay: HostSpec, link: _Link, reader: protocol.LineReader) -> bool:
        """Re-emit the relay's events; True once it said ``done``, False when it was lost
        (:class:`~hostbatch.relay.protocol.ProtocolError` too: a peer that says nonsense)."""
        hosts = {spec.name: spec for spec in self.job.hosts}
        cancel_sent = False
        while True:
            message = reader.pending_message()
            if message is None:
                if reader.eof or link.silent():
                    return False
                if self.cancelled and not cancel_sent:
                    cancel_sent = True
                    link.pipe.send(protocol.dumps(protocol.Cancel()), protocol.HEARTBEAT_LOST)
                link.beat()
                self._read(link.pipe, reader)
                continue
            link.heard()
            if isinstance(message, protocol.Done):
                self._drain(link.pipe, reader)
                return True
            if isinstance(message, protocol.RelayFailed):
                return False
            if isinstance(message, protocol.GotEntry | protocol.FileChunk | protocol.GotEnd):
                if self._landing is None:
                    raise protocol.ProtocolError("files from a relay outside a get")
                self._landing.take(message)
            elif isinstance(message, TerminalEvent):
                self._terminal(message if self._landing is None
                               else self._landing.finish(message))
            elif isinstance(message, HostKeyLearned):
                self.emit(controller_event(message, hosts, self.home))
            elif not isinstance(message, protocol.Heartbeat | protocol.Hello
                                | protocol.RelayJob | protocol.Cancel | protocol.ChunkHeader):
                self.emit(message)

    def _drain(self, pipe: RemotePipe, reader: protocol.LineReader) -> None:
        """After ``done``: let the relay exit and close its side first (up to
        :data:`DRAIN`), so neither end resets a connection with bytes in flight."""
        pipe.close_stdin()
        deadline = time.monotonic() + DRAIN
        while not reader.eof and time.monotonic() < deadline:
            self._read(pipe, reader)
            while reader.pending() is not None:
                pass  # only heartbeats can follow done

    def _terminal(self, event: TerminalEvent) -> None:
        if event.host not in self._finished:
            self._finished.add(event.host)
            self.emit(event)

    def _lost(self, relay: HostSpec, elapsed: float) -> None:
        for spec in self.job.hosts:
            self._terminal(HostFailed(
                spec.name, FailureKind.RELAY,
                f"outcome unknown: relay {relay.name} lost after {elapsed:.1f}s", elapsed))


@dataclass
class _Link:
    """Heartbeats on one relay's pipe: sent every interval, and the time of the last line."""

    pipe: RemotePipe
    last_heard: float
    last_sent: float = field(default_factory=time.monotonic)

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def silent(self) -> bool:
        """Whether the relay has said nothing for too long (frozen, or its host gone)."""
        return time.monotonic() - self.last_heard > protocol.HEARTBEAT_LOST

    def beat(self) -> None:
        if time.monotonic() - self.last_sent >= protocol.HEARTBEAT_INTERVAL:
            self.last_sent = time.monotonic()
            self.pipe.send(protocol.dumps(protocol.Heartbeat()), protocol.HEARTBEAT_LOST)
