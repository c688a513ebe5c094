"""Relays (``via``) against real sshd: two sites that only their relays can reach.

Topology (tests.support.jumpnet, as test_jump): each site is a network namespace holding its
hosts' sshd (site1: s1a s1b s1c at 127.0.25.10-12, site2: s2a s2b at 127.0.26.10-11); from
the controller (this test's namespace) their addresses answer "connection refused". Each relay
is an sshd that accepts connections here (127.0.27.1-3) and serves each with ``sshd -i``
started *inside* its site's namespace, so the relay process it runs (``relay_command``) lives
in both views: the controller reaches it, and it reaches its site. relay1 and relay2 serve
site1, relay3 serves site2. Only loopback addresses are used, inside namespaces we create.

The relays log in as the test user, who cannot read the venv's interpreter under /root: the
relay command runs a Python of the same minor version that the user can run, with the
worktree's ``src`` and the venv's site-packages on its path (:func:`relay_command`). Site
hosts are reached with the test user's password, which travels only inside the job.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hostbatch.relay.protocol import PROTOCOL_VERSION
from tests.integration.conftest import (
    TEST_PASSWORD,
    Cli,
    remote_processes,
    wait_for_processes,
    write_inventory,
)
from tests.support.cli import assert_no_traceback
from tests.support.fleet import Fleet
from tests.support.jumpnet import InetdJumpHost, NamespacedFleet, NetNamespace

pytestmark = pytest.mark.integration

SITE1 = ("s1a", "s1b", "s1c")
SITE2 = ("s2a", "s2b")
ROOT = Path(__file__).resolve().parents[2]


def _runnable_command(user: str, paths: str) -> str | None:
    """The relay command with ``paths`` as its PYTHONPATH, if ``user`` can run it."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        probe = subprocess.run(["runuser", "-u", user, "--", "env", f"PYTHONPATH={paths}",
                                python, "-c", "import paramiko, hostbatch.relay.server"],
                               capture_output=True, timeout=60, check=False)
        if probe.returncode == 0:
            return f"env PYTHONPATH={paths} {python} -m hostbatch relay --stdio"
    return None


def relay_command(user: str, spare: Path) -> str:
    """The command that starts ``hostbatch relay --stdio`` as ``user`` on this machine.

    A checkout the user cannot read (a clone under /root) is copied, with the venv's
    site-packages, to ``spare``, a directory every user can read.
    """
    purelib = sysconfig.get_paths()["purelib"]
    command = _runnable_command(user, f"{ROOT / 'src'}:{purelib}")
    if command is None:
        spare.mkdir(mode=0o755)
        spare.chmod(0o755)
        shutil.copytree(ROOT / "src" / "hostbatch", spare / "src" / "hostbatch")
        shutil.copytree(purelib, spare / "lib", symlinks=True)
        for folder in (spare / "src", spare / "lib"):
            folder.chmod(0o755)
        command = _runnable_command(user, f"{spare / 'src'}:{spare / 'lib'}")
    if command is None:
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} that {user} "
                    "can run hostbatch with")
    return command


@dataclass
class RelayNet:
    site1: NamespacedFleet
    site2: NamespacedFleet
    relays: dict[str, InetdJumpHost]
    known_hosts: Path
    client_key: Path
    user: str
    command: str
    gate: Path

    def inventory(self, path: Path, *, site1_via: str = "relay1, relay2",
                  extra: dict[str, dict[str, str]] | None = None) -> Path:
        """Sites as groups with their ``via``; relays as hosts with their relay command."""
        hosts: dict[str, dict[str, str]] = {}
        for name, jump in self.relays.items():
            hosts[name] = {"hostname": jump.host.address, "port": str(jump.host.port),
                           "identity_file": str(self.client_key),
                           "relay_command": self.command}
        for fleet, names in ((self.site1, SITE1), (self.site2, SITE2)):
            for name in names:
                host = fleet.host(name)
                hosts[name] = {"hostname": host.address, "port": str(host.port),
                               "password": TEST_PASSWORD}
        hosts.update(extra or {})
        return write_inventory(path, hosts, {
            "site1": {"hosts": ", ".join(SITE1), "via": site1_via},
            "site2": {"hosts": ", ".join(SITE2), "via": "relay3"},
        }, defaults={"user": self.user, "known_hosts": str(self.known_hosts)})

    def release(self) -> None:
        """Let every command waiting on the gate go on."""
        self.gate.touch()

    def wait_for_gate(self, then: str = "") -> str:
        """Shell text: say ``up``, wait until the gate exists, then run ``then``."""
        return (f"echo up; while [ ! -e {self.gate} ]; do sleep 0.05; done; {then or 'true'}")


@pytest.fixture(scope="module")
def relaynet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayNet]:
    if shutil.which("nsenter") is None or shutil.which("ip") is None:
        pytest.skip("needs nsenter and ip (util-linux, iproute2)")
    spare = Path(f"/tmp/hostbatch-relay-code-{os.getpid()}")
    jumps: dict[str, InetdJumpHost] = {}
    try:
        command = relay_command(test_user, spare)
        workdir = tmp_path_factory.mktemp("relaynet")
        ns1, ns2 = NetNamespace(), NetNamespace()
        site1 = NamespacedFleet(workdir, len(SITE1), names=SITE1, netns=ns1,
                                first_address="127.0.25.10", user=test_user, private_tmp=True)
        site2 = NamespacedFleet(workdir, len(SITE2), names=SITE2, netns=ns2,
                                first_address="127.0.26.10", user=test_user)
        fleets = {name: Fleet(workdir, 1, names=[name], first_address=address, user=test_user,
                              extra_sshd_config="LogLevel VERBOSE")
                  for name, address in (("relay1", "127.0.27.1"), ("relay2", "127.0.27.2"),
                                        ("relay3", "127.0.27.3"))}
        with site1, site2:
            jumps = {"relay1": InetdJumpHost(fleets["relay1"], run_ns=ns1),
                     "relay2": InetdJumpHost(fleets["relay2"], run_ns=ns1),
                     "relay3": InetdJumpHost(fleets["relay3"], run_ns=ns2)}
            known = workdir / "known_hosts"
            lines = [h.known_hosts_line for f in (site1, site2, *fleets.values())
                     for h in f.hosts]
            known.write_text("".join(line + "\n" for line in lines))
            gates = Path(f"/tmp/hostbatch-relay-test-{os.getpid()}")
            gates.mkdir(mode=0o777, exist_ok=True)
            gates.chmod(0o777)
            try:
                yield RelayNet(site1, site2, jumps, known, site1.client_key, test_user, command,
                               gates / "go")
            finally:
                shutil.rmtree(gates, ignore_errors=True)
    finally:
        for jump in jumps.values():
            jump.close()
        shutil.rmtree(spare, ignore_errors=True)
        ns1.close()
        ns2.close()


@pytest.fixture
def gate(relaynet: RelayNet) -> Iterator[Path]:
    """A fresh gate for one test; released at the end, so nothing waits on it forever."""
    with contextlib.suppress(FileNotFoundError):
        relaynet.gate.unlink()
    yield relaynet.gate
    relaynet.release()


class LiveOutput:
    """A running controller's stdout, read line by line with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.lines: list[str] = []

    def until(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if select.select([self.fd], [], [], left)[0]:
                data = os.read(self.fd, 65536)
                if not data:
                    return predicate(self.lines)
                self.buffer += data
                *complete, self.buffer = self.buffer.split(b"\n")
                self.lines += [line.decode() for line in complete]
        return True



def relay_processes() -> list[str]:
    """``hostbatch relay --stdio`` processes (and their workers) left on the relays."""
    return remote_processes("hostbatch relay --stdio")


# ------------------------------------------------------------------ reach and results


def test_site_hosts_are_unreachable_without_their_relay(relaynet: RelayNet, cli: Cli,
                                                        tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    result = cli.run("-i", inventory, "-g", "site1,site2", "--via", "none", "--json",
                     "-cmd", "true")
    assert result.returncode == 3, result
    for name, event in result.terminals([*SITE1, *SITE2]).items():
        assert event["kind"] == "connect", (name, result)


def test_results_through_relays_equal_a_direct_run(relaynet: RelayNet, cli: Cli,
                                                   tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    command = ("echo $SSH_CONNECTION | cut -d' ' -f3; echo to-stderr >&2; "
               "printf 'no newline'; "
               "[ \"$(echo $SSH_CONNECTION | cut -d' ' -f3)\" = 127.0.25.11 ] && exit 7; exit 0")
    relayed = cli.run("-i", inventory, "-g", "site1", "--json", "-cmd", command)
    # The same run made directly from inside site1's namespace, as a machine there would.
    direct = cli.run("-i", inventory, "-g", "site1", "--via", "none", "--json", "-cmd",
                     command, wrapper=["nsenter", f"--net={relaynet.site1.netns.path}"])
    assert direct.returncode == relayed.returncode == 1, (direct, relayed)

    def comparable(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
        kept = [(e["host"], e["event"], e.get("data"), e.get("exit_status"))
                for e in events if e["event"] != "start"]
        return sorted(kept, key=repr)

    assert comparable(relayed.events()) == comparable(direct.events()), (relayed, direct)
    assert relaynet.relays["relay1"].accepted() >= 1


def test_explain_shows_the_route(relaynet: RelayNet, cli: Cli, tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    proc = subprocess.run([str(Path(sys.executable).parent / "hostbatch"), "inventory",
                           "explain", "-i", str(inventory), "s1a"],
                          capture_output=True, text=True, env=cli.env(), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^route\s+via relay1, fallback relay2\s+\(group site1\)$", proc.stdout,
                     re.MULTILINE), proc.stdout


def test_list_by_relay_shows_each_route(relaynet: RelayNet, cli: Cli, tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    result = cli.run("-i", inventory, "-g", "site2,site1", "-h", "relay1", "--list",
                     "--by-relay")
    assert result.returncode == 0, result
    # Selection keeps inventory order: relays first, then site1, then site2.
    assert result.stdout == ("direct: relay1\nrelay1, relay2: s1a s1b s1c\n"
                             "relay3: s2a s2b\n"), result
    forced = cli.run("-i", inventory, "-g", "site1", "--list", "--by-relay", "--via", "relay3")
    assert forced.stdout == "relay3: s1a s1b s1c\n", forced


def test_lines_stream_live_through_the_relay(relaynet: RelayNet, spawn: Callable[..., Any],
                                             gate: Path, tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    proc = spawn("-i", inventory, "-h", "s2a", "-cmd", relaynet.wait_for_gate("echo after"))
    out = LiveOutput(proc)
    # The command is still waiting on the gate, yet its first line has arrived.
    assert out.until(lambda lines: "s2a: up" in lines, 60), out.lines
    assert proc.poll() is None
    relaynet.release()
    assert out.until(lambda lines: "s2a: after" in lines, 60), out.lines
    assert proc.wait(timeout=60) == 0


def test_a_put_through_a_relay_lands_verified_on_every_host(relaynet: RelayNet, cli: Cli,
                                                             tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini", site1_via="relay2")
    tree = tmp_path / "payload"
    (tree / "sub").mkdir(parents=True)
    (tree / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (tree / "sub" / "empty").write_bytes(b"")
    (tree / "sub" / "note.txt").write_text("hello\n")
    scp = Cli(cli.home, cli.cwd, command="scp")
    before = relaynet.relays["relay2"].accepted()
    result = scp.run("-i", inventory, "-g", "site1", "--json", "--verify", "-r", "-action",
                     "put", "-local", tree, "-remote", "/srv/hostbatch-fleet/")
    assert result.returncode == 0, result
    assert relaynet.relays["relay2"].accepted() - before == 1  # one relay session: sent once
    for event in result.terminals(SITE1).values():
        assert event["files"] == 3, result
    check = cli.run("-i", inventory, "-g", "site1", "-cmd",
                    "cd /srv/hostbatch-fleet/payload && sha256sum big.bin sub/empty sub/note.txt")
    assert check.returncode == 0, check
    import hashlib

    expected = [f"{hashlib.sha256((tree / name).read_bytes()).hexdigest()}  {name}"
                for name in ("big.bin", "sub/empty", "sub/note.txt")]
    for name in SITE1:
        assert [line.split(": ", 1)[1] for line in check.stdout.splitlines()
                if line.startswith(f"{name}: ")] == expected, check


def tree_of(folder: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry below ``folder``: its kind, mode and content (a link's target)."""
    found: dict[str, tuple[str, int, bytes | str]] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            found[name] = ("dir", info.st_mode & 0o7777, b"")
        else:
            found[name] = ("file", info.st_mode & 0o7777, path.read_bytes())
    return found


def test_a_get_through_a_relay_lands_what_a_direct_get_lands(relaynet: RelayNet, cli: Cli,
                                                             tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    made = cli.run("-i", inventory, "-g", "site1", "-cmd",
                   "cd /srv/hostbatch-fleet && rm -rf tree && mkdir -p tree/sub tree/ro && "
                   "echo $SSH_CONNECTION > tree/who && head -c 3000007 /dev/urandom > tree/big"
                   " && : > tree/sub/empty && printf x > tree/sub/f && chmod 640 tree/sub/f && "
                   "ln -s who tree/link && echo in > tree/ro/in && chmod 550 tree/ro && "
                   "chmod 711 tree/sub")
    assert made.returncode == 0, made
    scp = Cli(cli.home, cli.cwd, command="scp")
    for name, args in (("file", ["/srv/hostbatch-fleet/tree/big"]),
                       ("tree", ["-r", "-p", "/srv/hostbatch-fleet/tree"])):
        relayed, direct = tmp_path / f"relayed-{name}", tmp_path / f"direct-{name}"
        *flags, remote = args
        result = scp.run("-i", inventory, "-g", "site1", "--json", "--verify", *flags,
                         "-action", "get", "-remote", remote, "-local", relayed)
        assert result.returncode == 0, result
        done = result.terminals(SITE1)
        files = [e for e in result.events() if e["event"] == "file"]
        assert {e["host"] for e in files} == set(SITE1), result
        for event in files:  # the file events name where the files landed here
            assert Path(event["destination"]).is_file(), event
            assert str(event["destination"]).startswith(str(relayed)), event
        # The same get made from inside site1's namespace, as a machine there would.
        straight = scp.run("-i", inventory, "-g", "site1", "--json", "--verify", "--via",
                           "none", *flags, "-action", "get", "-remote", remote, "-local",
                           direct, wrapper=["nsenter", f"--net={relaynet.site1.netns.path}"])
        assert straight.returncode == 0, straight
        for host in SITE1:
            assert done[host]["files"] == straight.terminals(SITE1)[host]["files"], result
            got = tree_of(relayed / host)
            assert got == tree_of(direct / host), host
            assert not [n for n in got if n.endswith(".part")], got
    # -p kept the times, of files and of directories
    for name in ("tree/big", "tree/ro"):
        assert os.stat(tmp_path / "relayed-tree" / "s1a" / name).st_mtime == \
            os.stat(tmp_path / "direct-tree" / "s1a" / name).st_mtime
    whos = {(tmp_path / "relayed-tree" / host / "tree" / "who").read_text().split()[2]
            for host in SITE1}
    assert whos == {"127.0.25.10", "127.0.25.11", "127.0.25.12"}  # each host's own files


@pytest.mark.parametrize("how", ["relay killed", "ctrl-c"])
def test_a_get_ended_mid_file_leaves_no_partial_file(relaynet: RelayNet, cli: Cli,
                                                     spawn: Callable[..., Any],
                                                     tmp_path: Path, how: str) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini", site1_via="relay1")
    small = "[ \"$(echo $SSH_CONNECTION | cut -d' ' -f3)\" = 127.0.25.10 ]"
    made = cli.run("-i", inventory, "-g", "site1", "-cmd",
                   f"cd /srv/hostbatch-fleet && rm -rf g && mkdir g && if {small}; then "
                   "echo small > g/data; else head -c 64M /dev/urandom > g/data; fi && "
                   "sha256sum g/data")
    assert made.returncode == 0, made
    sums = {line.split(": ")[0]: line.split()[1] for line in made.stdout.splitlines()}
    left, _ = wait_for_processes("hostbatch relay --stdio", 30, present=False)
    assert left == [], left  # the relay of the run above has exited: one relay to find below
    local = tmp_path / "got"
    proc = spawn("-i", inventory, "-g", "site1", "--json", "-action", "get", "-remote",
                 "/srv/hostbatch-fleet/g/data", "-local", local, command="scp")
    deadline = time.monotonic() + 120
    partial: list[Path] = []
    while not partial and proc.poll() is None and time.monotonic() < deadline:
        partial = list(local.glob("*/.data.hostbatch-*.part"))
        time.sleep(0.002)
    assert partial, "no file was ever being received"
    if how == "ctrl-c":  # the relay stops sending between chunks; the controller discards
        os.killpg(proc.pid, signal.SIGINT)
        expected_status, unfinished = 130, {"interrupted"}
    else:
        relay = relay_main_pid(relaynet.site1.netns)
        os.kill(relay, signal.SIGSTOP)  # nothing more is sent ...
        os.kill(relay, signal.SIGKILL)  # ... and the relay is gone
        expected_status, unfinished = 3, {"relay"}
    out = LiveOutput(proc)
    assert proc.wait(timeout=90) == expected_status
    out.until(lambda _: False, 5)
    from tests.support.cli import parse_jsonl, terminal_events

    events = terminal_events(parse_jsonl("\n".join(out.lines) + "\n"), SITE1, "scp")
    assert list(local.rglob("*.part")) == [], list(local.rglob("*"))
    assert any(event["event"] == "error" for event in events.values()), events
    import hashlib

    for host, event in events.items():
        landed = local / host / "data"
        # Whatever the outcome, a file in place is complete (the bytes in flight when the
        # relay stopped may have completed the one being received).
        if event["event"] == "done" or landed.exists():
            assert hashlib.sha256(landed.read_bytes()).hexdigest() == sums[host], host
        if event["event"] == "error":
            assert event["kind"] in unfinished, events
            if how == "relay killed":
                assert re.match(r"outcome unknown: relay relay1 lost after", event["error"])


@pytest.fixture
def controller_agent(relaynet: RelayNet, tmp_path: Path) -> Iterator[Path]:
    """An ssh-agent of this test holding a key that only it has (no file anywhere once
    loaded), authorized on site2's hosts for the test user; yields the agent's socket."""
    key = tmp_path / "agent_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, timeout=60)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    authorized = relaynet.site2.authorized_keys
    original = authorized.read_text()
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        subprocess.run(["ssh-add", "-q", str(key)], env={"SSH_AUTH_SOCK": str(sock)},
                       check=True, timeout=60, capture_output=True)
        key.unlink()
        authorized.write_text(original + Path(f"{key}.pub").read_text())
        yield sock
    finally:
        authorized.write_text(original)
        agent.kill()
        agent.wait(timeout=10)


@pytest.mark.parametrize("forward", ["yes", "no"])
def test_the_controller_agent_reaches_the_hosts_only_when_forwarded(
        relaynet: RelayNet, cli: Cli, controller_agent: Path, tmp_path: Path,
        forward: str) -> None:
    relay = relaynet.relays["relay3"].host
    extra = {name: {"hostname": relaynet.site2.host(name).address,
                    "port": str(relaynet.site2.host(name).port)} for name in SITE2}
    extra["relay3"] = {"hostname": relay.address, "port": str(relay.port),
                       "identity_file": str(relaynet.client_key),
                       "relay_command": relaynet.command, "forward_agent": forward}
    inventory = relaynet.inventory(tmp_path / "hosts.ini", extra=extra)  # no passwords
    result = cli.run("-i", inventory, "-g", "site2", "--json", "-cmd", "echo signed-in",
                     env={"SSH_AUTH_SOCK": str(controller_agent)})
    events = result.terminals(SITE2)
    assert_no_traceback(result)
    if forward == "yes":
        assert result.returncode == 0, result
        assert [e["data"] for e in result.events() if e["event"] == "stdout"] == \
            ["signed-in"] * 2, result
    else:  # the relay user has no key of its own: the same hosts refuse it
        assert result.returncode == 3, result
        for event in events.values():
            assert event["kind"] == "auth", result


def test_rollouts_gate_every_host_across_relays(relaynet: RelayNet, cli: Cli,
                                                tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    fail_first = "[ \"$(echo $SSH_CONNECTION | cut -d' ' -f3)\" = 127.0.25.10 ] && exit 4; true"
    canary = cli.run("-i", inventory, "-g", "site1,site2", "--json", "--canary", "1", "-cmd",
                     fail_first)
    events = canary.terminals([*SITE1, *SITE2])
    assert events["s1a"]["exit_status"] == 4, canary
    for name in (*SITE1[1:], *SITE2):
        assert events[name]["kind"] == "skipped", canary
        assert "a --canary host failed" in events[name]["error"], canary
    # One host at a time, whichever relay it is behind: a second host running at once would
    # find the lock taken.
    lock = relaynet.gate.parent / "one-at-a-time"
    waves = cli.run("-i", inventory, "-g", "site1,site2", "--json", "--batch", "1", "-cmd",
                    f"mkdir {lock} || exit 9; sleep 0.2; rmdir {lock}")
    assert waves.returncode == 0, waves
    assert [e["host"] for e in waves.events() if e["event"] == "exit"] == [*SITE1, *SITE2]
    stopped = cli.run("-i", inventory, "-g", "site2,site1", "--json", "--max-fail", "2",
                      "-f", "1", "-cmd", "exit 3")
    events = stopped.terminals([*SITE1, *SITE2])
    assert [name for name, e in events.items() if e.get("exit_status") == 3] == ["s1a", "s1b"]
    assert all(events[name]["kind"] == "skipped" for name in ("s1c", *SITE2)), stopped


# ------------------------------------------------------------------ failures


def relay_main_pid(netns: NetNamespace) -> int:
    """The relay process (not its workers) running in ``netns``."""
    wanted = os.readlink(netns.path)
    pids = set()
    for line in relay_processes():
        pid = int(line.split()[0])
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") == wanted:
                pids.add(pid)
    main = [pid for pid in pids
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            not in pids]
    assert len(main) == 1, (pids, main)
    return main[0]


def kill_relay_process(netns: NetNamespace) -> None:
    """SIGKILL the relay process (not its workers) running in ``netns``."""
    os.kill(relay_main_pid(netns), signal.SIGKILL)


@pytest.mark.parametrize("how", ["connection dropped", "relay process killed"])
def test_a_relay_lost_mid_run_leaves_exactly_its_unfinished_hosts_unknown(
        relaynet: RelayNet, spawn: Callable[..., Any], gate: Path, tmp_path: Path,
        cli: Cli, how: str) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    fast = "[ \"$(echo $SSH_CONNECTION | cut -d' ' -f3)\" = 127.0.25.10 ] && exit 0"
    proc = spawn("-i", inventory, "-g", "site1,site2", "--json", "-cmd",
                 f"{fast}; {relaynet.wait_for_gate()}")
    out = LiveOutput(proc)

    def ready(lines: list[str]) -> bool:
        text = "\n".join(lines)
        return ('"host": "s1a", "event": "exit"' in text
                and all(f'"host": "{n}", "event": "stdout", "data": "up"' in text
                        for n in ("s1b", "s1c", "s2a", "s2b")))

    assert out.until(ready, 90), out.lines
    if how == "connection dropped":
        relaynet.relays["relay1"].kill_connections()
    else:
        kill_relay_process(relaynet.site1.netns)
        # Lost at once: the relay's stdout closes with it (its workers do not hold it).
        assert out.until(lambda lines: sum('"kind": "relay"' in line for line in lines) == 2,
                         20), out.lines
    relaynet.release()
    assert proc.wait(timeout=90) == 3
    out.until(lambda _: False, 5)
    from tests.support.cli import parse_jsonl, terminal_events

    events = terminal_events(parse_jsonl("\n".join(out.lines) + "\n"), [*SITE1, *SITE2])
    assert events["s1a"]["exit_status"] == 0
    for name in ("s1b", "s1c"):
        assert events[name]["kind"] == "relay", events
        assert re.match(r"outcome unknown: relay relay1 lost after \d+\.\ds$",
                        events[name]["error"]), events
    for name in SITE2:
        assert events[name]["exit_status"] == 0, events  # the other site is unaffected
    # The relay saw its stdin end and killed its remote commands.
    left, _ = wait_for_processes(str(gate), 20, present=False)
    assert left == [], left
    # Unknown outcomes are failures for @failed, and "unknown" in the history.
    failed = subprocess.run([str(Path(sys.executable).parent / "batch_run"), "-i",
                             str(inventory), "-h", "@failed", "--list"], capture_output=True,
                            text=True, env=cli.env(), timeout=60, check=False)
    assert failed.stdout.split() == ["s1b", "s1c"], failed
    shown = subprocess.run([str(Path(sys.executable).parent / "hostbatch"), "history", "show",
                            "--json"], capture_output=True, text=True, env=cli.env(),
                           timeout=60, check=False)
    assert shown.returncode == 3 or shown.returncode == 0, shown
    assert "outcome unknown: relay relay1 lost after" in shown.stdout, shown


def test_a_frozen_relay_is_given_up_after_its_heartbeats_stop(
        relaynet: RelayNet, spawn: Callable[..., Any], gate: Path, tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    proc = spawn("-i", inventory, "-g", "site2", "--json", "-cmd", relaynet.wait_for_gate())
    out = LiveOutput(proc)
    assert out.until(lambda lines: sum('"data": "up"' in line for line in lines) == 2, 90), \
        out.lines
    frozen = relaynet.relays["relay3"].freeze_connections()
    try:
        started = time.monotonic()
        # Detected by the missing heartbeats (30 s), not by TCP: the relay's kernel answers.
        assert proc.wait(timeout=90) == 3
        assert time.monotonic() - started >= 25
    finally:
        relaynet.relays["relay3"].thaw(frozen)
    out.until(lambda _: False, 5)
    from tests.support.cli import parse_jsonl, terminal_events

    events = terminal_events(parse_jsonl("\n".join(out.lines) + "\n"), SITE2)
    for event in events.values():
        assert event["kind"] == "relay", events
        assert re.match(r"outcome unknown: relay relay3 lost after 3\d\.\ds$", event["error"])
    relaynet.release()


def test_a_relay_down_at_start_fails_over_to_the_next(relaynet: RelayNet, cli: Cli,
                                                      tmp_path: Path) -> None:
    down = {"relay0": {"hostname": "127.0.27.9", "port": str(relaynet.site1.port),
                       "identity_file": str(relaynet.client_key),
                       "relay_command": relaynet.command}}
    inventory = relaynet.inventory(tmp_path / "hosts.ini", site1_via="relay0, relay2",
                                   extra=down)
    before = relaynet.relays["relay2"].accepted()
    result = cli.run("-i", inventory, "-g", "site1", "--json", "-cmd", "echo ok")
    assert result.returncode == 0, result
    assert relaynet.relays["relay2"].accepted() - before == 1

    alone = relaynet.inventory(tmp_path / "alone.ini", site1_via="relay0", extra=down)
    result = cli.run("-i", alone, "-g", "site1", "--json", "-cmd", "echo ok")
    assert result.returncode == 3, result
    for event in result.terminals(SITE1).values():
        assert event["kind"] == "relay", result
        assert event["error"].startswith("relay relay0 unreachable: "), result


def test_a_relay_of_another_protocol_is_a_clean_error(relaynet: RelayNet, cli: Cli,
                                                      tmp_path: Path) -> None:
    fake = ("echo '{\"hello\": \"hostbatch-relay\", \"protocol\": 99, \"version\": \"9.9\"}'; "
            "cat > /dev/null")
    inventory = relaynet.inventory(tmp_path / "hosts.ini", site1_via="relay1")
    text = inventory.read_text().replace(f"relay_command = {relaynet.command}\n\n[host:relay2]",
                                         f"relay_command = {fake}\n\n[host:relay2]")
    inventory.write_text(text)
    result = cli.run("-i", inventory, "-g", "site1", "--json", "-cmd", "true", timeout=60)
    assert result.returncode == 3, result
    for event in result.terminals(SITE1).values():
        assert event["kind"] == "relay", result
        assert "protocol 99 (hostbatch 9.9)" in event["error"], result
        assert f"protocol {PROTOCOL_VERSION} (hostbatch " in event["error"], result
        assert "\n" not in event["error"]


# ------------------------------------------------------------------ ending runs


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_ending_the_controller_leaves_nothing_on_relays_or_hosts(
        relaynet: RelayNet, spawn: Callable[..., Any], gate: Path, tmp_path: Path,
        how: str) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    pattern = f"sleep 33{'11' if how == 'ctrl-c' else '12'}"
    proc = spawn("-i", inventory, "-g", "site1,site2", "-cmd", f"echo up; {pattern}")
    out = LiveOutput(proc)
    assert out.until(lambda lines: sum(line.endswith(": up") for line in lines) == 5, 90), \
        out.lines
    assert relay_processes(), "no relay process found while the run is going"
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    else:
        os.kill(proc.pid, signal.SIGKILL)  # the controller only: its workers are orphaned
    left, _ = wait_for_processes(pattern, 30, present=False)
    assert left == [], left
    relays, _ = wait_for_processes("hostbatch relay --stdio", 30, present=False)
    assert relays == [], relays


def test_passwords_never_reach_a_relay_process_argv_environment_or_files(
        relaynet: RelayNet, spawn: Callable[..., Any], gate: Path, tmp_path: Path) -> None:
    inventory = relaynet.inventory(tmp_path / "hosts.ini")
    proc = spawn("-i", inventory, "-g", "site1", "-cmd", relaynet.wait_for_gate())
    out = LiveOutput(proc)
    assert out.until(lambda lines: sum(line.endswith(": up") for line in lines) == 3, 90), \
        out.lines
    secret = TEST_PASSWORD.encode()
    pids = [int(line.split()[0]) for line in relay_processes()]
    assert pids
    for pid in pids:
        for part in ("cmdline", "environ"):
            assert secret not in Path(f"/proc/{pid}/{part}").read_bytes(), (pid, part)
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = Path(os.readlink(fd))
                if target.is_file():
                    assert secret not in target.read_bytes(), target
    for leftover in Path("/tmp").glob("hostbatch-relay-*/**/*"):
        if leftover.is_file():
            assert secret not in leftover.read_bytes(), leftover
    relaynet.release()
    assert proc.wait(timeout=60) == 0

