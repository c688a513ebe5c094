"""The relay protocol: one JSON object per line over the relay command's stdin and stdout.

Both sides first send a :class:`Hello` naming the protocol and package versions; a peer of
another protocol is refused with one line naming both versions (never pickle, never a guess:
clush's gateways broke between versions on exactly that). Then the controller sends one
:class:`RelayJob`; the relay answers with the engine's own events (:mod:`hostbatch.engine.wire`)
as they happen and ends with :class:`Done`. A get's files come back before each host's
terminal event as :class:`GotEntry`, raw :class:`FileChunk` frames and :class:`GotEnd`
(:mod:`hostbatch.relay.fetch`, :mod:`hostbatch.relay.landing`). Both sides send
:class:`Heartbeat` every :data:`HEARTBEAT_INTERVAL` seconds; a side that hears nothing for
:data:`HEARTBEAT_LOST` seconds gives the other up. The controller may send :class:`Cancel`
(Ctrl-C, SIGTERM); closing the relay's stdin does the same.

Secrets (passwords, sudo passwords) are written only into a job, which travels only inside
the SSH channel to the relay.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from hostbatch.actions import Action, RunInput
from hostbatch.engine import wire
from hostbatch.engine.events import Event
from hostbatch.inventory.model import HostSpec
from hostbatch.settings import RunSettings

#: Bumped whenever a message's meaning changes; peers of another protocol are refused.
#: 2: a get's files come back (``got``, ``got_end``, chunks from the relay).
PROTOCOL_VERSION = 2
#: The ``hello`` field that marks the first line of each side.
MAGIC = "hostbatch-relay"
#: Seconds between heartbeats, each way.
HEARTBEAT_INTERVAL = 5.0
#: Seconds without a line from the peer after which it is given up (frozen, or gone).
HEARTBEAT_LOST = 30.0
#: The longest line either side accepts (a job carries the script; events carry output).
MAX_LINE = 256 * 1024 * 1024


def package_version() -> str:
    """This hostbatch's version, as ``--version`` shows it: read from the package, always
    loaded before any of its modules (asking the installed distribution's metadata cost
    25 ms of CPU per relay connection; importing the package here would be an upward
    import)."""
    return str(getattr(sys.modules.get("hostbatch"), "__version__", "unknown"))


class ProtocolError(wire.WireError):
    """A line that is not a message of this protocol, or a peer of another protocol."""


@dataclass(frozen=True, slots=True)
class Hello:
    """The first line of each side."""

    protocol: int = PROTOCOL_VERSION
    version: str = field(default_factory=package_version)

    def mismatch(self, peer: Hello, peer_name: str) -> str | None:
        """The one-line error when ``peer`` speaks another protocol, else None."""
        if peer.protocol == self.protocol:
            return None
        return (f"relay {peer_name} speaks relay protocol {peer.protocol} (hostbatch "
                f"{peer.version}), this controller protocol {self.protocol} (hostbatch "
                f"{self.version}): install the same hostbatch version on both")


@dataclass(frozen=True, slots=True)
class RelayJob:
    """What a relay runs: ``action`` on ``hosts`` (final specs, reached directly from the
    relay), with the run's ``inputs``, its ``settings`` (``forks`` is the relay's own
    ``relay_forks``) and the known_hosts lines of the shard's hosts."""

    action: Action
    hosts: tuple[HostSpec, ...]
    inputs: RunInput = field(default_factory=RunInput)
    settings: RunSettings = field(default_factory=RunSettings)
    known_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FileChunk:
    """Controller to relay, before a put's job: the next bytes of the source file at
    ``relpath`` (``""``: the source itself). Every file of the put is sent once per relay,
    whatever the number of its hosts; the first chunk of a file (possibly empty) creates it.

    On the wire it is the only message that is not one line: a JSON header line giving the
    ``size``, then exactly that many raw bytes (base64 would add a third to a put's egress);
    :func:`read_message` reads both."""

    relpath: str
    data: bytes
    first: bool = False


@dataclass(frozen=True, slots=True)
class GotEntry:
    """Relay to controller, during a get: one entry of a host's fetched files, at ``relpath``
    below ``LOCAL/HOST/``; parents come before children. A file's data follows as
    :class:`FileChunk` frames of the same ``relpath`` (``size`` bytes in all), then
    :class:`GotEnd`."""

    host: str
    relpath: str
    kind: Literal["file", "dir", "link"]
    mode: int = 0o644
    mtime: float = 0.0
    atime: float = 0.0
    size: int = 0
    link_target: str = ""


@dataclass(frozen=True, slots=True)
class GotEnd:
    """Relay to controller: the file of the last :class:`GotEntry` is complete; ``sha256`` of
    its bytes as the relay sent them (checked by the controller with ``--verify``)."""

    host: str
    relpath: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """I am alive (both ways)."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Controller to relay: stop starting hosts and kill running commands."""


@dataclass(frozen=True, slots=True)
class Done:
    """Relay to controller: every host of the job has had its terminal event."""


@dataclass(frozen=True, slots=True)
class RelayFailed:
    """Relay to controller: the job could not be run at all (``message`` says why)."""

    message: str


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """The header line of a :class:`FileChunk`, as :func:`loads` sees it alone."""

    relpath: str
    size: int
    first: bool


Message = (Hello | RelayJob | FileChunk | ChunkHeader | GotEntry | GotEnd | Heartbeat | Cancel
           | Done | RelayFailed | Event)

_SETTINGS = ("forks", "retries", "connect_timeout", "command_timeout", "accept_new", "workers")
_SIMPLE: dict[str, type[Heartbeat | Cancel | Done]] = {
    "heartbeat": Heartbeat, "cancel": Cancel, "done": Done}


def dumps(message: Message) -> bytes:
    """One message as a line (JSON, ending in a newline)."""
    body: dict[str, Any]
    if isinstance(message, Hello):
        body = {"hello": MAGIC, "protocol": message.protocol, "version": message.version}
    elif isinstance(message, RelayJob):
        body = {"v": wire.WIRE_VERSION, "type": "job",
                "action": wire.encode_value(message.action),
                "hosts": wire.encode_value(message.hosts, secrets=True),
                "inputs": wire.encode_value(message.inputs),
                "settings": {name: getattr(message.settings, name) for name in _SETTINGS},
                "known_hosts": list(message.known_hosts)}
    elif isinstance(message, FileChunk):
        header = {"v": wire.WIRE_VERSION, "type": "chunk", "path": message.relpath,
                  "first": message.first, "size": len(message.data)}
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + message.data
    elif isinstance(message, RelayFailed):
        body = {"v": wire.WIRE_VERSION, "type": "failed", "message": message.message}
    elif isinstance(message, GotEntry):
        body = {"v": wire.WIRE_VERSION, "type": "got", "host": message.host,
                "path": message.relpath, "kind": message.kind, "mode": message.mode,
                "mtime": message.mtime, "atime": message.atime, "size": message.size,
                "target": message.link_target}
    elif isinstance(message, GotEnd):
        body = {"v": wire.WIRE_VERSION, "type": "got_end", "host": message.host,
                "path": message.relpath, "sha256": message.sha256}
    elif isinstance(message, Heartbeat | Cancel | Done):
        name = next(key for key, cls in _SIMPLE.items() if isinstance(message, cls))
        body = {"v": wire.WIRE_VERSION, "type": name}
    else:
        return wire.dumps(message)
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def loads(line: bytes) -> Message:
    """The message in one line; :class:`ProtocolError` when it is none."""
    try:
        body = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a relay protocol line: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("not a relay protocol line: not a JSON object")
    if body.get("hello") == MAGIC:
        return _hello(body)
    kind = body.get("type")
    if body.get("v") != wire.WIRE_VERSION:
        raise ProtocolError(f"wire format version {body.get('v')!r} is not {wire.WIRE_VERSION}")
    if kind in _SIMPLE:
        return _SIMPLE[kind]()
    if kind == "failed":
        return RelayFailed(str(body.get("message", "")))
    if kind == "job":
        return _job(body)
    if kind == "got":
        return _got(body)
    if kind == "got_end":
        try:
            return GotEnd(_text(body, "host"), _text(body, "path"), _text(body, "sha256"))
        except KeyError as exc:
            raise ProtocolError(f"malformed got_end: {exc}") from None
    if kind == "chunk":
        size = body.get("size")
        if not isinstance(size, int) or not 0 <= size <= MAX_LINE \
                or not isinstance(body.get("path"), str):
            raise ProtocolError("malformed chunk header")
        return ChunkHeader(body["path"], size, bool(body.get("first")))
    decoded = wire.decode(body)
    return decoded  # type: ignore[no-any-return]


def _hello(body: dict[str, Any]) -> Hello:
    protocol, version = body.get("protocol"), body.get("version")
    if not isinstance(protocol, int) or not isinstance(version, str):
        raise ProtocolError("malformed hello")
    return Hello(protocol, version)


def _text(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise KeyError(key)
    return value


def _number(body: dict[str, Any], key: str) -> float:
    value = body[key]
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise KeyError(key)
    return float(value)


def _got(body: dict[str, Any]) -> GotEntry:
    try:
        kind = body["kind"]
        if kind not in ("file", "dir", "link"):
            raise KeyError("kind")
        return GotEntry(_text(body, "host"), _text(body, "path"), kind,
                        int(_number(body, "mode")), _number(body, "mtime"),
                        _number(body, "atime"), int(_number(body, "size")),
                        _text(body, "target"))
    except KeyError as exc:
        raise ProtocolError(f"malformed got: {exc}") from None


def _job(body: dict[str, Any]) -> RelayJob:
    try:
        settings = RunSettings(**{name: body["settings"][name] for name in _SETTINGS})
        hosts = wire.decode_value(body["hosts"])
        known = tuple(str(line) for line in body["known_hosts"])
        return RelayJob(wire.decode_value(body["action"]), tuple(hosts),
                        wire.decode_value(body["inputs"]), settings, known)
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed job: {exc}") from None


class LineReader:
    """Lines from a file descriptor (read in large blocks, without Python's buffering, so a
    ``select`` on it means what it says) or from bytes handed to :meth:`feed`; at most
    :data:`MAX_LINE` bytes each."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self.eof = False
        self._chunk: ChunkHeader | None = None

    def feed(self, data: bytes) -> None:
        """Bytes read elsewhere (b"": the end of the stream)."""
        if not data:
            self.eof = True
        self._buffer += data

    def pending(self) -> bytes | None:
        """The next complete line already read, if any (without reading more)."""
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise ProtocolError(f"a line longer than {MAX_LINE} bytes")
            return None
        line = bytes(self._buffer[:end + 1])
        del self._buffer[:end + 1]
        return line

    def pending_message(self) -> Message | None:
        """The next complete message already read (a :class:`FileChunk` with its body), if
        any, without reading more; :class:`ProtocolError` for a line of no message, or a
        stream that ended inside a chunk."""
        if self._chunk is None:
            line = self.pending()
            if line is None:
                return None
            message = loads(line)
            if not isinstance(message, ChunkHeader):
                return message
            self._chunk = message
        header = self._chunk
        if len(self._buffer) < header.size:
            if self.eof:
                raise ProtocolError("the stream ended inside a file chunk")
            return None
        self._chunk = None
        data = bytes(self._buffer[:header.size])
        del self._buffer[:header.size]
        return FileChunk(header.relpath, data, header.first)

    def read_exact(self, size: int) -> bytes:
        """The next ``size`` raw bytes (a chunk's body), blocking on the descriptor."""
        while len(self._buffer) < size:
            if self.eof or self.fd is None:
                raise ProtocolError("the stream ended inside a file chunk")
            self.feed(os.read(self.fd, max(65536, size - len(self._buffer))))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self) -> bytes | None:
        """The next line, blocking on the descriptor; None at end of file (a partial last
        line is dropped)."""
        while True:
            line = self.pending()
            if line is not None:
                return line
            if self.eof or self.fd is None:
                return None
            self.feed(os.read(self.fd, 1024 * 1024))


def read_message(reader: LineReader) -> Message | None:
    """The next message from ``reader`` (a :class:`FileChunk` with its body), or None at the
    end of the stream."""
    line = reader.readline()
    if line is None:
        return None
    message = loads(line)
    if isinstance(message, ChunkHeader):
        return FileChunk(message.relpath, reader.read_exact(message.size), message.first)
    return message
