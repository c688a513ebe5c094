"""Killing remote commands: ``--timeout`` and Ctrl-C must leave nothing running on the host,
for a plain user and for root, including children of the command; other hosts go on."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    TEST_USER,
    address,
    fleet_host,
    json_lines,
    on_address,
    parse_jsonl,
    remote_processes,
    terminals,
    wait_for_processes,
    write_inventory,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

WEB = ["web01", "web02", "web03"]


class LineReader:
    """Reads a child's stdout line by line with a deadline (never blocks forever)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buffer = b""
        self.lines: list[str] = []
        self.eof = False

    def until(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                text = line.decode()
                self.lines.append(text)
                if predicate(text):
                    return text
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                return None
            readable, _, _ = select.select([self.fd], [], [], left)
            if readable:
                data = os.read(self.fd, 65536)
                self.eof = not data
                self.buffer += data

    def rest(self, timeout: float) -> list[str]:
        self.until(lambda _: False, timeout)
        if self.buffer:
            self.lines.append(self.buffer.decode())
            self.buffer = b""
        return self.lines



# ------------------------------------------------------------------ 13. command timeout


@pytest.mark.parametrize(
    ("user", "long_command", "pattern"),
    [
        (TEST_USER, "echo long >&2; sleep 3101; echo never", "sleep 3101"),
        (TEST_USER, "echo long >&2; sh -c 'sleep 3102 & sleep 3103 & wait'; echo never",
         "sleep 310[23]"),
        ("root", "echo long >&2; sleep 3111; echo never", "sleep 3111"),
        ("root", "echo long >&2; sh -c 'sleep 3112 & sleep 3113 & wait'; echo never",
         "sleep 311[23]"),
    ],
    ids=["hbtest", "hbtest-tree", "root", "root-tree"],
)
def test_timeout_kills_remote_command(spawn: Any, main_fleet: Fleet, tmp_path: Path,
                                      user: str, long_command: str, pattern: str) -> None:
    inventory = write_inventory(
        tmp_path / "hosts.ini",
        {"web01": fleet_host(main_fleet, "web01", user=user),
         "web02": fleet_host(main_fleet, "web02"), "web03": fleet_host(main_fleet, "web03")},
        {"web": WEB}, defaults={"user": TEST_USER})
    assert remote_processes(pattern) == [], "leftovers from an earlier run"
    command = on_address(address(main_fleet, "web01"), long_command) + "; echo quick"
    start = time.monotonic()
    proc = spawn("-i", str(inventory), "--json", "--timeout", "1", "-g", "web", "-cmd", command)
    reader = LineReader(proc)
    lines = reader.rest(timeout=30)
    status = proc.wait(timeout=10)
    elapsed = time.monotonic() - start
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert status == 3, stderr
    events = parse_jsonl("\n".join(lines))
    ends = terminals(events, WEB)
    assert (ends["web01"]["event"], ends["web01"]["kind"]) == ("error", "timeout"), ends
    assert json_lines(events, "web01", "stderr")[-1:] == ["long"]  # the command did start
    assert json_lines(events, "web01", "stdout") == []
    for host in ("web02", "web03"):  # not held up by web01
        assert (ends[host]["event"], ends[host]["exit_status"]) == ("exit", 0), ends
        assert ends[host]["duration"] < ends["web01"]["duration"], ends
        assert json_lines(events, host, "stdout") == ["quick"]
    order = [e["host"] for e in events if e["event"] in ("exit", "error")]
    assert order[-1] == "web01", order
    assert elapsed < 20.0, elapsed
    leftover, _ = wait_for_processes(pattern, 3.0, present=False)
    assert leftover == [], f"remote processes survived --timeout: {leftover}"


# ------------------------------------------------------------------ 14. Ctrl-C


def _inventory(main_fleet: Fleet, tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "hosts.ini",
                           {name: fleet_host(main_fleet, name) for name in WEB},
                           {"web": WEB}, defaults={"user": TEST_USER})


def test_ctrl_c_json_interrupted_and_skipped(spawn: Any, main_fleet: Fleet,
                                             tmp_path: Path) -> None:
    pattern = "sleep 3201"
    inventory = _inventory(main_fleet, tmp_path)
    proc = spawn("-i", str(inventory), "-f", "1", "--json", "-g", "web", "-cmd",
                 f"echo started; {pattern}")
    reader = LineReader(proc)
    started = reader.until(lambda line: '"started"' in line, timeout=15)
    assert started is not None, reader.lines
    running = parse_jsonl(started)[0]["host"]
    assert running == "web01"  # -f 1: one host at a time, in inventory order
    seen, _ = wait_for_processes(pattern, 20.0, present=True, user=TEST_USER)
    assert seen
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the foreground job
    signalled = time.monotonic()
    lines = reader.rest(timeout=15)
    status = proc.wait(timeout=10)
    took = time.monotonic() - signalled
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert status == 130, stderr
    assert took < 6.0, took
    events = parse_jsonl("\n".join(lines))
    ends = terminals(events, WEB)
    assert (ends["web01"]["event"], ends["web01"]["kind"]) == ("error", "interrupted"), ends
    for host in ("web02", "web03"):
        assert (ends[host]["event"], ends[host]["kind"]) == ("error", "skipped"), ends
        assert json_lines(events, host, "stdout") == []
    assert "Traceback" not in stderr
    # The summary names every host that did not finish, folded by kind.
    assert "\n  interrupted (1): web01\n" in stderr, stderr
    assert "\n  skipped (2): web[02-03]\n" in stderr, stderr
    leftover, _ = wait_for_processes(pattern, 3.0, present=False)
    assert leftover == [], f"remote command survived Ctrl-C: {leftover}"


def test_ctrl_c_lines_mode_keeps_finished_hosts(spawn: Any, main_fleet: Fleet,
                                                tmp_path: Path) -> None:
    """web03 finishes at once, web01 and web02 are still running when Ctrl-C comes."""
    pattern = "sleep 3202"
    inventory = _inventory(main_fleet, tmp_path)
    command = on_address(address(main_fleet, "web03"), "echo started; echo finished",
                         f"echo started; {pattern}; echo never")
    proc = spawn("-i", str(inventory), "-g", "web", "-cmd", command)
    reader = LineReader(proc)
    wanted = [f"{h}: started" for h in WEB] + ["web03: finished"]
    everyone = reader.until(lambda _: all(line in reader.lines for line in wanted), timeout=15)
    assert everyone, reader.lines
    seen, _ = wait_for_processes(pattern, 20.0, present=True, user=TEST_USER)
    assert len(seen) >= 2, seen
    proc.send_signal(signal.SIGINT)  # the parent only, e.g. `kill -INT`
    signalled = time.monotonic()
    lines = reader.rest(timeout=15)
    status = proc.wait(timeout=10)
    took = time.monotonic() - signalled
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert status == 130, stderr
    assert took < 6.0, took
    assert "never" not in "\n".join(lines)
    summary = stderr[stderr.rfind("hostbatch: 3 hosts"):]
    assert summary.startswith("hostbatch: 3 hosts"), stderr
    assert re.search(r"\b1 ok\b", summary) and re.search(r"\b2 interrupted\b", summary), stderr
    # Compact: each failure was printed as it happened; the summary folds them by kind.
    assert "\n  interrupted (2): web[01-02]\n" in summary, stderr
    assert "web03" not in summary.split("  slowest:")[0], stderr  # it finished
    assert "Traceback" not in stderr
    leftover, _ = wait_for_processes(pattern, 3.0, present=False)
    assert leftover == [], f"remote commands survived Ctrl-C: {leftover}"


def test_sigterm_also_stops_and_kills(spawn: Any, main_fleet: Fleet, tmp_path: Path) -> None:
    pattern = "sleep 3203"
    inventory = _inventory(main_fleet, tmp_path)
    proc = spawn("-i", str(inventory), "--json", "-h", "web02", "-cmd",
                 f"echo started; {pattern}")
    reader = LineReader(proc)
    assert reader.until(lambda line: '"started"' in line, timeout=15), reader.lines
    proc.send_signal(signal.SIGTERM)
    lines = reader.rest(timeout=15)
    assert proc.wait(timeout=10) == 143  # 128 + SIGTERM, as a shell reports it
    ends = terminals(parse_jsonl("\n".join(lines)), ["web02"])
    assert ends["web02"]["kind"] == "interrupted", ends
    leftover, _ = wait_for_processes(pattern, 3.0, present=False)
    assert leftover == [], leftover
