"""``hostbatch console`` on a pseudo-terminal against real sshd hosts.

Each test starts the console as a user would meet it: stdin, stdout and stderr on a pty that
is the console's controlling terminal, so Ctrl-C is typed (``\\x03``) and the terminal turns it
into SIGINT for the console's process group, and TAB goes through readline. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import secrets
import select
import shlex
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hostbatch.actions import RunCommand, RunInput
from hostbatch.ssh.context import HostContext
from tests.integration.conftest import (
    HOSTBATCH,
    SCRUBBED_ENV,
    Cli,
    address,
    on_address,
    wait_for_processes,
)
from tests.integration.test_admin import sudo_user
from tests.integration.test_jump import TARGETS, JumpNet, jumpnet
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration
__all__ = ["jumpnet", "sudo_user"]  # fixtures of test_jump and test_admin, used here too

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|[\x01\x02]")
PROMPT = re.compile(rb"\((\d+)\)( sudo)?> $")
MAIN = ("db01", "web01", "web02", "web03")


def _take_terminal() -> None:
    """In the child: make the pty on stdin the controlling terminal of its new session."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class ConsolePty:
    """A console on a pty: type lines, read what the terminal shows until the next prompt."""

    def __init__(self, home: Path, cwd: Path, *args: str, program: tuple[str, ...] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        environ = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        environ.update({"HOME": str(home), "TERM": "xterm", "PYTHONUNBUFFERED": "1",
                        "INPUTRC": "/dev/null", **(env or {})})
        argv = [*(program or (HOSTBATCH, "console")), *args]
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=environ,
                                     cwd=cwd, start_new_session=True,
                                     preexec_fn=_take_terminal)
        os.close(slave)
        self.shown = b""

    def _read(self, timeout: float) -> bool:
        if not select.select([self.master], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the console and its workers are gone
            data = b""
        self.shown += data
        return bool(data)

    def expect(self, pattern: re.Pattern[bytes] | bytes, timeout: float = 60) -> str:
        """Everything shown (escape sequences removed) up to and including ``pattern``."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            clean = ANSI.sub(b"", self.shown).replace(b"\r", b"")
            match = regex.search(clean)
            if match:
                self.shown = clean[match.end():]
                return clean[:match.end()].decode("utf-8", "replace")
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not shown; the terminal shows: {clean[-3000:]!r}"
            if not self._read(min(left, 1.0)) and not regex.search(clean):
                raise AssertionError(f"the console ended before {pattern!r}: {clean[-3000:]!r}")

    def until_prompt(self, timeout: float = 60) -> str:
        """What was shown up to the next prompt (the prompt included)."""
        return self.expect(re.compile(rb"\(\d+\)( sudo)?> (?=$)"), timeout)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def command(self, line: str, timeout: float = 60) -> str:
        """Type ``line`` and Enter; what was shown until the next prompt."""
        self.send(line + "\r")
        return self.until_prompt(timeout)

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the console to end; its exit status and what it showed last."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.05) and self.shown:
            if not select.select([self.master], [], [], 0)[0]:
                break
        status = self.proc.wait(timeout=5)
        return status, ANSI.sub(b"", self.shown).decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            os.close(self.master)


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def console_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def start(console_home: Path, tmp_path: Path, main_inventory: Path) -> Iterator[Any]:
    """Start consoles on the main fleet (``-i`` given); each is killed at the end if left."""
    consoles: list[ConsolePty] = []

    def spawn(*args: str, program: tuple[str, ...] = (), inventory: Path = main_inventory,
              env: Mapping[str, str] | None = None) -> ConsolePty:
        console = ConsolePty(console_home, tmp_path, "-i", str(inventory), *args,
                             program=program, env=env)
        consoles.append(console)
        return console

    yield spawn
    for console in consoles:
        console.close()


def host_lines(text: str) -> dict[str, list[str]]:
    """``HOST: LINE`` lines by host."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^(db01|web0[1-3]): (.*)$", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def client_ports(text: str) -> dict[str, str]:
    """Each host's client port, from ``echo port=$SSH_CONNECTION`` lines."""
    return {host: line.split()[1] for host, lines in host_lines(text).items()
            for line in lines if line.startswith("port=")}


def hostbatch(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    environ["HOME"] = str(home)
    return subprocess.run([HOSTBATCH, *args], capture_output=True, text=True, env=environ,
                          timeout=60, check=False, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------ tests


def test_commands_run_on_open_connections(start: Any) -> None:
    console = start("-g", "everything")
    shown = console.until_prompt()
    assert "connected to 4 of 4 hosts" in shown and shown.endswith("db01,web[01-03] (4)> ")
    first = console.command("echo port=$SSH_CONNECTION")
    assert "hostbatch: 4 hosts in" in first and "4 ok" in first
    again = console.command("echo port=$SSH_CONNECTION; uname -s")
    assert client_ports(again) == client_ports(first), "a command opened a new connection"
    assert all(lines[-1] == "Linux" for lines in host_lines(again).values())
    console.send("\x04")
    status, _ = console.finish()
    assert status == 0


def test_special_commands(start: Any, main_fleet: Fleet) -> None:
    console = start("-g", "everything")
    console.until_prompt()
    gathered = console.command("=")
    assert "output: gathered" in gathered
    shown = console.command("echo same-everywhere")
    assert "---- db01,web[01-03] (4) ----\nsame-everywhere" in shown
    assert "streamed" in console.command(":gather")
    assert console.command(":remove web01").endswith("db01,web[02-03] (3)> ")
    assert console.command("-@db_servers").endswith("web[02-03] (2)> ")
    assert console.command("+web01").endswith("web[01-03] (3)> ")
    assert console.command(":add @everything").endswith("db01,web[01-03] (4)> ")
    failing = on_address(address(main_fleet, "web02"), "exit 3", "true")
    shown = console.command(failing)
    assert "1 failed" in shown and "exit 3 (1): web02" in shown
    assert console.command(":failed").endswith("web02 (1)> ")
    assert console.command(":ok").endswith("db01,web[01,03] (3)> ")
    assert console.command(":all").endswith("db01,web[01-03] (4)> ")
    listed = console.command("@")
    assert "db01,web[01-03] (4 hosts)" in listed and "connected" in listed
    assert "sudo: on" in console.command(":sudo")
    assert "sudo: off" in console.command(":sudo")
    assert "timeout: 1s" in console.command(":timeout 1")
    shown = console.command("sleep 30")
    assert "4 timed out" in shown
    assert "timeout: none" in console.command(":timeout 0")
    assert "local-4" in console.command("!echo local-$((2+2))")
    assert re.search(r"\d+  :timeout 0\n", console.command(":history 3"))
    assert ":failed" in console.command(":help")
    assert "did you mean :hosts?" in console.command(":hots")
    assert "no host" in console.command(":remove @everything")
    console.send(":quit\r")
    status, _ = console.finish()
    assert status == 0


def test_commands_are_recorded_in_the_history(start: Any, console_home: Path,
                                              main_fleet: Fleet) -> None:
    console = start("-h", "web01,web02")
    console.until_prompt()
    failing = on_address(address(main_fleet, "web02"), "echo bad; exit 4", "echo good")
    console.command(failing)
    console.send("\x04")
    assert console.finish()[0] == 0
    listed = hostbatch(console_home, "history", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "exit 4" in listed.stdout
    shown = hostbatch(console_home, "history", "show")
    assert "web01: good" in shown.stdout and "web02: bad" in shown.stdout
    lines = (console_home / ".local/state/hostbatch/console_history").read_text()
    assert "exit 4" in lines
    # @failed (in :add) reads the same history: web02 failed in the last run.
    console = start("-h", "web01")
    console.until_prompt()
    assert console.command(":add @failed").endswith("web[01-02] (2)> ")


def test_ctrl_c_kills_the_command_on_every_host_and_keeps_the_connections(start: Any) -> None:
    token = str(int(time.time() * 1000) % 100000 + 3_200_000)
    console = start("-g", "everything")
    console.until_prompt()
    before = client_ports(console.command("echo port=$SSH_CONNECTION"))
    console.send(f"echo started; sleep {token}\r")
    console.expect(re.compile(rb"(?s)(?=.*db01: started)(?=.*web01: started)"
                              rb"(?=.*web02: started).*web03: started"))
    found, _ = wait_for_processes(f"sleep {token}", 30, present=True)
    assert len(found) == 4, found
    console.send("\x03")
    shown = console.until_prompt()
    assert "4 interrupted" in shown, shown
    left, _ = wait_for_processes(f"sleep {token}", 15, present=False)
    assert left == [], f"remote commands left running: {left}"
    after = client_ports(console.command("echo port=$SSH_CONNECTION"))
    assert after == before, "Ctrl-C closed connections"
    # At the prompt Ctrl-C clears the line and the console stays. It is typed once readline
    # shows the text: Python's readline loses a SIGINT that comes between drawing the prompt
    # and waiting for input (it waits on stdin alone), and ISIG flushes what was typed.
    console.send("echo never")
    console.expect(b"echo never")
    console.send("\x03")
    console.until_prompt()
    shown = console.command("true")
    assert "4 ok" in shown and "never" not in shown


def test_ctrl_c_under_sudo_kills_roots_command(start: Any, tmp_path: Path, main_fleet: Fleet,
                                               sudo_user: str) -> None:
    from tests.integration.conftest import fleet_host, write_inventory
    from tests.integration.test_admin import SUDO_PASSWORD

    inventory = write_inventory(
        tmp_path / "sudo.ini",
        {"web01": fleet_host(main_fleet, "web01", sudo_password=SUDO_PASSWORD)},
        defaults={"user": sudo_user})
    token = str(int(time.time() * 1000) % 100000 + 3_300_000)
    console = start("-h", "web01", "--sudo", inventory=inventory)
    assert console.until_prompt().endswith("web01 (1) sudo> ")
    assert "web01: 0" in console.command("id -u")
    console.send(f"sleep {token}\r")
    found, _ = wait_for_processes(f"sleep {token}", 30, present=True, user="root")
    assert found, "the command did not start as root"
    console.send("\x03")
    assert "1 interrupted" in console.until_prompt()
    left, _ = wait_for_processes(f"sleep {token}", 15, present=False)
    assert left == [], f"root's command left running: {left}"
    assert SUDO_PASSWORD not in console.command("echo done")
    # The sudo password is a secret: masked in output, the run history and the lines typed.
    shown = console.command(f"echo {shlex.quote(SUDO_PASSWORD)}")
    assert "web01: ***" in shown and SUDO_PASSWORD not in shown
    assert "1 ok" in console.command(f"true # {SUDO_PASSWORD}")  # typed as such
    console.send("\x04")
    assert console.finish()[0] == 0
    home = tmp_path / "home"
    typed = (home / ".local/state/hostbatch/console_history").read_bytes()
    assert SUDO_PASSWORD.encode() not in typed and b"true # ***" in typed
    recorded = hostbatch(home, "history", "show")
    assert recorded.returncode == 0 and SUDO_PASSWORD not in recorded.stdout + recorded.stderr


def test_reconnects_a_host_whose_sshd_restarted(start: Any, main_fleet: Fleet) -> None:
    console = start("-h", "web01,web02")
    console.until_prompt()
    before = client_ports(console.command("echo port=$SSH_CONNECTION"))
    main_fleet.stop_host("web02")
    try:
        shown = console.command("echo port=$SSH_CONNECTION")
        assert "web01: port=" in shown and re.search(r"web02: \w+: ", shown), shown
        assert shown.endswith("web[01-02] (2)> "), "the failed host left the selection"
        assert "not connected" in console.command(":hosts")
    finally:
        main_fleet.start_host("web02")
    after = client_ports(console.command("echo port=$SSH_CONNECTION"))
    assert after["web01"] == before["web01"]
    assert after["web02"] != before["web02"], "web02 was not reconnected"
    assert "connected" in console.command("@")


def test_tab_completes_specials_hosts_and_groups(start: Any) -> None:
    console = start("-h", "web01")
    console.until_prompt()
    console.send(":hel\t")
    console.expect(b":help")
    assert ":gather" in console.command("")
    console.send("+db\t")
    console.expect(b"+db01")
    assert console.command("").endswith("db01,web01 (2)> ")
    console.send("-@db_s\t")
    console.expect(b"-@db_servers")
    assert console.command("").endswith("web01 (1)> ")


def test_batch_run_without_a_command(start: Any, main_inventory: Path, cli: Cli) -> None:
    from tests.integration.conftest import BATCH_RUN

    console = start("-h", "web01", program=(BATCH_RUN,))
    assert console.until_prompt().endswith("web01 (1)> ")
    console.send("\x04")
    assert console.finish()[0] == 0
    result = cli.run("-i", str(main_inventory), "-h", "web01")
    assert result.returncode == 2 and "no command given" in result.stderr
    plain = hostbatch(cli.home, "console", "-i", str(main_inventory), "-h", "web01")
    assert plain.returncode == 2 and "needs a terminal" in plain.stderr


def test_idle_timeout_ends_the_session(start: Any) -> None:
    console = start("-h", "web01", "--idle-timeout", "1")
    console.until_prompt()
    status, shown = console.finish()
    assert status == 0 and "nothing typed for 1s" in shown


def _resources(pid: int) -> tuple[int, int, int]:
    """Descriptors, threads and resident kB of ``pid`` and its children together."""
    pids = [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    fds = threads = rss = 0
    for each in pids:
        fds += len(os.listdir(f"/proc/{each}/fd"))
        threads += len(os.listdir(f"/proc/{each}/task"))
        status = Path(f"/proc/{each}/status").read_text()
        rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return fds, threads, rss


def test_resources_stay_bounded_over_many_commands(start: Any) -> None:
    console = start("-g", "everything", "--no-history")
    console.until_prompt()
    for _ in range(20):
        console.command("echo x")
    fds, threads, rss = _resources(console.proc.pid)
    for _ in range(150):
        console.command("echo x")
    fds_after, threads_after, rss_after = _resources(console.proc.pid)
    assert fds_after <= fds, (fds, fds_after)
    assert threads_after <= threads, (threads, threads_after)
    assert rss_after - rss < 8 * 1024, f"resident memory grew by {rss_after - rss} kB"


def test_through_a_jump_host_on_one_connection_for_the_session(start: Any, tmp_path: Path,
                                                               jumpnet: JumpNet) -> None:
    inventory = jumpnet.inventory(tmp_path / "jump.ini")
    before = jumpnet.bastion.accepted()
    console = start("-g", "targets", inventory=inventory)
    assert f"connected to {len(TARGETS)} of {len(TARGETS)}" in console.until_prompt()
    for _ in range(3):
        shown = console.command("echo $SSH_CONNECTION | cut -d' ' -f3")
        assert f"{len(TARGETS)} ok" in shown
        for name in TARGETS:
            assert f"{name}: {jumpnet.targets.host(name).address}" in shown, shown
    assert jumpnet.bastion.accepted() - before == 1, "the bastion saw more than one connection"


def test_accept_new_records_keys_once(start: Any, tmp_path: Path, main_fleet: Fleet,
                                      console_home: Path) -> None:
    from tests.integration.conftest import write_inventory

    sections = {name: {"hostname": main_fleet.host(name).address,
                       "port": str(main_fleet.host(name).port),
                       "identity_file": str(main_fleet.client_key)} for name in ("web01", "web02")}
    inventory = write_inventory(tmp_path / "new.ini", sections, defaults={"user": "hbtest"})
    console = start("-g", "all", "--accept-new", inventory=inventory)
    shown = console.until_prompt()
    assert shown.count("recorded new host key") == 2 and "connected to 2 of 2" in shown
    assert "2 ok" in console.command("true")
    known = (console_home / ".ssh" / "known_hosts").read_text().splitlines()
    assert len(known) == 2, known


def test_a_worker_that_died_is_replaced_before_the_next_command(start: Any) -> None:
    console = start("-g", "everything")
    console.until_prompt()
    assert "4 ok" in console.command("true")
    pid = console.proc.pid
    workers = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    assert workers, "no worker process"
    os.kill(workers[0], signal.SIGKILL)
    # Dead once every thread is gone (a killed leader shows "Z" while its threads still exit,
    # and cannot be reaped until then); the console reaps it before the next command.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{workers[0]}/stat").read_text().split(") ", 1)[1][0]
            if state == "Z" and len(os.listdir(f"/proc/{workers[0]}/task")) == 1:
                break
        time.sleep(0.05)
    shown = console.command("echo after")
    assert "4 ok" in shown and len(host_lines(shown)) == 4, shown


# ------------------------------------------------------------------ the resident shell
# The console runs plain commands through one shell kept running per host
# (hostbatch.ssh.resident). These drive a Session directly, as a standing worker does, to
# check the bytes of both streams exactly; the console tests above go through it too.

DASH_USER = "hbdash"


class Collected:
    """A HostContext's output, by stream, as the session passed it on."""

    def __init__(self) -> None:
        self.streams: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.seen = threading.Event()
        self.watch = b""

    def on_lines(self, stream: str, block: bytes, added_newline: bool) -> None:
        self.streams[stream] += block[:-1] if added_newline else block
        if self.watch and self.watch in self.streams[stream]:
            self.seen.set()


def _context(collected: Collected, **options: Any) -> HostContext:
    return HostContext("web01", "HBM-" + secrets.token_hex(8), on_lines=collected.on_lines,
                       **options)


@contextlib.contextmanager
def standing_session(inventory: Path, tmp_path: Path, host: str = "web01") -> Iterator[Any]:
    """An open session to ``host`` keeping a resident shell, as the console's workers do."""
    from hostbatch.inventory.loader import load_inventory
    from hostbatch.ssh.connect import Connector

    spec = load_inventory(inventory).hosts[host]
    connector = Connector(home=str(tmp_path), accept_new=False, retries=0)
    session = connector.open(spec, lambda *_: None)
    session.linger()
    session.keep_shell()
    try:
        yield session
    finally:
        session.close()


def run_on(session: Any, command: str, **options: Any) -> tuple[Any, Collected]:
    collected = Collected()
    result = session.run(RunCommand(command), RunInput(), _context(collected, **options))
    return result, collected


def test_resident_shell_output_arrives_exactly(main_inventory: Path, tmp_path: Path) -> None:
    with standing_session(main_inventory, tmp_path) as session:
        result, got = run_on(session, "printf 'a\\nno-newline'; printf 'err-tail' >&2; exit 7")
        assert result.exit_status == 7
        assert got.streams == {"stdout": b"a\nno-newline", "stderr": b"err-tail"}
        fake = "hostbatch-end-0000000000000000 0"
        _, got = run_on(session, f"echo '{fake}'; printf hostbatch-end-; echo x >&2; echo y")
        assert got.streams == {"stdout": f"{fake}\nhostbatch-end-y\n".encode(),
                               "stderr": b"x\n"}
        _, got = run_on(session, "printf '\\000\\377\\376bin\\r\\n'; seq 1 200000")
        expected = b"\x00\xff\xfebin\r\n" + "".join(f"{n}\n" for n in range(1, 200001)).encode()
        assert got.streams["stdout"] == expected
        shells = {run_on(session, "echo $$")[1].streams["stdout"] for _ in range(3)}
        assert len(shells) == 1, "each command did not run in the same resident shell"


def test_resident_commands_keep_no_state(main_inventory: Path, tmp_path: Path) -> None:
    with standing_session(main_inventory, tmp_path) as session:
        home = run_on(session, "pwd")[1].streams["stdout"]
        run_on(session, "cd /tmp; export HBX=1; HBY=2; set -e; alias ll=ls")
        _, got = run_on(session, 'pwd; echo "${HBX:-unset}${HBY:-unset}"; alias ll; exit 0')
        assert got.streams["stdout"] == home + b"unsetunset\n"


def test_a_killed_resident_shell_is_started_again(main_inventory: Path, tmp_path: Path) -> None:
    with standing_session(main_inventory, tmp_path) as session:
        first = int(run_on(session, "echo $$")[1].streams["stdout"])
        os.kill(first, signal.SIGKILL)  # the hosts run on this machine
        result, got = run_on(session, "echo $$; echo ok")
        second, ok = got.streams["stdout"].split()
        assert result.exit_status == 0 and ok == b"ok" and int(second) != first
        assert run_on(session, "echo $$")[1].streams["stdout"] == second + b"\n"


def _stopped_at(session: Any, command: str, started: bytes, **options: Any) -> str:
    """Run ``command``; cancel it once ``started`` was printed (or let its timeout act);
    the message it failed with."""
    from hostbatch.ssh.errors import HostJobError

    collected = Collected()
    collected.watch = started
    cancelled = threading.Event()
    ctx = _context(collected, cancelled=cancelled, **options)
    if "timeout" not in options:
        threading.Thread(target=lambda: collected.seen.wait(30) and cancelled.set(),
                         daemon=True).start()
    with pytest.raises(HostJobError) as failure:
        session.run(RunCommand(command), RunInput(), ctx)
    return str(failure.value)


def test_a_stopped_resident_command_leaves_no_process_and_keeps_the_shell(
        main_inventory: Path, tmp_path: Path) -> None:
    token = str(secrets.randbelow(10**6) + 3_400_000)
    with standing_session(main_inventory, tmp_path) as session:
        shell = run_on(session, "echo $$")[1].streams["stdout"]
        message = _stopped_at(session, f"echo started; sleep {token} | sleep {token}",
                              b"started")
        assert "interrupted; remote process group terminated" in message
        left, _ = wait_for_processes(f"sleep {token}", 15, present=False)
        assert left == [], f"remote commands left running: {left}"
        message = _stopped_at(session, f"sleep {token}", b"", timeout=0.5)
        assert "timed out after 0.5s" in message
        assert wait_for_processes(f"sleep {token}", 15, present=False)[0] == []
        assert run_on(session, "echo $$")[1].streams["stdout"] == shell


def test_a_login_shell_without_job_control_keeps_a_channel_per_command(
        main_fleet: Fleet, tmp_path: Path) -> None:
    from tests.integration.conftest import TEST_PASSWORD, fleet_host, write_inventory

    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash is not installed (the login shell without job control)")
    if subprocess.run(["id", DASH_USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", dash, DASH_USER], capture_output=True,
                       check=False)  # a concurrent suite may have made it meanwhile
    subprocess.run(["usermod", "-s", dash, DASH_USER], capture_output=True, check=True)
    subprocess.run(["chpasswd"], input=f"{DASH_USER}:{TEST_PASSWORD}\n".encode(), check=True)
    inventory = write_inventory(tmp_path / "dash.ini", {"web01": fleet_host(main_fleet, "web01")},
                                defaults={"user": DASH_USER})
    with standing_session(inventory, tmp_path) as session:
        pids = {run_on(session, "echo $$")[1].streams["stdout"] for _ in range(2)}
        assert len(pids) == 2, "commands did not get a channel each"
        result, got = run_on(session, "printf tail; exit 3")
        assert (result.exit_status, got.streams["stdout"]) == (3, b"tail")


def test_console_commands_share_the_shell_but_not_its_directory(start: Any) -> None:
    console = start("-h", "web01")
    console.until_prompt()
    first = host_lines(console.command("echo shell=$$; pwd"))["web01"]
    console.command("cd /tmp; export HBX=1")
    again = host_lines(console.command("echo shell=$$; pwd; echo ${HBX:-unset}"))["web01"]
    assert again == [*first, "unset"], (first, again)
    assert "web01: no-newline" in console.command("printf no-newline")
