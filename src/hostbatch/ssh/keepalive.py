"""SSH keepalives: notice a host that stopped answering, as OpenSSH's ``ServerAlive`` does.

TCP keepalive cannot do this: the kernel of a host whose sshd is frozen (SIGSTOP, a hung
machine with a live network stack) still answers it. So, like ``ssh -o ServerAliveInterval``,
after ``interval`` seconds without a byte from the server a ``keepalive@openssh.com`` global
request is sent with *want reply* set; any server answers it (OpenSSH with a failure reply,
which is enough: any packet received proves the server alive and resets the count). After
``count_max`` unanswered probes and one more interval, the connection is closed: every
channel on it ends at once and the host is reported as ``no answer to 3 keepalives in 45s``.

One :class:`LivenessMonitor` thread per worker process watches every connection of that
process. It never blocks on a connection: a probe is sent from a short-lived thread of its
own (a frozen host with a full TCP window can block a send until the connection is closed).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paramiko
from paramiko.common import cMSG_GLOBAL_REQUEST

#: The request OpenSSH's client sends for ServerAlive; servers answer it with a failure.
PROBE_REQUEST = "keepalive@openssh.com"
#: Longest sleep of the monitor between checks.
TICK = 1.0


class WatchedSocket:
    """A socket (or a jump host's channel) that records when bytes last arrived."""

    def __init__(self, sock: socket.socket | Any) -> None:
        self._sock = sock
        self.last_received = time.monotonic()

    def recv(self, size: int) -> bytes:
        data: bytes = self._sock.recv(size)
        if data:
            self.last_received = time.monotonic()
        return data

    def send(self, data: bytes) -> int:
        sent: int = self._sock.send(data)
        return sent

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()

    @property
    def _closed(self) -> bool:  # read by paramiko's Transport.stop_thread
        return bool(getattr(self._sock, "_closed", False))


@dataclass
class _Watch:
    """One watched connection and its probe count."""

    transport: paramiko.Transport
    sock: WatchedSocket
    interval: float
    count_max: int
    probes: int = 0
    seen: float = field(default_factory=time.monotonic)
    sending: bool = False
    verdict: str | None = None


class LivenessMonitor:
    """Probes quiet connections and closes the ones that stop answering."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[paramiko.Transport, _Watch] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, transport: paramiko.Transport, sock: WatchedSocket, interval: float,
              count_max: int) -> None:
        """Watch ``transport`` (whose socket is ``sock``); ``interval`` 0 means never."""
        if interval <= 0:
            return
        with self._lock:
            self._watches[transport] = _Watch(transport, sock, interval, max(1, count_max))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="keepalive",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def forget(self, transport: paramiko.Transport) -> str | None:
        """Stop watching ``transport``; return why it was closed, if the monitor closed it."""
        with self._lock:
            entry = self._watches.pop(transport, None)
        return None if entry is None else entry.verdict

    def verdict(self, transport: paramiko.Transport) -> str | None:
        """Why the monitor closed ``transport`` (``None``: it did not)."""
        with self._lock:
            entry = self._watches.get(transport)
        return None if entry is None else entry.verdict

    def quiet_for(self, transport: paramiko.Transport) -> float:
        """Seconds since ``transport`` last received a byte (0 if it is not watched)."""
        with self._lock:
            entry = self._watches.get(transport)
        return 0.0 if entry is None else time.monotonic() - entry.sock.last_received

    def _run(self) -> None:
        while True:
            with self._lock:
                entries = [entry for entry in self._watches.values() if entry.verdict is None]
            now = time.monotonic()
            wait = TICK
            for entry in entries:
                wait = min(wait, self._check(entry, now))
            self._wake.wait(max(0.05, wait))
            self._wake.clear()

    def _check(self, entry: _Watch, now: float) -> float:
        """Probe or give up on one connection; return how soon it needs another look."""
        if entry.sock.last_received > entry.seen:
            entry.seen, entry.probes = entry.sock.last_received, 0
        due = entry.seen + entry.interval * (entry.probes + 1)
        if now < due:
            return due - now
        if entry.probes >= entry.count_max:
            entry.verdict = (f"no answer to {entry.count_max} keepalives in "
                             f"{entry.interval * entry.count_max:g}s")
            threading.Thread(target=entry.transport.close, daemon=True).start()
            return TICK
        entry.probes += 1
        if not entry.sending:
            entry.sending = True
            threading.Thread(target=_send_probe, args=(entry,), daemon=True).start()
        return entry.interval


def _send_probe(entry: _Watch) -> None:
    """Send one keepalive request asking for a reply; may block while the host is frozen."""
    message = paramiko.Message()
    message.add_byte(cMSG_GLOBAL_REQUEST)
    message.add_string(PROBE_REQUEST)
    message.add_boolean(True)
    try:
        # paramiko's public global_request() waits on an event it shares with key exchange
        # and has no timeout; this sends the same message without waiting for the answer
        # (any packet received counts, as in OpenSSH).
        entry.transport._send_user_message(message)  # type: ignore[attr-defined]
    except Exception:  # a dead connection is the monitor's to report
        pass
    finally:
        entry.sending = False
