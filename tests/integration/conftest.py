"""Shared fixtures and helpers for hostbatch's integration tests.

Every test runs the real CLI as a subprocess against real OpenSSH ``sshd`` hosts on loopback
(``tests.support.fleet``) or the fault-injecting paramiko server
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

All hosts run on this machine, so "pgrep on the host" is a pgrep on this machine that keeps
only processes of fleet sessions (sshd's ``SetEnv`` marker): the local hostbatch processes
carry the command in their argv too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import MARKER_VAR, Fleet, ensure_test_user

TEST_USER = "hbtest"
TEST_PASSWORD = "pw%#;x"
BATCH_RUN = str(Path(sys.executable).with_name("batch_run"))
HOSTBATCH = str(Path(sys.executable).with_name("hostbatch"))
MAIN_NAMES = ("web01", "web02", "web03", "db01")
SECOND_NAMES = ("app01", "app02")
OUTAGE_NAMES = ("ok1", "down1", "frozen1")
#: Environment variables a test run never inherits from the developer's shell.
SCRUBBED_ENV = ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "NO_COLOR", "FORCE_COLOR",
                "HOSTBATCH_INVENTORY", "CLICOLOR_FORCE")


# ------------------------------------------------------------------ results and parsing


@dataclass
class Result:
    """A finished CLI run."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float

    def __str__(self) -> str:
        return (f"argv={self.argv}\nstatus={self.returncode} after {self.duration:.2f}s\n"
                f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}")

    def events(self) -> list[dict[str, Any]]:
        """The ``--json`` events; every stdout line must be one JSON object."""
        return parse_jsonl(self.stdout)


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` split on ``\\n`` only (a final newline does not start a new line)."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    """Parse JSON Lines strictly: every line is a JSON object with a host and an event."""
    events = []
    for number, line in enumerate(split_lines(text), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"stdout line {number} is not JSON: {line[:200]!r}") from exc
        assert isinstance(obj, dict), line
        assert isinstance(obj.get("host"), str) and isinstance(obj.get("event"), str), line
        events.append(obj)
    return events


def terminals(events: Iterable[Mapping[str, Any]], hosts: Iterable[str]) -> dict[str, Any]:
    """The terminal event of each host; exactly one per selected host, none for others."""
    found: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        if event["event"] in ("exit", "error"):
            found.setdefault(event["host"], []).append(event)
    wanted = set(hosts)
    assert set(found) == wanted, f"terminal events for {sorted(found)}, expected {sorted(wanted)}"
    for host, items in found.items():
        assert len(items) == 1, f"{host} has {len(items)} terminal events: {items}"
        item = items[0]
        if item["event"] == "exit":
            assert isinstance(item["exit_status"], int), item
            assert isinstance(item["duration"], int | float), item
        else:
            assert isinstance(item["kind"], str) and isinstance(item["error"], str), item
    return {host: items[0] for host, items in found.items()}


def json_lines(events: Iterable[Mapping[str, Any]], host: str, stream: str) -> list[str]:
    """The ``data`` of every ``stream`` event of ``host``, in order."""
    return [e["data"] for e in events if e["host"] == host and e["event"] == stream]


def host_lines(text: str, hosts: Iterable[str], *, strict: bool = True) -> dict[str, list[str]]:
    """Group ``HOST: LINE`` lines by host.  With ``strict``, every line must be a host line."""
    hosts = list(hosts)
    result: dict[str, list[str]] = {host: [] for host in hosts}
    for line in split_lines(text):
        host, sep, rest = line.partition(": ")
        if sep and host in result:
            result[host].append(rest)
        elif strict:
            raise AssertionError(f"line is not 'HOST: LINE' for a selected host: {line[:200]!r}")
    return result


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr, str(result)
    assert "Traceback" not in result.stdout, str(result)


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


# ------------------------------------------------------------------ the CLI runner


class Cli:
    """Runs hostbatch as a subprocess in a controlled environment."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        home.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env["HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    @staticmethod
    def argv(args: Sequence[str], via: str = "batch_run") -> list[str]:
        if via == "batch_run":
            return [BATCH_RUN, *args]
        if via == "hostbatch":
            return [HOSTBATCH, "run", *args]
        if via == "module":
            return [sys.executable, "-m", "hostbatch", "run", *args]
        raise ValueError(via)

    def run(self, *args: str, via: str = "batch_run", env: Mapping[str, str] | None = None,
            timeout: float = 60, wrapper: Sequence[str] = ()) -> Result:
        argv = [*wrapper, *self.argv(args, via)]
        start = time.monotonic()
        # A session of its own, so a hung run can be killed with all its worker processes.
        proc = subprocess.Popen(argv, env=self.env(env), cwd=self.cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(
                f"hostbatch did not finish within {timeout}s (hung); argv={argv}\n"
                f"last stdout: {stdout[-500:]!r}\nlast stderr: {stderr[-500:]!r}") from None
        duration = time.monotonic() - start
        return Result(argv, proc.returncode, stdout.decode("utf-8"), stderr.decode("utf-8"),
                      duration)

    def popen(self, *args: str, env: Mapping[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.argv(args), env=self.env(env), cwd=self.cwd,
                                stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI runner whose HOME is an empty directory of this test."""
    return Cli(tmp_path / "home", tmp_path / "cwd")


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


def _require_environment() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (sshd fleet, test user)")
    if shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin") is None:
        pytest.skip("OpenSSH sshd is not installed")
    if not Path(BATCH_RUN).exists():
        pytest.skip(f"{BATCH_RUN} is missing: install hostbatch into this interpreter's venv")


@pytest.fixture(scope="session")
def test_user() -> str:
    _require_environment()
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


def interrupt_group(proc: subprocess.Popen[bytes]) -> None:
    """Send SIGINT to the process group of ``proc`` (started with start_new_session), as a
    terminal's Ctrl-C does to the foreground job."""
    os.killpg(proc.pid, signal.SIGINT)


ANSI = re.compile(r"\x1b\[[0-9;]*m")
