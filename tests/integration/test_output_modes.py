"""Output modes against real sshd hosts: -b/--gather (folded headers, grouping by exact bytes and
by how hosts ended, unreachable hosts grouped by reason), --gather-stderr, --diff, -o/-e
per-host files with status files, -q, and the live progress line (a terminal only)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ANSI,
    TEST_USER,
    Cli,
    address,
    assert_no_traceback,
    fleet_host,
    on_address,
    wait_for_processes,
    write_inventory,
)
from tests.support.cli import run_with_pty_stderr
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

#: Addresses with no listener (the range given to this suite): connections are refused.
GONE = {"gone1": "127.0.20.10", "gone2": "127.0.20.11"}
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def mixed_inventory(tmp_path: Path, main_fleet: Fleet, outage_fleet: Fleet) -> Path:
    """web01-03 and db01 (up), down1 (sshd stopped) and gone1-2 (nothing listening), all on
    the outage fleet's port for the refused ones, so they fail for the same reason."""
    hosts = {name: fleet_host(main_fleet, name) for name in ("web01", "web02", "web03", "db01")}
    hosts["down1"] = fleet_host(outage_fleet, "down1")
    for name, addr in GONE.items():
        hosts[name] = {**fleet_host(outage_fleet, "down1"), "hostname": addr}
    return write_inventory(tmp_path / "hosts.ini", hosts,
                           {"up": ["web01", "web02", "web03", "db01"], "mixed": list(hosts)},
                           defaults={"user": TEST_USER})


def summary_only(stderr: str) -> None:
    """stderr holds nothing but the summary: the count line and indented lines."""
    lines = stderr.splitlines()
    assert lines and lines[0].startswith("hostbatch: "), stderr
    assert all(line.startswith("  ") for line in lines[1:]), stderr


def test_gather_folds_hosts_and_separates_line_order(cli: Cli, mixed_inventory: Path,
                                                     main_fleet: Fleet) -> None:
    db = address(main_fleet, "db01")
    command = on_address(db, "printf 'b\\na\\n'", "printf 'a\\nb\\n'")
    result = cli.run("-i", mixed_inventory, "-g", "up", "-b", "-cmd", command)
    assert result.returncode == 0, result
    assert result.stdout == ("---- web[01-03] (3) ----\na\nb\n"
                             "---- db01 (1) ----\nb\na\n"), result
    summary_only(result.stderr)
    assert_no_traceback(result)


def test_gather_exit_status_and_unreachable_groups(cli: Cli, mixed_inventory: Path,
                                                   main_fleet: Fleet,
                                                   outage_fleet: Fleet) -> None:
    web02 = address(main_fleet, "web02")
    command = f"echo same; echo err-$(hostname) >&2; {on_address(web02, 'exit 3')}"
    result = cli.run("-i", mixed_inventory, "-g", "mixed", "--gather", "-cmd", command)
    assert result.returncode == 3, result
    port = outage_fleet.port
    assert result.stdout == (
        "---- db01,web[01,03] (3) ----\nsame\n"
        "---- web02 (1) exit status 3 ----\nsame\n"
        f"---- down1,gone[1-2] (3) connect: connection refused by <host> port {port} ----\n"
    ), result
    # stderr is kept apart: streamed as HOST: LINE, then the summary.
    streamed = [line for line in result.stderr.splitlines() if ": err-" in line]
    assert sorted(line.split(":")[0] for line in streamed) == ["db01", "web01", "web02",
                                                                "web03"], result
    assert "----" not in result.stderr


def test_gather_stderr(cli: Cli, mixed_inventory: Path, main_fleet: Fleet) -> None:
    db = address(main_fleet, "db01")
    command = f"echo out; {on_address(db, 'echo warning >&2')}; echo common >&2"
    result = cli.run("-i", mixed_inventory, "-g", "up", "-b", "--gather-stderr", "-cmd", command)
    assert result.returncode == 0, result
    assert result.stdout == "---- db01,web[01-03] (4) ----\nout\n", result
    assert result.stderr.startswith("---- web[01-03] (3) stderr ----\ncommon\n"
                                    "---- db01 (1) stderr ----\nwarning\ncommon\n"), result


def test_diff_shows_drift_as_unified_diff(cli: Cli, mixed_inventory: Path,
                                          main_fleet: Fleet) -> None:
    web03 = address(main_fleet, "web03")
    edit = on_address(web03, "sed 's/Port 22/Port 2222/'", "cat")
    command = f"printf 'PermitRootLogin no\\nPort 22\\nX11Forwarding no\\n' | {{ {edit}; }}"
    result = cli.run("-i", mixed_inventory, "-g", "up", "--diff", "-cmd", command)
    assert result.returncode == 0, result
    assert result.stdout == (
        "---- db01,web[01-02] (3) ----\nPermitRootLogin no\nPort 22\nX11Forwarding no\n"
        "---- web03 (1) ----\n"
        "--- db01,web[01-02]\n+++ web03\n@@ -1,3 +1,3 @@\n"
        " PermitRootLogin no\n-Port 22\n+Port 2222\n X11Forwarding no\n"), result


def test_per_host_files_and_status(cli: Cli, mixed_inventory: Path, main_fleet: Fleet,
                                   tmp_path: Path) -> None:
    outdir, errdir = tmp_path / "o" / "new", tmp_path / "e"
    web01 = address(main_fleet, "web01")
    command = (f"echo line1-$(hostname); echo problem >&2; echo line2; "
               f"{on_address(web01, 'exit 4')}")
    result = cli.run("-i", mixed_inventory, "-h", "web01,db01,down1", "-o", outdir,
                     "-e", errdir, "-cmd", command)
    assert result.returncode == 3, result
    hostname = subprocess.run(["hostname"], capture_output=True, text=True,
                              check=True).stdout.strip()
    # -o/-e work together with streaming: the lines are printed as usual too.
    assert sorted(result.stdout.splitlines()) == sorted(
        [f"{h}: {line}" for h in ("web01", "db01") for line in (f"line1-{hostname}", "line2")])
    for directory in (outdir, errdir):
        assert sorted(os.listdir(directory)) == ["db01", "db01.status", "down1", "down1.status",
                                                 "web01", "web01.status"], directory
        assert (directory / "web01.status").read_text() == "4\n"
        assert (directory / "db01.status").read_text() == "0\n"
        status = (directory / "down1.status").read_text()
        assert re.fullmatch(r"error connect: connection refused by 127\.0\.15\.\d+ port \d+\n",
                            status), status
        assert (directory / "down1").read_bytes() == b""
    for host in ("web01", "db01"):
        assert (outdir / host).read_text() == f"line1-{hostname}\nline2\n"
        assert (errdir / host).read_text() == "problem\n"


def test_per_host_files_with_gather(cli: Cli, mixed_inventory: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = cli.run("-i", mixed_inventory, "-g", "up", "-b", "-o", outdir, "-cmd", "echo hi")
    assert result.returncode == 0, result
    assert result.stdout == "---- db01,web[01-03] (4) ----\nhi\n"
    assert sorted(p.name for p in outdir.iterdir()) == sorted(
        [h for h in ("db01", "web01", "web02", "web03")]
        + [f"{h}.status" for h in ("db01", "web01", "web02", "web03")])
    assert all((outdir / h).read_text() == "hi\n" for h in ("db01", "web01"))


def test_output_without_final_newline_is_kept_exactly(cli: Cli, mixed_inventory: Path,
                                                      main_fleet: Fleet, tmp_path: Path) -> None:
    """``printf x`` and ``printf 'x\n'`` differ: -o files hold the exact bytes and gathering
    keeps them apart (the screen still gets a newline after ``x``)."""
    db = address(main_fleet, "db01")
    outdir = tmp_path / "exact"
    command = on_address(db, "printf 'x\\n'; printf 'e' >&2", "printf x")
    result = cli.run("-i", mixed_inventory, "-g", "up", "-b", "-o", outdir, "-e", outdir / "err",
                     "-cmd", command)
    assert result.returncode == 0, result
    assert result.stdout == "---- web[01-03] (3) ----\nx\n---- db01 (1) ----\nx\n", result
    assert (outdir / "web01").read_bytes() == b"x"
    assert (outdir / "db01").read_bytes() == b"x\n"
    assert (outdir / "err" / "db01").read_bytes() == b"e"
    streamed = cli.run("-i", mixed_inventory, "-h", "db01", "-cmd", "printf x")
    assert streamed.stdout == "db01: x\n", streamed


def test_a_host_file_that_cannot_be_written_still_gets_its_status(
        cli: Cli, mixed_inventory: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "blocked"
    (outdir / "web01").mkdir(parents=True)  # a directory where web01's file should go
    result = cli.run("-i", mixed_inventory, "-g", "up", "-o", outdir, "-cmd", "echo hi")
    assert result.returncode == 0, result
    assert "web01: cannot write" in result.stderr, result
    assert (outdir / "web01.status").read_text() == "0\n"
    assert (outdir / "web02").read_text() == "hi\n"
    assert not [p.name for p in outdir.iterdir() if p.name.startswith(".")]


def test_outdir_that_cannot_be_created_is_exit_2(cli: Cli, mixed_inventory: Path,
                                                 tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = cli.run("-i", mixed_inventory, "-g", "up", "-o", blocker / "sub", "-cmd",
                     "touch /tmp/hostbatch-output-should-not-run")
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "-o" in result.stderr, result
    assert "hosts in" not in result.stderr  # nothing ran: no summary


def test_quiet_prints_only_the_summary(cli: Cli, mixed_inventory: Path,
                                       main_fleet: Fleet) -> None:
    web02 = address(main_fleet, "web02")
    result = cli.run("-i", mixed_inventory, "-g", "mixed", "-q", "-cmd",
                     f"echo noise; echo more >&2; {on_address(web02, 'exit 5')}")
    assert result.returncode == 3, result
    assert result.stdout == ""
    summary_only(result.stderr)
    assert "noise" not in result.stderr and "more" not in result.stderr
    failed = {line.split()[1]: line for line in result.stderr.splitlines()[1:]
              if not line.startswith("  slowest")}
    assert set(failed) == {"web02", "down1", "gone1", "gone2"}, result
    assert "exit status 5" in failed["web02"]
    assert all("connection refused" in failed[h] for h in ("down1", "gone1", "gone2"))
    assert "slowest:" in result.stderr


# ------------------------------------------------------------------ the progress line


@pytest.mark.parametrize("mode", [["-b"], ["--diff"], ["-q"], ["--json"]])
def test_progress_line_on_a_terminal_only(cli: Cli, mixed_inventory: Path,
                                          mode: list[str]) -> None:
    args = ["-i", mixed_inventory, "-g", "up", *mode, "-cmd", "sleep 0.6; echo hi"]
    status, out, err = run_with_pty_stderr(cli, *args, env={})
    assert status == 0, (out, err)
    plain = CONTROL.sub("", err)
    assert re.search(r"done \d / running \d / failed 0 / total 4", plain), err[-1500:]
    assert ANSI.search(err), err[-1500:]  # coloured on a terminal
    assert "\x1b" not in out, out  # stdout is a pipe
    if mode == ["-q"]:
        assert out == ""
    piped = cli.run(*args)
    assert piped.returncode == 0, piped
    assert "\x1b" not in piped.stderr and "total 4" not in piped.stderr, piped
    assert "\r" not in piped.stderr, piped


def test_progress_line_respects_no_color(cli: Cli, mixed_inventory: Path) -> None:
    status, out, err = run_with_pty_stderr(cli, "-i", mixed_inventory, "-g", "up", "-b",
                                           "-cmd", "sleep 0.6; echo hi",
                                           env={"NO_COLOR": "1"})
    assert status == 0, (out, err)
    assert "total 4" in CONTROL.sub("", err), err[-1500:]
    assert not re.search(r"\x1b\[[0-9;]*3[0-9;]*m", err), err[-1500:]  # no colour codes


def test_no_progress_line_while_lines_stream(cli: Cli, mixed_inventory: Path) -> None:
    status, out, err = run_with_pty_stderr(cli, "-i", mixed_inventory, "-g", "up", "-cmd",
                                           "echo hi", env={})
    assert status == 0, (out, err)
    assert "total 4" not in CONTROL.sub("", err), err
    assert sorted(out.splitlines()) == ["db01: hi", "web01: hi", "web02: hi", "web03: hi"]


def test_scp_quiet_prints_only_the_summary(tmp_path: Path, mixed_inventory: Path) -> None:
    scp = Cli(tmp_path / "home", tmp_path / "cwd", command="scp")
    target = tmp_path / "got"
    result = scp.run("-i", mixed_inventory, "-g", "mixed", "-q", "-action", "get", "-remote",
                     "/etc/hostname", "-local", target)
    assert result.returncode == 3, result
    assert result.stdout == ""
    summary_only(result.stderr)
    assert sorted(p.name for p in target.iterdir()) == ["db01", "web01", "web02", "web03"]
    assert {line.split()[1] for line in result.stderr.splitlines()[1:]
            if not line.startswith("  slowest")} == {"down1", "gone1", "gone2"}, result


def test_gather_memory_stays_bounded(cli: Cli, mixed_inventory: Path, tmp_path: Path) -> None:
    """4 distinct outputs of ~20 MB each are gathered through temporary files: the peak RSS of
    hostbatch (the largest of its processes, as GNU time reports it) stays below 100 MB, where
    holding them in memory would add 80 MB to a ~50 MB process."""
    count = 2_500_000
    command = f"echo $SSH_CONNECTION | cut -d' ' -f3; seq 1 {count}"
    time_file = tmp_path / "time.txt"
    result = cli.run("-i", mixed_inventory, "-g", "up", "-b", "-cmd", command,
                     wrapper=["/usr/bin/time", "-v", "-o", str(time_file)], timeout=120)
    assert result.returncode == 0, str(result)[:2000]
    headers = [line for line in result.stdout.splitlines() if line.startswith("---- ")]
    assert sorted(headers) == [f"---- {h} (1) ----" for h in ("db01", "web01", "web02",
                                                               "web03")]
    expected = sum(len(f"{n}\n") for n in range(1, count + 1))
    assert len(result.stdout) > 4 * expected
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
    assert peak is not None, time_file.read_text()
    # Measured here: about 50 MB with -q, 70 MB with -b or --json (the workers' share).
    assert int(peak.group(1)) < 100 * 1024, f"peak RSS {int(peak.group(1)) // 1024} MB"


def test_ctrl_c_leaves_complete_files_and_no_temporaries(cli: Cli, mixed_inventory: Path,
                                                         tmp_path: Path) -> None:
    """-f 2 on four hosts: two are running when Ctrl-C comes, two never start. Every host
    still gets its files, with the reason in the status file, and no temporary file stays."""
    outdir = tmp_path / "out"
    proc = cli.popen("-i", mixed_inventory, "-g", "up", "-f", "2", "-o", outdir, "-cmd",
                     "echo started; sleep 3301; echo never", start_new_session=True)
    try:
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 20
        while seen.count(b": started\n") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                seen += os.read(proc.stdout.fileno(), 65536)
        assert seen.count(b": started\n") == 2, seen
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert status == 130
    hosts = ("db01", "web01", "web02", "web03")
    assert sorted(os.listdir(outdir)) == sorted([*hosts, *(f"{h}.status" for h in hosts)])
    statuses = {h: (outdir / f"{h}.status").read_text() for h in hosts}
    running = [h for h in hosts if statuses[h].startswith("error interrupted: ")]
    skipped = [h for h in hosts if statuses[h].startswith("error skipped: ")]
    assert len(running) == 2 and len(skipped) == 2, statuses
    assert all((outdir / h).read_text() == "started\n" for h in running)
    assert all((outdir / h).read_text() == "" for h in skipped)
    leftover, _ = wait_for_processes("sleep 3301", 10.0, present=False)
    assert leftover == [], leftover
