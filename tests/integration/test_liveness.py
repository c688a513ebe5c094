"""Faults that used to hang or orphan a run: a host that freezes (keepalives), SIGTERM and
SIGHUP to the whole process group, the controller killed outright, a second Ctrl-C, Ctrl-C in
the middle of a large get. Real sshd hosts, frozen with SIGSTOP as a hung machine is (its
kernel still answers TCP, so only an SSH-level keepalive can notice)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    HOSTBATCH,
    TEST_USER,
    Cli,
    fleet_host,
    json_lines,
    parse_jsonl,
    process_group_alive,
    terminals,
    wait_for_processes,
    write_inventory,
)
from tests.integration.test_kill import LineReader
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

NAMES = ("live01", "live02", "live03")
KEEPALIVE = ("--keepalive", "1", "--keepalive-count", "2")


@pytest.fixture(scope="module")
def live_fleet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Hosts of this module alone (127.0.16.x): tests freeze them."""
    with Fleet(tmp_path_factory.mktemp("live-fleet"), len(NAMES), names=NAMES,
               first_address="127.0.16.10", user=test_user) as fleet:
        yield fleet


@pytest.fixture
def inventory(live_fleet: Fleet, tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "hosts.ini",
                           {name: fleet_host(live_fleet, name) for name in NAMES},
                           defaults={"user": TEST_USER})


@pytest.fixture
def frozen(live_fleet: Fleet) -> Iterator[Callable[[str], None]]:
    """Freeze a host for the rest of the test; thawed (and its sessions ended) afterwards."""
    done: list[tuple[str, list[int]]] = []

    def freeze(name: str) -> None:
        done.append((name, live_fleet.freeze_whole_host(name)))

    yield freeze
    for name, pids in done:
        live_fleet.thaw_whole_host(name, pids)
        live_fleet.stop_host(name)
        live_fleet.start_host(name)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the test user can write (tmp_path is root's alone): root logins are
    avoided here, as a frozen root login can leave root's shell start-up files half-run."""
    path = Path(tempfile.mkdtemp(prefix="hostbatch-live-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def spawn(cli: Cli) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start the CLI in a session of its own; whatever is left is killed (by its group id)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str | Path, cli_: Cli = cli) -> subprocess.Popen[bytes]:
        proc = cli_.popen(*args, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    return proc.stderr.read().decode() if proc.stderr else ""


def _start_everywhere(spawn: Any, inventory: Path, pattern: str,
                      ) -> tuple[subprocess.Popen[bytes], LineReader]:
    """A run of ``echo started; PATTERN`` on every host, once all three are running it."""
    proc = spawn("-i", inventory, "-g", "all", "-cmd", f"echo started; {pattern}")
    reader = LineReader(proc)
    everyone = [f"{host}: started" for host in NAMES]
    assert reader.until(lambda _: all(x in reader.lines for x in everyone), 30), reader.lines
    seen, _ = wait_for_processes(pattern, 20.0, present=True, user=TEST_USER)
    assert len(seen) == 3, seen
    return proc, reader


# ------------------------------------------------------------------ a host that freezes


def test_a_host_frozen_mid_command_ends_as_disconnect_by_keepalive(
        spawn: Any, inventory: Path, frozen: Callable[[str], None]) -> None:
    proc = spawn("-i", inventory, "--json", *KEEPALIVE, "-g", "all", "-cmd",
                 "echo started; sleep 6; echo done")
    reader = LineReader(proc)
    assert reader.until(lambda line: "live02" in line and "started" in line, 30), reader.lines
    frozen("live02")
    froze = time.monotonic()
    line = reader.until(lambda text: '"live02"' in text and '"error"' in text, 30)
    noticed = time.monotonic() - froze
    lines = reader.rest(timeout=30)
    status = proc.wait(timeout=10)
    assert line is not None, lines
    events = parse_jsonl("\n".join(lines))
    ends = terminals(events, NAMES)
    assert (ends["live02"]["kind"], ends["live02"]["error"]) == (
        "disconnect", "no answer to 2 keepalives in 2s"), ends
    # interval x (count + 1) = 3 s after the last byte, give or take the monitor's tick.
    assert noticed < 8.0, noticed
    for host in ("live01", "live03"):  # the others are not slowed down
        assert (ends[host]["event"], ends[host]["exit_status"]) == ("exit", 0), ends
        assert json_lines(events, host, "stdout") == ["started", "done"]
    assert status == 3, _stderr(proc)


def test_a_host_frozen_mid_put_ends_as_disconnect_by_keepalive(
        spawn: Any, inventory: Path, tmp_path: Path, shared_dir: Path,
        frozen: Callable[[str], None]) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:
        handle.truncate(1 << 30)  # sparse: cheap to read here, slow enough to send
    remote = shared_dir
    scp = Cli(tmp_path / "scp-home", tmp_path / "scp-cwd", command="scp")
    proc = spawn("-i", inventory, "--json", *KEEPALIVE, "-h", "live02", "-action", "put",
                 "-local", source, "-remote", f"{remote}/", cli_=scp)
    reader = LineReader(proc)
    assert reader.until(lambda line: '"progress"' in line, 60), reader.lines
    frozen("live02")
    froze = time.monotonic()
    lines = reader.rest(timeout=30)
    status = proc.wait(timeout=10)
    noticed = time.monotonic() - froze
    ends = terminals(parse_jsonl("\n".join(lines)), ["live02"])
    assert (ends["live02"]["kind"], ends["live02"]["error"]) == (
        "disconnect", "no answer to 2 keepalives in 2s"), (ends, _stderr(proc))
    assert noticed < 10.0, noticed
    assert status == 3
    assert not (remote / "big.bin").exists()  # never a partial file under the final name


def test_explain_shows_the_keepalive_and_its_source(cli: Cli, inventory: Path,
                                                    tmp_path: Path) -> None:
    text = inventory.read_text().replace("[host:live01]",
                                         "[host:live01]\nkeepalive_interval = 5")
    inventory.write_text(text)
    base = [HOSTBATCH, "inventory", "explain", "-i", str(inventory)]
    env = cli.env()
    shown = subprocess.run([*base, "live01"], capture_output=True, text=True, env=env,
                           timeout=60, check=True).stdout
    assert "probe after 5s of silence, give up after 3 unanswered" in shown, shown
    assert "(host section)" in shown.split("keepalive", 1)[1].splitlines()[0], shown
    flag = subprocess.run([*base, "--keepalive", "0", "live01"], capture_output=True,
                          text=True, env=env, timeout=60, check=True).stdout
    assert "keepalive" in flag and "off" in flag.split("keepalive", 1)[1].splitlines()[0]


# ------------------------------------------------------------------ signals


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGTERM", "SIGHUP"])
def test_a_signal_to_the_process_group_ends_the_run_like_ctrl_c(
        spawn: Any, cli: Cli, inventory: Path, signum: int, status: int) -> None:
    """What `timeout` or a service manager sends: to every process of the group, workers
    included. It used to kill the workers and hang the parent."""
    pattern = f"sleep 33{signum:02d}"
    proc, reader = _start_everywhere(spawn, inventory, pattern)
    os.killpg(proc.pid, signum)
    reader.rest(timeout=30)
    assert proc.wait(timeout=20) == status
    stderr = _stderr(proc)
    assert "3 interrupted" in stderr, stderr  # the summary is printed
    leftover, _ = wait_for_processes(pattern, 5.0, present=False)
    assert leftover == [], f"remote commands survived: {leftover}"
    database = cli.home / ".local" / "state" / "hostbatch" / "history.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT exit_status FROM runs").fetchall() == [(status,)]


def test_killing_the_controller_leaves_no_worker_and_no_remote_command(
        spawn: Any, inventory: Path) -> None:
    pattern = "sleep 3399"
    proc, _ = _start_everywhere(spawn, inventory, pattern)
    proc.kill()  # the parent alone, as the OOM killer does
    proc.wait(timeout=10)
    killed = time.monotonic()
    while process_group_alive(proc.pid) and time.monotonic() - killed < 15:
        time.sleep(0.1)
    assert not process_group_alive(proc.pid), "a worker outlived its parent"
    assert time.monotonic() - killed < 10.0
    leftover, _ = wait_for_processes(pattern, 5.0, present=False)
    assert leftover == [], f"remote commands survived the controller: {leftover}"


def test_a_second_ctrl_c_exits_at_once(spawn: Any, inventory: Path) -> None:
    """The remote command ignores SIGTERM, so the first Ctrl-C's clean-up waits for the
    KILL that follows; a second Ctrl-C must not wait for it."""
    pattern = "sleep 3398"
    proc = spawn("-i", inventory, "-h", "live01", "-cmd",
                 f"trap '' TERM; echo started; {pattern}")
    reader = LineReader(proc)
    assert reader.until(lambda line: line == "live01: started", 30), reader.lines
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.2)  # the first clean-up is under way (it takes at least KILL_GRACE)
    os.killpg(proc.pid, signal.SIGINT)
    second = time.monotonic()
    assert proc.wait(timeout=20) == 130
    assert time.monotonic() - second < 2.0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    subprocess.run(["pkill", "-f", pattern], check=False)


# ------------------------------------------------------------------ local files


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a disk that fills up."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                   check=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def test_outdir_on_a_full_disk_leaves_no_partial_file(cli: Cli, inventory: Path,
                                                      tiny_disk: Path) -> None:
    result = cli.run("-i", inventory, "-g", "all", "-o", tiny_disk, "-cmd",
                     "head -c 200000 /dev/zero | base64")
    assert result.returncode == 0, result  # the hosts' own outcome is unchanged
    assert "cannot write" in result.stderr and "No space left" in result.stderr, result
    leftovers = [p.name for p in tiny_disk.iterdir() if p.name.endswith(".part")]
    assert leftovers == [], leftovers
    for path in tiny_disk.iterdir():  # what is there is whole: a status or a full output
        if not path.name.endswith(".status"):
            assert path.stat().st_size == len(
                subprocess.run("head -c 200000 /dev/zero | base64", shell=True,
                               capture_output=True, check=True).stdout), path


def test_ctrl_c_mid_get_takes_effect_at_once_and_leaves_only_whole_files(
        spawn: Any, inventory: Path, tmp_path: Path, shared_dir: Path) -> None:
    big = shared_dir / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(2 << 30)  # sparse on the host's side: cheap to create, slow to get
    big.chmod(0o644)
    local = tmp_path / "local"
    scp = Cli(tmp_path / "scp-home", tmp_path / "scp-cwd", command="scp")
    proc = spawn("-i", inventory, "--json", "-h", "live01", "-action", "get",
                 "-remote", big, "-local", local, cli_=scp)
    reader = LineReader(proc)
    assert reader.until(lambda line: '"progress"' in line, 60), reader.lines
    os.killpg(proc.pid, signal.SIGINT)
    signalled = time.monotonic()
    lines = reader.rest(timeout=30)
    assert proc.wait(timeout=20) == 130
    assert time.monotonic() - signalled < 3.0
    ends = terminals(parse_jsonl("\n".join(lines)), ["live01"])
    assert ends["live01"]["kind"] == "interrupted", ends
    assert "command" not in ends["live01"]["error"], ends  # a copy is not a command
    assert [p for p in local.rglob("*") if p.is_file()] == []
