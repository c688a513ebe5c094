"""Rolling out safely: --canary, --batch, --max-fail and --confirm-over against real sshd hosts.

Every host appends ``start ADDRESS`` and ``end ADDRESS`` lines to a log file shared by the
hosts (they all run on this machine), so the tests check on the hosts themselves which hosts
ran, in which order, and that nothing started after a rollout stopped.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    MAIN_NAMES,
    OUTAGE_NAMES,
    TEST_USER,
    Cli,
    address,
    fleet_host,
    on_address,
    parse_jsonl,
    terminals,
    write_inventory,
)
from tests.support.cli import answer_prompt_on_pty
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration


@pytest.fixture
def host_log() -> Iterator[Path]:
    """A log file every host (as the test user) may append to."""
    directory = Path(tempfile.mkdtemp(prefix="hb-rollout-"))
    directory.chmod(0o777)
    log = directory / "log"
    log.touch()
    log.chmod(0o666)
    yield log
    shutil.rmtree(directory, ignore_errors=True)


def logged(log: Path, fleet: Fleet) -> list[tuple[str, str]]:
    """``(start|end, HOST)`` entries in the order the hosts wrote them."""
    names = {fleet.host(name).address: name for name in fleet.names}
    entries = []
    for line in log.read_text().splitlines():
        what, addr = line.split()
        entries.append((what, names[addr]))
    return entries


def logging_command(log: Path, failing: dict[str, str] | None = None, sleep: float = 0.2) -> str:
    """Log start, sleep, log end; hosts at the addresses in ``failing`` then exit 1."""
    me = "$(echo $SSH_CONNECTION | cut -d' ' -f3)"
    command = f'echo "start {me}" >> {log}; sleep {sleep}; echo "end {me}" >> {log}'
    for addr in (failing or {}).values():
        command += "; " + on_address(addr, "exit 1")
    return command


def started(entries: list[tuple[str, str]]) -> list[str]:
    return [host for what, host in entries if what == "start"]


def test_canary_failure_stops_the_rollout(cli: Cli, main_fleet: Fleet, main_inventory: Path,
                                          host_log: Path) -> None:
    command = logging_command(host_log, {"web01": address(main_fleet, "web01")})
    result = cli.run("-i", main_inventory, "-g", "all", "--canary", "1", "--json", "-cmd",
                     command)
    assert result.returncode == 1, result
    ends = terminals(result.events(), MAIN_NAMES)
    assert ends["web01"]["exit_status"] == 1
    for host in MAIN_NAMES[1:]:
        assert (ends[host]["event"], ends[host]["kind"]) == ("error", "skipped"), ends
        assert "canary" in ends[host]["error"], ends
    assert started(logged(host_log, main_fleet)) == ["web01"]
    assert "rollout stopped: a --canary host failed; 3 hosts not started" in result.stderr


def test_canary_then_batches_run_in_waves(cli: Cli, main_fleet: Fleet, main_inventory: Path,
                                          host_log: Path) -> None:
    result = cli.run("-i", main_inventory, "-g", "all", "--canary", "1", "--batch", "2",
                     "-cmd", logging_command(host_log))
    assert result.returncode == 0, result
    entries = logged(host_log, main_fleet)
    assert sorted(started(entries)) == sorted(MAIN_NAMES)
    position = {entry: n for n, entry in enumerate(entries)}
    waves = [["web01"], ["web02", "web03"], ["db01"]]
    for earlier, later in itertools.pairwise(waves):
        for before in earlier:
            for after in later:
                assert position[("end", before)] < position[("start", after)], entries


def test_batch_percent_waves(cli: Cli, main_fleet: Fleet, main_inventory: Path,
                             host_log: Path) -> None:
    result = cli.run("-i", main_inventory, "-g", "all", "--batch", "50%", "-cmd",
                     logging_command(host_log))
    assert result.returncode == 0, result
    entries = logged(host_log, main_fleet)
    position = {entry: n for n, entry in enumerate(entries)}
    for before in ("web01", "web02"):
        for after in ("web03", "db01"):
            assert position[("end", before)] < position[("start", after)], entries


def test_max_fail_stops_starting_hosts(cli: Cli, main_fleet: Fleet, main_inventory: Path,
                                       host_log: Path) -> None:
    command = logging_command(host_log, {"web02": address(main_fleet, "web02")})
    result = cli.run("-i", main_inventory, "-g", "all", "-f", "1", "--max-fail", "1",
                     "--json", "-cmd", command)
    assert result.returncode == 1, result
    ends = terminals(result.events(), MAIN_NAMES)
    assert ends["web01"]["exit_status"] == 0 and ends["web02"]["exit_status"] == 1, ends
    for host in ("web03", "db01"):
        assert (ends[host]["kind"], ends[host]["error"]) == (
            "skipped", "not started: --max-fail 1 reached"), ends
    assert started(logged(host_log, main_fleet)) == ["web01", "web02"]
    assert "rollout stopped: --max-fail 1 reached; 2 hosts not started" in result.stderr
    assert "skipped" in result.stderr


def test_max_fail_counts_unreachable_hosts_and_exit_3_wins(
        cli: Cli, outage_fleet: Fleet, tmp_path: Path, host_log: Path) -> None:
    inventory = write_inventory(
        tmp_path / "hosts.ini", {name: fleet_host(outage_fleet, name) for name in OUTAGE_NAMES},
        defaults={"user": TEST_USER, "connect_timeout": "5"})
    result = cli.run("-i", inventory, "-g", "all", "-f", "1", "--max-fail", "1", "--json",
                     "-cmd", logging_command(host_log))
    assert result.returncode == 3, result
    ends = terminals(result.events(), OUTAGE_NAMES)
    assert ends["ok1"]["exit_status"] == 0
    assert ends["down1"]["kind"] == "connect", ends
    assert ends["frozen1"]["kind"] == "skipped", ends
    assert started(logged(host_log, outage_fleet)) == ["ok1"]


def test_max_fail_not_reached_runs_everything(cli: Cli, main_fleet: Fleet,
                                              main_inventory: Path, host_log: Path) -> None:
    command = logging_command(host_log, {"web02": address(main_fleet, "web02")})
    result = cli.run("-i", main_inventory, "-g", "all", "-f", "2", "--max-fail", "2",
                     "-cmd", command)
    assert result.returncode == 1, result
    assert sorted(started(logged(host_log, main_fleet))) == sorted(MAIN_NAMES)
    assert "rollout stopped" not in result.stderr


# ------------------------------------------------------------------ --confirm-over


def test_confirm_over_refuses_without_a_terminal(cli: Cli, main_fleet: Fleet,
                                                 main_inventory: Path, host_log: Path) -> None:
    result = cli.run("-i", main_inventory, "-g", "all", "--confirm-over", "3", "-cmd",
                     logging_command(host_log))
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "refusing to run on 4 hosts" in lines[0], result
    assert result.stdout == ""
    assert logged(host_log, main_fleet) == []


def test_confirm_over_default_from_inventory(cli: Cli, main_fleet: Fleet, tmp_path: Path,
                                             host_log: Path) -> None:
    inventory = write_inventory(
        tmp_path / "hosts.ini", {name: fleet_host(main_fleet, name) for name in MAIN_NAMES},
        defaults={"user": TEST_USER, "confirm_over": "2"})
    refused = cli.run("-i", inventory, "-g", "all", "-cmd", logging_command(host_log))
    assert refused.returncode == 2 and "confirm-over limit of 2" in refused.stderr, refused
    allowed = cli.run("-i", inventory, "-h", "web01,web02", "-cmd", logging_command(host_log))
    assert allowed.returncode == 0, allowed
    overridden = cli.run("-i", inventory, "-g", "all", "--confirm-over", "10", "-cmd",
                         "true")
    assert overridden.returncode == 0, overridden
    assert sorted(started(logged(host_log, main_fleet))) == ["web01", "web02"]


@pytest.mark.parametrize(("answer", "runs"), [(b"y\n", True), (b"yes\n", True),
                                              (b"n\n", False), (b"\n", False)])
def test_confirm_over_asks_once_on_a_terminal(cli: Cli, main_fleet: Fleet,
                                              main_inventory: Path, host_log: Path,
                                              answer: bytes, runs: bool) -> None:
    status, shown, stdout = answer_prompt_on_pty(
        cli, b"Continue? [y/N]", answer, "-i", main_inventory, "-g", "all",
        "--confirm-over", "1", "-cmd", logging_command(host_log, sleep=0))
    text = shown.decode()
    assert text.count("Continue? [y/N]") == 1, text
    assert "About to run on 4 hosts" in text and "start" in text, text
    entries = logged(host_log, main_fleet)
    if runs:
        assert status == 0, text
        assert sorted(started(entries)) == sorted(MAIN_NAMES)
    else:
        assert status == 2, text
        assert "not confirmed" in text
        assert entries == [] and stdout == ""


def test_confirm_not_asked_at_or_under_the_limit(cli: Cli, main_inventory: Path) -> None:
    result = cli.run("-i", main_inventory, "-g", "all", "--confirm-over", "4", "-cmd", "true")
    assert result.returncode == 0, result


def test_rollout_flags_are_validated(cli: Cli, main_inventory: Path) -> None:
    for args in (["--batch", "0"], ["--batch", "150%"], ["--max-fail", "x"],
                 ["--canary", "0"], ["--confirm-over", "-1"]):
        result = cli.run("-i", main_inventory, "-g", "all", *args, "-cmd", "true")
        assert result.returncode == 2, result
        assert len(result.stderr.splitlines()) == 1, result
        assert "Traceback" not in result.stderr


def test_json_schema_for_skipped_matches_ctrl_c(cli: Cli, main_fleet: Fleet,
                                                main_inventory: Path) -> None:
    command = on_address(address(main_fleet, "web01"), "exit 3")
    result = cli.run("-i", main_inventory, "-g", "all", "--canary", "1", "--json", "-cmd",
                     command)
    events = parse_jsonl(result.stdout)
    skipped = [e for e in events if e.get("kind") == "skipped"]
    assert {e["host"] for e in skipped} == set(MAIN_NAMES[1:])
    for event in skipped:
        assert set(event) == {"host", "event", "kind", "error", "duration"}, event


def test_ctrl_c_during_a_rollout_starts_nothing_more(cli: Cli, main_fleet: Fleet,
                                                     main_inventory: Path,
                                                     host_log: Path) -> None:
    me = "$(echo $SSH_CONNECTION | cut -d' ' -f3)"
    command = f'echo "start {me}" >> {host_log}; echo started; sleep 3301'
    proc = cli.popen("-i", main_inventory, "-g", "all", "--batch", "2", "--json", "-cmd",
                     command, start_new_session=True)
    try:
        assert proc.stdout is not None
        lines: list[bytes] = []
        while sum(b'"started"' in line for line in lines) < 2:
            line = proc.stdout.readline()
            assert line, lines
            lines.append(line)
        os.killpg(proc.pid, signal.SIGINT)
        rest, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    ends = terminals(parse_jsonl(b"".join(lines).decode() + rest.decode()), MAIN_NAMES)
    assert {ends[h]["kind"] for h in ("web01", "web02")} == {"interrupted"}, ends
    assert {ends[h]["kind"] for h in ("web03", "db01")} == {"skipped"}, ends
    time.sleep(0.5)
    assert sorted(started(logged(host_log, main_fleet))) == ["web01", "web02"]


def test_batch_scp_takes_the_rollout_flags(main_inventory: Path, tmp_path: Path) -> None:
    scp = Cli(tmp_path / "home", tmp_path / "cwd", command="scp")
    result = scp.run("-i", main_inventory, "-g", "all", "-f", "1", "--max-fail", "1", "--json",
                     "-action", "get", "-remote", "/nonexistent-hostbatch-file",
                     "-local", tmp_path / "got")
    assert result.returncode == 1, result
    ends = result.terminals(MAIN_NAMES)
    assert ends["web01"]["kind"] == "transfer", ends
    for host in MAIN_NAMES[1:]:
        assert ends[host]["kind"] == "skipped", ends


def test_a_dead_worker_does_not_hang_a_rollout(cli: Cli, main_inventory: Path) -> None:
    """Two workers of one thread each run the first wave; one is killed. Its host never ends,
    so the wave never would: the run must still end, reporting what it could not run."""
    proc = cli.popen("-i", main_inventory, "-g", "all", "--workers", "2", "-f", "2",
                     "--batch", "2", "--json", "-cmd", "echo started; sleep 2",
                     start_new_session=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert b'"started"' in first, first
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True, check=False).stdout.split()
        assert len(children) == 2, children
        os.kill(int(children[0]), signal.SIGKILL)
        rest, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 3, stderr
    ends = terminals(parse_jsonl(first.decode() + rest.decode()), MAIN_NAMES)
    kinds = sorted(end.get("kind", "exit") for end in ends.values())
    assert kinds in (["exit", "internal", "internal", "internal"],
                     ["internal"] * 4), ends
    for host in ("web03", "db01"):  # the second wave never started
        assert ends[host]["kind"] == "internal", ends
    assert b"Traceback" not in stderr
