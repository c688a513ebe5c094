"""Shared fixtures and helpers for hostbatch's integration tests.

Every test runs the real CLI as a subprocess (``tests.support.cli``) against real OpenSSH
``sshd`` hosts on loopback (``tests.support.fleet``) or the fault-injecting paramiko server
(``tests.support.fault_server``).  Nothing is mocked.

The environment of every run is controlled: ``HOME`` is a fresh directory (so ``~/.ssh`` is
empty unless a test fills it), ``SSH_AUTH_SOCK``/``NO_COLOR``/``HOSTBATCH_INVENTORY`` are
removed unless a test sets them, and the working directory holds no ``hosts.ini``.

Remote commands log in as the plain user ``hbtest``: root's ``~/.bashrc`` on this machine is
slow and noisy.  Only the few tests that must (killing root's commands, per-host users) log in
as root.

Address plan (each fleet its own range, so fleets never collide):

* 127.0.10.x  the main fleet: web01 web02 web03 db01 (session)
* 127.0.11.x  a second fleet on another port: app01 app02 (session)
* 127.0.12.x  20 hosts for concurrent host-key recording (module, test_host_keys)
* 127.0.13.x  FaultServer instances (per test)
* 127.0.14.x  plain listening sockets that must never see a connection
* 127.0.15.x  the outage fleet: ok1 down1 frozen1 (down1 is stopped for good) (session)
* 127.0.23.x  jump hosts of test_jump (module), silent listeners of test_ssh_config
* 127.0.24.x  test_jump's targets, inside a network namespace only jump hosts reach

All hosts run on this machine, so "pgrep on the host" is a pgrep on this machine that keeps
only processes of fleet sessions (sshd's ``SetEnv`` marker): the local hostbatch processes
carry the command in their argv too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import (
    BATCH_RUN,
    HOSTBATCH,
    SCRUBBED_ENV,
    Cli,
    Result,
    assert_no_traceback,
    host_lines,
    json_lines,
    parse_jsonl,
    require_environment,
    split_lines,
)
from tests.support.cli import terminal_events as terminals
from tests.support.fleet import MARKER_VAR, Fleet, ensure_test_user

#: Re-exported from tests.support.cli (the runner and parsers shared with the batch_scp suite):
#: the batch_run tests import them from this module.
__all__ = ["BATCH_RUN", "HOSTBATCH", "SCRUBBED_ENV", "Cli", "Result", "assert_no_traceback",
           "host_lines", "json_lines", "parse_jsonl", "split_lines", "terminals"]

TEST_USER = "hbtest"
TEST_PASSWORD = "pw%#;x"
MAIN_NAMES = ("web01", "web02", "web03", "db01")
SECOND_NAMES = ("app01", "app02")
OUTAGE_NAMES = ("ok1", "down1", "frozen1")


# ------------------------------------------------------------------ remote command helpers


def on_address(address: str, then: str, otherwise: str = "true") -> str:
    """Shell text running ``then`` only on the host reached at ``address``."""
    return (f"""if [ "$(echo $SSH_CONNECTION | cut -d' ' -f3)" = {address} ]; """
            f"then {then}; else {otherwise}; fi")


# ------------------------------------------------------------------ processes on the "hosts"


def _on_a_fleet_host(pid: int) -> bool:
    """True if ``pid`` runs in an sshd session of a test fleet (sshd's ``SetEnv`` marker)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return any(item.startswith(f"{MARKER_VAR}=".encode()) for item in environ.split(b"\0"))


def remote_processes(pattern: str, user: str | None = None) -> list[str]:
    """``pgrep -a -f PATTERN [-u USER]`` on the hosts: on this machine, keeping only processes
    of fleet sessions (the local hostbatch processes hold the command in their argv too)."""
    argv = ["pgrep", "-a", "-f", pattern]
    if user is not None:
        argv[1:1] = ["-u", user]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return [line for line in proc.stdout.splitlines() if _on_a_fleet_host(int(line.split()[0]))]


def wait_for_processes(pattern: str, timeout: float, *, present: bool,
                       user: str | None = None) -> tuple[list[str], float]:
    """Poll until processes matching ``pattern`` exist (``present``) or are all gone.

    Returns the last match list and how long it took.
    """
    start = time.monotonic()
    while True:
        found = remote_processes(pattern, user)
        if bool(found) == present or time.monotonic() - start > timeout:
            return found, time.monotonic() - start
        time.sleep(0.05)


#: pyenv's rehash lock. Root's ~/.bashrc on the development machine runs ``pyenv rehash``
#: at every login; a test that kills a root session while that runs (a timeout or Ctrl-C
#: under load) leaves the lock behind, and every later root login then waits 60 s for it.
PYENV_REHASH_LOCK = Path("/root/.pyenv/shims/.pyenv-shim")


@pytest.fixture(autouse=True)
def _no_stale_pyenv_lock() -> Iterator[None]:
    """Remove a rehash lock left by a killed root login (older than any live rehash)."""

    def clear() -> None:
        with contextlib.suppress(OSError):
            if time.time() - PYENV_REHASH_LOCK.stat().st_mtime > 2:
                PYENV_REHASH_LOCK.unlink()

    clear()
    yield
    clear()


# ------------------------------------------------------------------ the CLI runner


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A ``batch_run`` runner whose HOME is an empty directory of this test."""
    return Cli(tmp_path / "home", tmp_path / "cwd", command="run")


@pytest.fixture
def spawn(cli: Cli) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start the CLI (``command``: run, scp, hostbatch) in a session of its own, without
    waiting; whatever is left at the end of the test is killed by its group id."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str | Path, command: str = "run") -> subprocess.Popen[bytes]:
        runner = cli if command == cli.command else Cli(cli.home, cli.cwd, command=command)
        proc = runner.popen(*args, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ------------------------------------------------------------------ inventories


def write_inventory(
    path: Path,
    hosts: Mapping[str, Mapping[str, str]],
    groups: Mapping[str, Mapping[str, str] | Sequence[str]] | None = None,
    *,
    defaults: Mapping[str, str] | None = None,
    mode: int = 0o600,
) -> Path:
    """Write an INI inventory.  A group given as a list is its ``hosts``."""
    lines: list[str] = []
    if defaults:
        lines += ["[defaults]", *(f"{k} = {v}" for k, v in defaults.items()), ""]
    for name, options in hosts.items():
        lines += [f"[host:{name}]", *(f"{k} = {v}" for k, v in options.items()), ""]
    for name, spec in (groups or {}).items():
        items = {"hosts": ", ".join(spec)} if not isinstance(spec, Mapping) else spec
        lines += [f"[group:{name}]", *(f"{k} = {v}" for k, v in items.items()), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.chmod(mode)
    return path


def fleet_host(fleet: Fleet, name: str, **options: str) -> dict[str, str]:
    """A ``[host:]`` section reaching fleet host ``name`` with the fleet's key and known_hosts."""
    host = fleet.host(name)
    return {
        "hostname": host.address,
        "port": str(host.port),
        "identity_file": str(fleet.client_key),
        "known_hosts": str(fleet.known_hosts),
        **options,
    }


def address(fleet: Fleet, name: str) -> str:
    return fleet.host(name).address


# ------------------------------------------------------------------ fleets


@pytest.fixture(scope="session")
def test_user() -> str:
    require_environment(BATCH_RUN)
    ensure_test_user(TEST_USER, TEST_PASSWORD)
    return TEST_USER


@pytest.fixture(scope="session")
def main_fleet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("main-fleet"), len(MAIN_NAMES), names=MAIN_NAMES,
               first_address="127.0.10.10", user=test_user) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def second_fleet(
    test_user: str, main_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("second-fleet"), len(SECOND_NAMES), names=SECOND_NAMES,
               first_address="127.0.11.10", user=test_user) as fleet:
        assert fleet.port != main_fleet.port
        yield fleet


@pytest.fixture(scope="session")
def outage_fleet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """ok1 works, down1 is stopped (connection refused), frozen1 works unless a test freezes it."""
    with Fleet(tmp_path_factory.mktemp("outage-fleet"), len(OUTAGE_NAMES), names=OUTAGE_NAMES,
               first_address="127.0.15.10", user=test_user) as fleet:
        fleet.stop_host("down1")
        yield fleet


@pytest.fixture(scope="session")
def main_inventory(main_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The main fleet's inventory: groups web_clusters (a range), db_servers, everything."""
    return write_inventory(
        tmp_path_factory.mktemp("main-inventory") / "hosts.ini",
        {name: fleet_host(main_fleet, name) for name in MAIN_NAMES},
        {
            "web_clusters": ["web01", "web[02-03]"],
            "db_servers": ["db01"],
            "everything": {"children": "web_clusters, db_servers"},
        },
        defaults={"user": TEST_USER},
    )


# ------------------------------------------------------------------ keys and agents


def keygen(path: Path, key_type: str = "ed25519") -> Path:
    argv = ["ssh-keygen", "-t", key_type, "-N", "", "-q", "-C", f"throwaway-{path.name}",
            "-f", str(path)]
    if key_type == "rsa":
        argv[3:3] = ["-b", "2048"]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return path


@dataclass
class ThrowawayKeys:
    """Keys no host authorizes."""

    agent_keys: list[Path] = field(default_factory=list)
    default_keys: dict[str, Path] = field(default_factory=dict)


@pytest.fixture(scope="session")
def throwaway_keys(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayKeys:
    directory = tmp_path_factory.mktemp("throwaway-keys")
    keys = ThrowawayKeys()
    for number in range(7):
        keys.agent_keys.append(keygen(directory / f"agent{number}"))
    for name, key_type in (("id_ed25519", "ed25519"), ("id_ecdsa", "ecdsa"), ("id_rsa", "rsa"),
                           ("id_dsa", "dsa")):
        keys.default_keys[name] = keygen(directory / name, key_type)
    return keys


class Agent:
    """A real ``ssh-agent -D`` on its own socket, started and stopped by the test."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            assert self.proc.poll() is None, "ssh-agent died"
            assert time.monotonic() < deadline, "ssh-agent socket did not appear"
            time.sleep(0.01)

    @property
    def env(self) -> dict[str, str]:
        return {"SSH_AUTH_SOCK": str(self.socket_path)}

    def add(self, *keys: Path) -> None:
        env = {**os.environ, **self.env}
        proc = subprocess.run(["ssh-add", *map(str, keys)], env=env, capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
        assert proc.returncode == 0, proc.stderr
        listed = subprocess.run(["ssh-add", "-l"], env=env, capture_output=True, text=True,
                                timeout=30, check=False)
        assert len(listed.stdout.splitlines()) >= len(keys), listed.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Any]:
    """Start ssh-agents for one test; every agent is stopped (by pid) afterwards."""
    agents: list[Agent] = []
    # AF_UNIX paths are limited to ~107 bytes: keep the socket path short.
    directory = Path(f"/tmp/hbagent-{os.getpid()}-{time.monotonic_ns()}")
    directory.mkdir(mode=0o700)

    def start() -> Agent:
        agent = Agent(directory / f"s{len(agents)}")
        agents.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in agents:
            agent.stop()
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------ sockets


@contextlib.contextmanager
def silent_listener(addr: str) -> Iterator[tuple[socket.socket, int]]:
    """A listening TCP socket; the test checks afterwards that nobody connected."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((addr, 0))
    sock.listen(16)
    sock.setblocking(False)
    try:
        yield sock, sock.getsockname()[1]
    finally:
        sock.close()


def connection_pending(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def refused_port(addr: str) -> int:
    """A port on ``addr`` with no listener (bound then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((addr, 0))
        return int(sock.getsockname()[1])


def process_group_alive(pgid: int) -> bool:
    """Whether any process is left in process group ``pgid`` (a run's workers included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def interrupt_group(proc: subprocess.Popen[bytes]) -> None:
    """Send SIGINT to the process group of ``proc`` (started with start_new_session), as a
    terminal's Ctrl-C does to the foreground job."""
    os.killpg(proc.pid, signal.SIGINT)


ANSI = re.compile(r"\x1b\[[0-9;]*m")
