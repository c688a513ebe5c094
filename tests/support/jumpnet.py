"""Hosts that only a jump host can reach: network namespaces, and sshd jump hosts that
accept in one namespace and connect out of another.

* :class:`NetNamespace`: a network namespace with its loopback up, held open by a ``sleep``
  process (``unshare --net``). The test process itself never enters it, except on single
  threads (:func:`in_namespace`, via ``setns(2)``, which acts on the calling thread only).
* :class:`NamespacedFleet`: a :class:`~tests.support.fleet.Fleet` whose sshd processes run
  inside a namespace (``nsenter --net``): from the test process (and from hostbatch) their
  addresses answer "connection refused".
* :class:`InetdJumpHost`: an sshd jump host that accepts TCP connections in one namespace (the
  root one by default) and serves each with ``sshd -i`` started inside another namespace, so
  its ``direct-tcpip`` connections are made from there. Its configuration, host key and
  known_hosts line come from a (never started) one-host Fleet; every connection's log is
  appended to that host's ``sshd.log``.

Chaining two jump hosts (outer accepts in the root namespace and runs in A; inner accepts in A
and runs in B, where the targets are) builds a path that only a two-hop chain can cross.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tests.support.fleet import Fleet

_CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def in_namespace(path: str | None, fn: Callable[[], _T]) -> _T:
    """Run ``fn`` on a thread that has entered network namespace ``path`` (None: stay)."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            if path is not None:
                _setns(path)
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=target, name="netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]  # type: ignore[no-any-return]


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path}) failed")
    finally:
        os.close(fd)


class NetNamespace:
    """A fresh network namespace with ``lo`` up, alive until :meth:`close`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"up":
            self.close()
            raise RuntimeError(f"could not create a network namespace: {self.proc.stderr!r}")
        self.path = f"/proc/{self.proc.pid}/ns/net"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


class NamespacedFleet(Fleet):
    """A Fleet whose sshd processes live in network namespace ``netns``."""

    def __init__(self, workdir: Path, count: int, *, netns: NetNamespace, **kwargs: Any) -> None:
        self.netns = netns
        super().__init__(workdir, count, **kwargs)

    def _argv(self, name: str) -> list[str]:
        return ["nsenter", f"--net={self.netns.path}", *super()._argv(name)]

    def _wait_ready(self, names: Sequence[str], timeout: float) -> None:
        in_namespace(self.netns.path, lambda: super(NamespacedFleet, self)._wait_ready(
            names, timeout))


class InetdJumpHost:
    """An sshd jump host: listens in namespace ``listen_ns`` (None: the test's own) at
    ``fleet``'s only host address and port, and runs ``sshd -i`` in ``run_ns``."""

    def __init__(self, fleet: Fleet, *, run_ns: NetNamespace,
                 listen_ns: NetNamespace | None = None) -> None:
        self.fleet = fleet
        self.host = fleet.hosts[0]
        self.run_ns = run_ns
        self.log = fleet.log_path(self.host.name)
        self.config = fleet.host_dir(self.host.name) / "sshd_config"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sock = in_namespace(listen_ns.path if listen_ns else None, self._listen)
        self._thread = threading.Thread(target=self._accept, name="inetd-jump", daemon=True)
        self._thread.start()

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host.address, self.host.port))
        sock.listen(128)
        sock.settimeout(0.2)
        return sock

    def _accept(self) -> None:
        sshd = self.fleet.sshd
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, open(self.log, "ab") as log:
                conn.settimeout(None)
                proc = subprocess.Popen(
                    ["nsenter", f"--net={self.run_ns.path}", sshd, "-i", "-e", "-f",
                     str(self.config)],
                    stdin=conn.fileno(), stdout=conn.fileno(), stderr=log,
                    start_new_session=True, close_fds=True)
            with self._lock:
                self._procs.append(proc)

    def accepted(self) -> int:
        """Authenticated connections so far (sshd's ``Accepted ...`` log lines)."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("Accepted publickey")

    def accepted_passwords(self) -> int:
        """Connections authenticated with a password so far."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("Accepted password")

    def kill_connections(self) -> None:
        """Kill every connection served so far (the jump host "dies"; it still accepts)."""
        with self._lock:
            procs, self._procs = list(self._procs), []
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def freeze_connections(self) -> list[int]:
        """SIGSTOP every connection served so far and all its processes (a hung jump host
        whose kernel still answers TCP); returns the pids for :meth:`thaw`."""
        with self._lock:
            groups = [proc.pid for proc in self._procs]
        frozen: list[int] = []
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGSTOP)
                frozen.append(pgid)
        return frozen

    def thaw(self, groups: list[int]) -> None:
        """Undo :meth:`freeze_connections`."""
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGCONT)

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        self._thread.join(timeout=5)
        self.kill_connections()
