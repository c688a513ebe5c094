"""Launch a fleet of real OpenSSH ``sshd`` servers on loopback addresses.

hostbatch's test suite, demo and benchmarks need many *real* SSH servers that
behave exactly like production ones (OpenSSH quirks, MaxStartups, host key
checking, password auth, ...).  This module starts one ``sshd -D`` process per
fleet host, each with its own config file, its own ed25519 host key, its own log
file and a distinct 127.x.y.z address; all hosts of a fleet share one port.
Distinct addresses (rather than distinct ports) let tools that only take a list
of IP addresses (pssh, clush, pdsh) be benchmarked against the very same fleet
as hostbatch, through the generated OpenSSH client config.

Typical use::

    with Fleet(tmp_path, 3) as fleet:
        subprocess.run(["ssh", "-F", str(fleet.ssh_config), "h001", "true"])
        fleet.write_inventory(tmp_path / "hosts.ini", {"web": ["h001", "h002"]})

From a bench script: ``sys.path.insert(0, repo_root)`` then
``from tests.support.fleet import Fleet``.  From a shell:
``python -m tests.support.fleet --count 3 --workdir DIR [--detach]``.

Requirements: root (binding ``sshd``, password auth against /etc/shadow,
``unshare``/``mount`` for ``private_tmp``), OpenSSH's ``sshd`` and ``ssh-keygen``.

Process hygiene: every ``sshd`` gets ``PR_SET_PDEATHSIG(SIGTERM)`` from one
long-lived spawner thread (the death signal fires when the *thread* that forked
a child exits, so children are never forked from short-lived worker threads),
runs in its own session, and ``stop()`` freezes and kills the listener, every
descendant (``sshd`` forks per connection and its session children call
``setsid()``, so process groups are not enough) and every process carrying the
fleet's ``HOSTBATCH_FLEET_ID`` environment marker (set with sshd's ``SetEnv``;
catches commands that daemonized away from the process tree).  Live fleets are
also stopped from an ``atexit`` hook.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import functools
import ipaddress
import os
import pwd
import queue
import re
import resource
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_BASE_PORT",
    "DEFAULT_FIRST_ADDRESS",
    "GROUP_KEYS",
    "HOST_KEYS",
    "MARKER_VAR",
    "PRIVATE_DIR",
    "Fleet",
    "FleetError",
    "FleetHost",
    "ensure_test_user",
    "find_free_port",
    "known_hosts_pattern",
    "loopback_addresses",
    "main",
]

#: Directory that each host sees as its own empty tmpfs when ``private_tmp=True``.
PRIVATE_DIR = Path("/srv/hostbatch-fleet")
#: First host address when the caller does not choose one (127.0.0.1 is never used).
DEFAULT_FIRST_ADDRESS = "127.0.0.10"
#: Automatic port selection starts here and walks upwards.
DEFAULT_BASE_PORT = 22000
#: Environment variable that sshd sets (``SetEnv``) in every session of a fleet host.
MARKER_VAR = "HOSTBATCH_FLEET_ID"
#: Keys hostbatch accepts in ``[defaults]`` and ``[host:NAME]`` sections.
HOST_KEYS = frozenset(
    {"hostname", "port", "user", "password", "password_env", "password_cmd", "identity_file",
     "connect_timeout", "known_hosts", "proxy_jump", "identities_only"}
)
#: Keys hostbatch accepts in ``[group:NAME]`` sections.
GROUP_KEYS = frozenset({"hosts", "children"})

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
_RESERVED = ipaddress.IPv4Address("127.0.0.1")
_PR_SET_PDEATHSIG = 1
_WANTED_NOFILE = 65536
_T = TypeVar("_T")


class FleetError(RuntimeError):
    """An sshd of the fleet failed to start or did not answer in time."""


class _PortInUse(FleetError):
    """An sshd could not bind its address (another process took the port)."""


@dataclass(frozen=True)
class FleetHost:
    """One fleet host as a client sees it."""

    name: str
    address: str
    port: int
    host_key_pub: str

    @property
    def known_hosts_line(self) -> str:
        """OpenSSH known_hosts line, e.g. ``[127.0.0.10]:22000 ssh-ed25519 AAAA...``."""
        return f"{known_hosts_pattern(self.address, self.port)} {self.host_key_pub}"


# --------------------------------------------------------------------------- helpers


def known_hosts_pattern(address: str, port: int) -> str:
    """Host pattern OpenSSH uses in known_hosts: bare address on port 22, else ``[addr]:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def loopback_addresses(first: str, count: int) -> list[str]:
    """Return ``count`` distinct loopback addresses starting at ``first``.

    Addresses whose last octet is 0 or 255 are skipped, as is 127.0.0.1 (it is
    shared with everything else on the machine), so after 127.0.0.254 comes
    127.0.1.1.
    """
    current = ipaddress.IPv4Address(first)
    if current not in _LOOPBACK:
        raise ValueError(f"{first} is not in 127.0.0.0/8")
    result: list[str] = []
    while len(result) < count:
        if current not in _LOOPBACK:
            raise ValueError(f"not enough loopback addresses after {first} for {count} hosts")
        if int(current) & 0xFF not in (0, 255) and current != _RESERVED:
            result.append(str(current))
        current = ipaddress.IPv4Address(int(current) + 1)
    return result


def _port_is_free(addresses: Iterable[str], port: int) -> bool:
    """True if ``port`` can be bound (like sshd does, with SO_REUSEADDR) on every address."""
    for address in addresses:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


_CLAIMED_PORTS: set[int] = set()
_CLAIM_LOCK = threading.Lock()


def find_free_port(addresses: Sequence[str], start: int = DEFAULT_BASE_PORT) -> int:
    """Find a port >= ``start`` that is free on all ``addresses``.

    Ports already handed out to other fleets of this process are skipped too, so
    two fleets created before either is started do not collide.
    """
    with _CLAIM_LOCK:
        for port in range(start, 65536):
            if port in _CLAIMED_PORTS:
                continue
            if _port_is_free(addresses, port):
                _CLAIMED_PORTS.add(port)
                return port
    raise FleetError(f"no free port >= {start} on {len(addresses)} addresses")


@functools.cache
def _find_program(name: str) -> str:
    """Locate an OpenSSH/util-linux program, also in sbin directories."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    found = shutil.which(name, path=path)
    if found is None:
        raise FleetError(f"{name} not found")
    return found


@functools.cache
def _sshd_version(sshd: str) -> tuple[int, int]:
    """(major, minor) of the OpenSSH server, used to adapt flags/options to its version."""
    proc = subprocess.run([sshd, "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", proc.stdout + proc.stderr)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _keygen(path: Path, comment: str) -> None:
    """Create an unencrypted ed25519 key pair at ``path`` / ``path.pub``."""
    subprocess.run(
        [_find_program("ssh-keygen"), "-t", "ed25519", "-N", "", "-q", "-C", comment, "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _public_key(path: Path) -> str:
    """``type base64`` of an OpenSSH ``.pub`` file (the comment is dropped)."""
    fields = path.read_text().split()
    return f"{fields[0]} {fields[1]}"


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Atomically write ``text`` to ``path`` with permissions ``mode``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _raise_nofile_limit() -> None:
    """Raise the soft RLIMIT_NOFILE (inherited by sshd) so hundreds of sockets fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _WANTED_NOFILE if hard == resource.RLIM_INFINITY else min(hard, _WANTED_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _prepare_runtime(private_tmp: bool) -> None:
    """Create sshd's privilege separation dir (and the private tmpfs mount point)."""
    if os.geteuid() != 0:
        raise FleetError("the sshd fleet must be run as root")
    run_sshd = Path("/run/sshd")
    run_sshd.mkdir(mode=0o755, parents=True, exist_ok=True)
    _raise_nofile_limit()
    if private_tmp:
        PRIVATE_DIR.mkdir(parents=True, exist_ok=True)
        _find_program("unshare")


# ----------------------------------------------------------------- process hygiene


class _SpawnThread:
    """Run callables on one daemon thread that lives as long as the process.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits
    (not the process), so all sshd processes are forked from this thread: the
    death signal then fires only when the owning process dies.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the spawner thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._loop, name="fleet-spawner", daemon=True)
                thread.start()
                self._thread = thread
        future: Future[_T] = Future()
        self._jobs.put((fn, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            fn, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed over to the caller
                future.set_exception(exc)


_SPAWNER = _SpawnThread()


def _reset_after_fork() -> None:
    """A forked child neither owns the parent's spawner thread nor its fleets."""
    global _SPAWNER
    _SPAWNER = _SpawnThread()


os.register_at_fork(after_in_child=_reset_after_fork)


def _make_child_setup() -> Callable[[], None]:
    """Build a ``preexec_fn`` that makes the child get SIGTERM when we die."""
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        libc.prctl(
            ctypes.c_int(_PR_SET_PDEATHSIG),
            ctypes.c_ulong(signal.SIGTERM),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        if os.getppid() != parent:  # parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def _process_table() -> dict[int, int]:
    """Map pid -> ppid for every process, read from /proc."""
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        fields = data.rsplit(b")", 1)[-1].split()
        if len(fields) > 1:
            table[int(entry)] = int(fields[1])
    return table


def _descendants(roots: Collection[int], table: Mapping[int, int]) -> set[int]:
    """All processes below ``roots`` in the process tree (roots excluded)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found - set(roots)


def _marked_processes(marker: bytes, prefix: bool) -> set[int]:
    """Processes whose ``HOSTBATCH_FLEET_ID`` is ``marker`` (or starts with it if ``prefix``)."""
    needle = f"{MARKER_VAR}=".encode() + marker
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                env = handle.read()
        except OSError:
            continue
        for item in env.split(b"\0"):
            if item == needle or (prefix and item.startswith(needle)):
                found.add(int(entry))
                break
    return found


def _own_lineage() -> set[int]:
    """Our pid and all our ancestors: never signal those."""
    table = _process_table()
    lineage = {os.getpid()}
    pid = os.getpid()
    while pid in table and table[pid] not in lineage and table[pid] > 0:
        pid = table[pid]
        lineage.add(pid)
    return lineage


def _signal(pid: int, sig: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _kill_trees(roots: Collection[int], marker: bytes | None, marker_prefix: bool) -> None:
    """Freeze, then SIGKILL, the listeners ``roots``, all their descendants and marked processes.

    Freezing first (SIGSTOP) stops listeners from forking new connection
    handlers and stops sessions from spawning more children while we collect
    them, so nothing slips through between scanning and killing.
    """
    protected = _own_lineage()
    for pid in roots:
        _signal(pid, signal.SIGSTOP, group=True)
    frozen = set(roots)
    for _ in range(20):
        found = _descendants(frozen, _process_table())
        if marker is not None:
            found |= _marked_processes(marker, marker_prefix)
        new = found - frozen - protected
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        frozen |= new
    for pid in roots:
        _signal(pid, signal.SIGKILL, group=True)
    for pid in frozen - protected:
        _signal(pid, signal.SIGKILL)


# ------------------------------------------------------------------------- Fleet

_LIVE_FLEETS: weakref.WeakSet[Fleet] = weakref.WeakSet()


@atexit.register
def _stop_live_fleets() -> None:
    """Last-resort cleanup when the owner exits without stopping its fleets."""
    for fleet in list(_LIVE_FLEETS):
        with contextlib.suppress(Exception):
            fleet.stop()


class Fleet:
    """A set of real OpenSSH servers, one ``sshd`` process per host.

    Construction generates keys and writes every file (sshd configs,
    ``known_hosts``, ``ssh_config``); ``start()`` launches the daemons.  Files
    under ``workdir``::

        client_key, client_key.pub   key authorized for every user on every host
        authorized_keys              shared AuthorizedKeysFile
        known_hosts, ssh_config      for OpenSSH clients (``ssh -F ssh_config h001``)
        hosts/NAME/                  sshd_config, ssh_host_ed25519_key(.pub), sshd.log

    Keys already present in ``workdir`` are reused, so re-creating a fleet in the
    same directory keeps host keys stable.

    ``user`` (default root) only chooses the login user of the generated client
    config and inventory; the client key is authorized for every user.  On
    machines whose root ``~/.bashrc`` is slow (bash sources it for every ssh
    command), benchmarks should use a plain user from ``ensure_test_user``.
    """

    def __init__(
        self,
        workdir: Path,
        count: int,
        *,
        names: Sequence[str] | None = None,
        port: int | None = None,
        first_address: str = DEFAULT_FIRST_ADDRESS,
        private_tmp: bool = False,
        extra_sshd_config: str = "",
        user: str = "root",
    ) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        if names is None:
            names = [f"h{i:03d}" for i in range(1, count + 1)]
        names = list(names)
        if len(names) != count:
            raise ValueError(f"{len(names)} names given for count={count}")
        if len(set(names)) != count:
            raise ValueError("host names must be unique")
        for name in names:
            if not _NAME_RE.match(name):
                raise ValueError(f"invalid host name {name!r}")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"invalid port {port}")
        if not _NAME_RE.match(user):
            raise ValueError(f"invalid user name {user!r}")

        self.workdir: Path = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.names: list[str] = names
        self.addresses: list[str] = loopback_addresses(first_address, count)
        self.private_tmp: bool = private_tmp
        #: Directory that is a private, initially empty tmpfs on each host (or None).
        self.private_dir: Path | None = PRIVATE_DIR if private_tmp else None
        self.extra_sshd_config: str = extra_sshd_config
        #: Login user written to ssh_config and to the inventory's [defaults].
        self.user: str = user
        self.client_key: Path = self.workdir / "client_key"
        self.client_key_pub: Path = self.workdir / "client_key.pub"
        self.authorized_keys: Path = self.workdir / "authorized_keys"
        self.known_hosts: Path = self.workdir / "known_hosts"
        self.ssh_config: Path = self.workdir / "ssh_config"
        self.sshd: str = _find_program("sshd")
        self.hosts: list[FleetHost] = []
        self._auto_port = port is None
        self.port: int = port if port is not None else find_free_port(self.addresses)
        self._token = secrets.token_hex(8)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._started = False
        self._owner_pid = os.getpid()
        self._lock = threading.RLock()
        self._host_pubs = self._generate_keys()
        self._write_files()

    # ----------------------------------------------------------------- files

    def host_dir(self, name: str) -> Path:
        """Directory holding the config, host key and log of host ``name``."""
        return self.workdir / "hosts" / name

    def log_path(self, name: str) -> Path:
        """sshd's stderr log of host ``name``."""
        return self.host_dir(name) / "sshd.log"

    def _generate_keys(self) -> dict[str, str]:
        """Create missing client/host keys (in parallel) and return the host public keys."""
        jobs: list[tuple[Path, str]] = []
        if not (self.client_key.exists() and self.client_key_pub.exists()):
            self.client_key.unlink(missing_ok=True)
            self.client_key_pub.unlink(missing_ok=True)
            jobs.append((self.client_key, "hostbatch-fleet-client"))
        for name in self.names:
            directory = self.host_dir(name)
            directory.mkdir(parents=True, exist_ok=True)
            key = directory / "ssh_host_ed25519_key"
            if not (key.exists() and key.with_suffix(".pub").exists()):
                key.unlink(missing_ok=True)
                key.with_suffix(".pub").unlink(missing_ok=True)
                jobs.append((key, f"hostbatch-fleet-{name}"))
        if jobs:
            workers = min(len(jobs), 4 * (os.cpu_count() or 1))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda job: _keygen(*job), jobs))
        return {
            name: _public_key(self.host_dir(name) / "ssh_host_ed25519_key.pub")
            for name in self.names
        }

    def _sshd_config_text(self, name: str, address: str) -> str:
        """sshd_config of one host.

        A keyword set in ``extra_sshd_config`` replaces the built-in default
        (sshd is inconsistent: most keywords keep their first value, some such
        as MaxStartups their last, so the default line is dropped instead of
        relying on order).  ``SetEnv`` values are merged with the fleet marker;
        ``Match`` blocks of the extra config go last.
        """
        directory = self.host_dir(name)
        extra_global: list[str] = []
        extra_match: list[str] = []
        extra_setenv: list[str] = []
        for line in self.extra_sshd_config.splitlines():
            words = line.split(None, 1)
            keyword = words[0].lower() if words else ""
            if extra_match or keyword == "match":
                extra_match.append(line)
            elif keyword == "setenv" and len(words) == 2:
                extra_setenv.append(words[1].strip())
            elif keyword:
                extra_global.append(line.strip())
        overridden = {line.split(None, 1)[0].lower() for line in extra_global}
        defaults = [
            f"ListenAddress {address}:{self.port}",
            f"HostKey {directory / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin yes",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "MaxStartups 200:30:1000",
            "MaxSessions 50",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
            "AcceptEnv LANG LC_*",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
        ]
        if _sshd_version(self.sshd) >= (9, 8):
            defaults.append("PerSourcePenalties no")
        lines = [
            f"# hostbatch test fleet host {name} (generated by tests.support.fleet)",
            *(line for line in defaults if line.split(None, 1)[0].lower() not in overridden),
            # A login shell whose rc file runs `pyenv rehash` (root's, on this machine) takes
            # pyenv's lock file; a session killed meanwhile leaves the lock behind, and every
            # later login would wait 60 s for it. Sessions of the fleet try it once instead.
            " ".join(["SetEnv", f"{MARKER_VAR}={self._token}/{name}", "PYENV_REHASH_TIMEOUT=0",
                      *extra_setenv]),
            *extra_global,
            *extra_match,
            # Non-root users read AuthorizedKeysFile with their own uid and may not be
            # able to traverse workdir (pytest's tmp dirs are 0700): hand them the
            # same keys through a command run as root.
            "Match User *,!root",
            "    AuthorizedKeysFile none",
            f"    AuthorizedKeysCommand /bin/cat {self.authorized_keys}",
            "    AuthorizedKeysCommandUser root",
            "",
        ]
        return "\n".join(lines)

    def _client_options(self) -> list[str]:
        return [
            f"User {self.user}",
            f"IdentityFile {self.client_key}",
            f"UserKnownHostsFile {self.known_hosts}",
            "GlobalKnownHostsFile /dev/null",
            "StrictHostKeyChecking yes",
            "BatchMode yes",
            "IdentitiesOnly yes",
            "LogLevel ERROR",
        ]

    def _write_files(self) -> None:
        """(Re)write sshd configs, authorized_keys, known_hosts and ssh_config."""
        self.hosts = [
            FleetHost(name, address, self.port, self._host_pubs[name])
            for name, address in zip(self.names, self.addresses, strict=True)
        ]
        for host in self.hosts:
            _write_private(
                self.host_dir(host.name) / "sshd_config",
                self._sshd_config_text(host.name, host.address),
            )
        _write_private(self.authorized_keys, _public_key(self.client_key_pub) + "\n", 0o644)
        _write_private(
            self.known_hosts, "".join(h.known_hosts_line + "\n" for h in self.hosts), 0o644
        )
        options = self._client_options()
        blocks: list[str] = ["# hostbatch test fleet (generated by tests.support.fleet)"]
        for host in self.hosts:
            blocks.append(f"Host {host.name}")
            blocks += [f"    HostName {host.address}", f"    Port {host.port}"]
            blocks += [f"    {option}" for option in options]
        blocks.append("Host 127.*")
        blocks.append(f"    Port {self.port}")
        blocks += [f"    {option}" for option in options]
        _write_private(self.ssh_config, "\n".join(blocks) + "\n", 0o644)

    def _set_port(self, port: int) -> None:
        self.port = port
        self._write_files()

    # --------------------------------------------------------------- lookups

    def host(self, name: str) -> FleetHost:
        """The ``FleetHost`` called ``name`` (KeyError if unknown)."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def is_running(self, name: str) -> bool:
        """True if host ``name``'s sshd process is alive."""
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def ssh_argv(
        self, name: str, command: str | None = None, *, user: str | None = None
    ) -> list[str]:
        """argv running ``command`` on host ``name`` with the OpenSSH client and ``ssh_config``."""
        argv = ["ssh", "-F", str(self.ssh_config)]
        if user is not None:
            argv += ["-l", user]
        argv.append(name)
        if command is not None:
            argv.append(command)
        return argv

    def ssh(
        self,
        name: str,
        command: str,
        *,
        user: str | None = None,
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on host ``name`` through ``ssh -F ssh_config`` and capture its output."""
        return subprocess.run(
            self.ssh_argv(name, command, user=user),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    # -------------------------------------------------------------- processes

    def _argv(self, name: str) -> list[str]:
        argv = [self.sshd, "-D", "-e", "-f", str(self.host_dir(name) / "sshd_config")]
        if _sshd_version(self.sshd) < (9, 8):
            argv.insert(1, "-r")  # no re-exec per connection: cheaper, same behaviour
        if self.private_tmp:
            script = 'mount -t tmpfs -o mode=1777,size=256m hostbatch-fleet "$0" && exec "$@"'
            argv = [
                _find_program("unshare"),
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                script,
                str(PRIVATE_DIR),
                *argv,
            ]
        return argv

    def _spawn(self, names: Sequence[str]) -> None:
        """Start the sshd of ``names`` (from the spawner thread, see module docstring)."""
        argvs = {name: self._argv(name) for name in names}

        def spawn_all() -> None:
            setup = _make_child_setup()
            for name in names:
                with open(self.log_path(name), "ab") as log:
                    self._procs[name] = subprocess.Popen(
                        argvs[name],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        preexec_fn=setup,  # only calls prctl(), see _make_child_setup
                        start_new_session=True,
                        close_fds=True,
                    )

        self._started = True
        _LIVE_FLEETS.add(self)
        _SPAWNER.call(spawn_all)

    def _failure(self, name: str) -> FleetError:
        proc = self._procs[name]
        log = self.log_path(name).read_text(errors="replace")[-2000:]
        message = f"sshd of {name} exited with status {proc.returncode}:\n{log}"
        if "Address already in use" in log or "Cannot bind any address" in log:
            return _PortInUse(message)
        return FleetError(message)

    def _wait_ready(self, names: Sequence[str], timeout: float) -> None:
        """Wait until every host in ``names`` sends an SSH banner, probing all concurrently."""
        deadline = time.monotonic() + timeout
        address_of = {host.name: host.address for host in self.hosts}
        targets = {name: (address_of[name], self.port) for name in names}
        pending = set(names)
        retry_at = dict.fromkeys(names, 0.0)
        buffers: dict[str, bytes] = {}
        selector = selectors.DefaultSelector()
        next_poll = 0.0
        try:
            while pending:
                now = time.monotonic()
                if now >= next_poll:
                    for name in pending:
                        if self._procs[name].poll() is not None:
                            raise self._failure(name)
                    next_poll = now + 0.1
                if now > deadline:
                    waiting = ", ".join(sorted(pending)[:10])
                    raise FleetError(
                        f"no SSH banner within {timeout}s from {len(pending)} hosts: {waiting}"
                    )
                for name in pending:
                    if name in buffers or retry_at[name] > now:
                        continue
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    sock.connect_ex(targets[name])
                    selector.register(sock, selectors.EVENT_READ, name)
                    buffers[name] = b""
                for key, _ in selector.select(timeout=0.02):
                    probe = key.fileobj
                    assert isinstance(probe, socket.socket)
                    name = key.data
                    try:
                        data = probe.recv(512)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        buffers[name] += data
                        if b"SSH-2.0-" not in buffers[name]:
                            continue
                        pending.discard(name)
                        # Identify ourselves before closing: sshd then only logs the
                        # disconnect at INFO, instead of a kex_exchange_identification
                        # error in every host log.
                        with contextlib.suppress(OSError):
                            probe.send(b"SSH-2.0-hostbatch-fleet-probe\r\n")
                    else:  # refused (not listening yet) or closed: retry shortly
                        retry_at[name] = time.monotonic() + 0.02
                    selector.unregister(probe)
                    probe.close()
                    del buffers[name]
        finally:
            for key in list(selector.get_map().values()):
                fileobj = key.fileobj
                assert isinstance(fileobj, socket.socket)
                fileobj.close()
            selector.close()

    def _kill(self, names: Iterable[str], marker: bytes | None, prefix: bool) -> None:
        procs = [self._procs.pop(name) for name in list(names) if name in self._procs]
        alive = [proc.pid for proc in procs if proc.poll() is None]
        _kill_trees(alive, marker, prefix)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def start(self, timeout: float = 60.0) -> Fleet:
        """Start every sshd in parallel and wait until each one answers with an SSH banner.

        With an automatically chosen port, a port stolen between selection and
        bind makes the fleet retry on the next free port (``self.port`` and all
        files are updated).  Idempotent; returns ``self``.
        """
        with self._lock:
            if self._procs:
                return self
            _prepare_runtime(self.private_tmp)
            attempts = 5 if self._auto_port else 1
            for attempt in range(attempts):
                try:
                    self._spawn(self.names)
                    self._wait_ready(self.names, timeout)
                    return self
                except _PortInUse:
                    self._kill(list(self._procs), None, False)
                    if attempt + 1 >= attempts:
                        self.stop()
                        raise
                    self._set_port(find_free_port(self.addresses, self.port + 1))
                except BaseException:
                    self.stop()
                    raise
            return self

    def stop(self) -> None:
        """Kill every sshd, its connection handlers and session processes.  Idempotent."""
        with self._lock:
            if os.getpid() != self._owner_pid or not self._started:
                return
            self._kill(list(self._procs), self._token.encode() + b"/", True)
            self._started = False
            _LIVE_FLEETS.discard(self)

    def stop_host(self, name: str) -> None:
        """Make host ``name`` unreachable (connection refused); kills its sessions too."""
        self.host(name)
        with self._lock:
            self._kill([name], f"{self._token}/{name}".encode(), False)

    def start_host(self, name: str, timeout: float = 30.0) -> None:
        """Bring host ``name`` back (same address, port and host key) after ``stop_host``."""
        self.host(name)
        with self._lock:
            if self.is_running(name):
                return
            self._procs.pop(name, None)
            self._spawn([name])
            self._wait_ready([name], timeout)

    def freeze_host(self, name: str) -> None:
        """SIGSTOP host ``name``'s listener: TCP connects still succeed (kernel backlog)
        but no banner is ever sent, to provoke banner/connect timeouts."""
        proc = self._procs[name]
        _signal(proc.pid, signal.SIGSTOP, group=True)

    def thaw_host(self, name: str) -> None:
        """Undo ``freeze_host``."""
        proc = self._procs[name]
        _signal(proc.pid, signal.SIGCONT, group=True)

    def freeze_whole_host(self, name: str) -> list[int]:
        """SIGSTOP host ``name``'s listener and every process below it (connection handlers,
        login shells, commands): a hung machine whose kernel still answers TCP. Returns the
        frozen pids, for :meth:`thaw_whole_host`."""
        proc = self._procs[name]
        _signal(proc.pid, signal.SIGSTOP, group=True)
        frozen = {proc.pid}
        for _ in range(20):
            new = _descendants(frozen, _process_table()) - frozen - _own_lineage()
            if not new:
                break
            for pid in new:
                _signal(pid, signal.SIGSTOP)
            frozen |= new
        return sorted(frozen)

    def thaw_whole_host(self, name: str, pids: Collection[int]) -> None:
        """Undo :meth:`freeze_whole_host`."""
        _signal(self._procs[name].pid, signal.SIGCONT, group=True)
        for pid in pids:
            _signal(pid, signal.SIGCONT)

    def kill_sessions(self, name: str) -> list[int]:
        """SIGKILL everything below host ``name``'s listener (connection handlers, login shells,
        commands) and leave the listener up: every open connection to the host drops at once,
        as when its sshd sessions crash or are killed mid-command, while new connections are
        still served. Frozen first, so no process forks past the kill. Returns the killed pids.
        """
        proc = self._procs[name]
        protected = _own_lineage()
        frozen: set[int] = set()
        for _ in range(20):
            new = _descendants({proc.pid, *frozen}, _process_table()) - frozen - protected
            new.discard(proc.pid)
            if not new:
                break
            for pid in new:
                _signal(pid, signal.SIGSTOP)
            frozen |= new
        for pid in frozen:
            _signal(pid, signal.SIGKILL)
        return sorted(frozen)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._procs else "stopped"
        return f"<Fleet {len(self.names)} hosts port={self.port} {state} {self.workdir}>"

    # -------------------------------------------------------------- inventory

    def write_inventory(
        self,
        path: Path,
        groups: Mapping[str, Sequence[str]] | None = None,
        *,
        defaults: Mapping[str, str] | None = None,
        host_options: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Path:
        """Write a hostbatch INI inventory for this fleet (mode 600) and return ``path``.

        ``defaults`` extend/override the generated ``[defaults]`` (``self.user``,
        client key, fleet known_hosts); ``host_options[name]`` extend/override a
        host's section.  In ``groups``, a member that is itself a key of
        ``groups`` (and not a fleet host) goes to ``children``, everything else to
        ``hosts`` (unknown host names are kept, to test error handling).
        """
        groups = groups or {}
        host_options = host_options or {}
        unknown_hosts = set(host_options) - set(self.names)
        if unknown_hosts:
            raise ValueError(f"host_options for hosts not in the fleet: {sorted(unknown_hosts)}")
        merged_defaults = {
            "user": self.user,
            "identity_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            **(defaults or {}),
        }
        lines = ["[defaults]", *_ini_items(merged_defaults, HOST_KEYS)]
        for host in self.hosts:
            options = {
                "hostname": host.address,
                "port": str(host.port),
                **host_options.get(host.name, {}),
            }
            lines += ["", f"[host:{host.name}]", *_ini_items(options, HOST_KEYS)]
        for group, members in groups.items():
            if not _NAME_RE.match(group):
                raise ValueError(f"invalid group name {group!r}")
            children = [m for m in members if m in groups and m not in self.names]
            hosts = [m for m in members if m not in children]
            items: dict[str, str] = {}
            if hosts or not children:
                items["hosts"] = ", ".join(hosts)
            if children:
                items["children"] = ", ".join(children)
            lines += ["", f"[group:{group}]", *_ini_items(items, GROUP_KEYS)]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, "\n".join(lines) + "\n", 0o600)
        return path


def _ini_items(items: Mapping[str, str], allowed: frozenset[str]) -> list[str]:
    """``key = value`` lines, rejecting keys hostbatch does not know and multi-line values."""
    lines = []
    for key, value in items.items():
        if key not in allowed:
            raise ValueError(f"inventory key {key!r} not allowed here (allowed: {sorted(allowed)})")
        if "\n" in value or "\r" in value:
            raise ValueError(f"inventory value for {key!r} contains a newline")
        lines.append(f"{key} = {value}")
    return lines


# --------------------------------------------------------------------- users


def ensure_test_user(name: str, password: str) -> None:
    """Create local Unix user ``name`` (``useradd -m -s /bin/bash``) and set its password.

    Idempotent: an existing user only gets its password (re)set.  Needed for
    password-auth and non-root tests; with ``UsePAM no`` sshd refuses *every*
    auth method for accounts whose shadow password is locked (``!``), which is
    what useradd leaves, so setting a password also unlocks key auth.
    """
    if os.geteuid() != 0:
        raise PermissionError("ensure_test_user needs root")
    if not _NAME_RE.match(name) or ":" in name:
        raise ValueError(f"invalid user name {name!r}")
    if "\n" in password:
        raise ValueError("password must not contain a newline")
    try:
        pwd.getpwnam(name)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "-m", "-s", "/bin/bash", name], capture_output=True, text=True, check=False
        )
        if proc.returncode not in (0, 9):  # 9: created concurrently by someone else
            raise RuntimeError(f"useradd {name} failed: {proc.stderr.strip()}") from None
    for attempt in range(10):  # /etc/shadow lock may be held by a concurrent chpasswd
        proc = subprocess.run(
            ["chpasswd"], input=f"{name}:{password}\n", capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return
        time.sleep(0.1 * (attempt + 1))
    raise RuntimeError(f"chpasswd for {name} failed: {proc.stderr.strip()}")


# ----------------------------------------------------------------------- CLI


def _parse_groups(specs: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--group expects NAME=H1,H2, got {spec!r}")
        groups[name] = [m.strip() for m in members.split(",") if m.strip()]
    return groups


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fleet",
        description="Start a fleet of real sshd servers on loopback addresses and write a "
        "hostbatch inventory for it.  Runs until SIGTERM/SIGINT (or detaches with --detach).",
    )
    parser.add_argument("--count", type=int, default=3, help="number of hosts (default 3)")
    parser.add_argument(
        "--workdir", type=Path, required=True, help="directory for keys, configs, logs"
    )
    parser.add_argument("--names", help="comma-separated host names (default h001, h002, ...)")
    parser.add_argument("--port", type=int, help="port for all hosts (default: free port >= 22000)")
    parser.add_argument("--first-address", default=DEFAULT_FIRST_ADDRESS)
    parser.add_argument(
        "--group", action="append", default=[], metavar="NAME=H1,H2", help="group (repeatable)"
    )
    parser.add_argument(
        "--private-tmp", action="store_true", help=f"private tmpfs on {PRIVATE_DIR} per host"
    )
    parser.add_argument(
        "--sshd-option", action="append", default=[], metavar="'Key value'", help="sshd_config line"
    )
    parser.add_argument("--user", default="root", help="login user for ssh_config/inventory")
    parser.add_argument("--inventory", type=Path, help="inventory path (default WORKDIR/hosts.ini)")
    parser.add_argument("--timeout", type=float, default=60.0, help="startup timeout in seconds")
    parser.add_argument(
        "--detach", action="store_true", help="daemonize once ready; pid in WORKDIR/fleet.pid"
    )
    return parser


def _run_fleet(args: argparse.Namespace, ready: Callable[[Path], None]) -> int:
    """Start the fleet, write the inventory, call ``ready`` and serve until a stop signal."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    workdir: Path = args.workdir
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    fleet = Fleet(
        workdir,
        args.count,
        names=names,
        port=args.port,
        first_address=args.first_address,
        private_tmp=args.private_tmp,
        extra_sshd_config="\n".join(args.sshd_option),
        user=args.user,
    )
    try:
        fleet.start(timeout=args.timeout)
        inventory = fleet.write_inventory(
            args.inventory or workdir / "hosts.ini", _parse_groups(args.group)
        )
        ready(inventory)
        while not stop.wait(3600):
            pass
    finally:
        fleet.stop()
    return 0


def _detach(args: argparse.Namespace) -> int:
    """Double-fork a daemon running the fleet; return once it is ready (or failed)."""
    pid_file = args.workdir / "fleet.pid"
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        os.waitpid(child, 0)
        if message.startswith("OK "):
            print(message[3:].strip(), flush=True)
            return 0
        print(message.strip() or "fleet daemon died during startup", file=sys.stderr)
        return 1
    os.close(read_fd)
    reported = False

    def report(message: str) -> None:
        """Send the one-line startup result to the waiting parent, once."""
        nonlocal reported
        if not reported:
            reported = True
            with contextlib.suppress(OSError):
                os.write(write_fd, f"{message}\n".encode())
            os.close(write_fd)

    os.setsid()
    if os.fork():
        os._exit(0)
    status = 1
    try:
        os.chdir("/")
        log_fd = os.open(args.workdir / "fleet.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null_fd)
        os.close(log_fd)
        # A daemon keeps nothing of its starter's: an inherited lock (flock FILE fleet
        # --detach) would otherwise stay held for the fleet's whole life.
        for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
            if fd > 2 and fd != write_fd:
                with contextlib.suppress(OSError):
                    os.close(fd)

        def ready(inventory: Path) -> None:
            _write_private(pid_file, f"{os.getpid()}\n", 0o644)
            report(f"OK {inventory}")

        status = _run_fleet(args, ready)
    except BaseException as exc:  # reported to the waiting parent
        report(f"ERROR {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        with contextlib.suppress(OSError):
            if pid_file.read_text().strip() == str(os.getpid()):
                pid_file.unlink()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; see ``python -m tests.support.fleet --help``."""
    args = _build_parser().parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.inventory is not None:
        args.inventory = args.inventory.resolve()
    if args.detach:
        return _detach(args)

    def ready(inventory: Path) -> None:
        print(inventory, flush=True)

    return _run_fleet(args, ready)


if __name__ == "__main__":
    sys.exit(main())
