"""Running commands end to end: output routing, seed syntax, per-host ports/users, streaming,
big interleaved output, exit statuses and output hygiene (JSON purity, pipes, colours)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ANSI,
    MAIN_NAMES,
    TEST_PASSWORD,
    TEST_USER,
    Cli,
    address,
    assert_no_traceback,
    fleet_host,
    host_lines,
    json_lines,
    on_address,
    split_lines,
    terminals,
    write_inventory,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

WEB = ("web01", "web02", "web03")
WHERE = "$(echo $SSH_CONNECTION | cut -d' ' -f3)"


# ------------------------------------------------------------------ 1. basic run


def test_group_run_routes_stdout_and_stderr(cli: Cli, main_inventory: Path,
                                            main_fleet: Fleet) -> None:
    result = cli.run("-i", str(main_inventory), "-g", "web_clusters", "-cmd",
                     f"echo out {WHERE}; echo err-line >&2; echo second")
    assert result.returncode == 0, result
    out = host_lines(result.stdout, WEB)  # strict: nothing but HOST: LINE on stdout
    for host in WEB:
        assert out[host] == [f"out {address(main_fleet, host)}", "second"], result
    err = host_lines(result.stderr, WEB, strict=False)
    assert err == {host: ["err-line"] for host in WEB}, result
    assert "err-line" not in result.stdout
    # The summary goes to stderr, never stdout.
    assert re.search(r"\b3 hosts\b.*\b3 ok\b", result.stderr), result
    slowest = [line for line in result.stderr.splitlines() if "slowest" in line]
    assert len(slowest) == 1 and all(host in slowest[0] for host in WEB), result
    assert "slowest" not in result.stdout


@pytest.mark.parametrize(
    ("via", "flag"),
    [("batch_run", "-cmd"), ("batch_run", "--cmd"), ("hostbatch", "-cmd"), ("module", "--cmd")],
)
def test_seed_syntax_union_each_host_once(cli: Cli, main_inventory: Path, via: str,
                                          flag: str) -> None:
    # web01, web02 by name; web_clusters = web01, web02, web03; db_servers = db01.
    result = cli.run("-i", str(main_inventory), "-h", "web01,web02", "-g",
                     "web_clusters,db_servers", flag, "echo hi from $(id -un)", via=via)
    assert result.returncode == 0, result
    out = host_lines(result.stdout, MAIN_NAMES)
    assert out == {host: [f"hi from {TEST_USER}"] for host in MAIN_NAMES}, result
    assert re.search(r"\b4 hosts\b.*\b4 ok\b", result.stderr), result


def test_command_after_options_equals_cmd(cli: Cli, main_inventory: Path) -> None:
    with_flag = cli.run("-i", str(main_inventory), "-h", "db01", "-cmd", "echo a b")
    trailing = cli.run("-i", str(main_inventory), "-h", "db01", "--", "echo", "a", "b")
    assert with_flag.returncode == trailing.returncode == 0, (with_flag, trailing)
    assert with_flag.stdout == trailing.stdout == "db01: a b\n"


# ------------------------------------------------------------------ 2. per-host ports, users


def test_per_host_ports_users_and_credentials(cli: Cli, main_fleet: Fleet,
                                              second_fleet: Fleet, tmp_path: Path) -> None:
    assert main_fleet.port != second_fleet.port
    inventory = write_inventory(
        tmp_path / "mixed.ini",
        {
            "web01": fleet_host(main_fleet, "web01"),
            "db01": fleet_host(main_fleet, "db01"),
            # password auth on the second fleet, no key for this host at all
            "app01": {k: v for k, v in fleet_host(second_fleet, "app01").items()
                      if k != "identity_file"} | {"password": TEST_PASSWORD},
            "app02": fleet_host(second_fleet, "app02", user="root"),
        },
        {"mixed": ["web01", "db01", "app01", "app02"]},
        defaults={"user": TEST_USER},
    )
    result = cli.run("-i", str(inventory), "--json", "-g", "mixed", "-cmd",
                     "echo \"who $(id -un) $(echo $SSH_CONNECTION | cut -d' ' -f3,4)\"")
    events = result.events()
    ends = terminals(events, ["web01", "db01", "app01", "app02"])
    assert result.returncode == 0, result
    assert all(end["event"] == "exit" and end["exit_status"] == 0 for end in ends.values()), ends
    expected = {
        "web01": f"who {TEST_USER} {address(main_fleet, 'web01')} {main_fleet.port}",
        "db01": f"who {TEST_USER} {address(main_fleet, 'db01')} {main_fleet.port}",
        "app01": f"who {TEST_USER} {address(second_fleet, 'app01')} {second_fleet.port}",
        "app02": f"who root {address(second_fleet, 'app02')} {second_fleet.port}",
    }
    for host, line in expected.items():
        # root's shell rc files may print extra lines; the hbtest hosts must print only ours
        lines = json_lines(events, host, "stdout")
        assert line in lines, (host, lines)
        if host != "app02":
            assert lines == [line], (host, lines)


# ------------------------------------------------------------------ 6. real-time streaming


def test_first_line_arrives_before_command_ends(cli: Cli, main_inventory: Path) -> None:
    start = time.monotonic()
    proc = cli.popen("-i", str(main_inventory), "-h", "web01", "-cmd",
                     "echo first; sleep 3; echo second")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stdout.readline()
        first_at = time.monotonic() - start
        second = proc.stdout.readline()
        second_at = time.monotonic() - start
        rest = proc.stdout.read()
        proc.stderr.read()
        status = proc.wait(timeout=30)
        ended_at = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (first, second, rest, status) == (b"web01: first\n", b"web01: second\n", b"", 0)
    assert ended_at >= 3.0
    # the first line came while the command was still sleeping, not at its end
    assert second_at - first_at >= 2.5, (first_at, second_at)
    assert ended_at - first_at >= 2.5, (first_at, ended_at)
    assert first_at < 10.0, f"first line only after {first_at:.2f}s"


# ------------------------------------------------------------------ 7. big interleaved output


def test_big_interleaved_output_exact(cli: Cli, main_inventory: Path) -> None:
    """3 hosts each write ~4 MB to stdout and ~4 MB to stderr at the same time: every line
    arrives, in order, on the right stream, and the run never stalls (60 s is ~50x normal)."""
    count = 600_000  # ~4.1 MB of stdout and ~4.2 MB of stderr per host
    command = f"seq 1 {count} & seq {count + 1} {2 * count} >&2; wait"
    result = cli.run("-i", str(main_inventory), "-g", "web_clusters", "-cmd", command,
                     timeout=60)
    assert result.returncode == 0, str(result)[:2000]
    expected_out = [str(n) for n in range(1, count + 1)]
    expected_err = [str(n) for n in range(count + 1, 2 * count + 1)]
    out = host_lines(result.stdout, WEB)
    err = host_lines(result.stderr, WEB, strict=False)
    for host in WEB:
        assert len(out[host]) == count, (host, len(out[host]))
        assert out[host] == expected_out, host
        assert len(err[host]) == count, (host, len(err[host]))
        assert err[host] == expected_err, host
    out_bytes = sum(len(f"{host}: {line}\n") for host in WEB for line in expected_out)
    assert len(result.stdout.encode()) == out_bytes


def test_peak_memory_bounded_with_big_output(cli: Cli, main_inventory: Path,
                                             tmp_path: Path) -> None:
    """8 MB of output per host (3 hosts): the peak RSS of hostbatch (the largest of its
    processes, as GNU time reports it) stays under 150 MB."""
    count = 600_000
    command = f"seq 1 {count} & seq {count + 1} {2 * count} >&2; wait"
    time_file = tmp_path / "time.txt"
    result = cli.run("-i", str(main_inventory), "--json", "-g", "web_clusters", "-cmd", command,
                     wrapper=["/usr/bin/time", "-v", "-o", str(time_file)], timeout=60)
    assert result.returncode == 0, str(result)[:2000]
    assert len(split_lines(result.stdout)) == 3 * (2 * count + 1)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
    assert peak is not None, time_file.read_text()
    assert int(peak.group(1)) < 150 * 1024, f"peak RSS {int(peak.group(1)) // 1024} MB"


# ------------------------------------------------------------------ 8. exit statuses


def test_exit_status_zero_and_json_terminals(cli: Cli, main_inventory: Path) -> None:
    result = cli.run("-i", str(main_inventory), "--json", "-g", "everything", "-cmd", "true")
    assert result.returncode == 0, result
    ends = terminals(result.events(), MAIN_NAMES)
    assert {h: (e["event"], e["exit_status"]) for h, e in ends.items()} == {
        h: ("exit", 0) for h in MAIN_NAMES}


@pytest.mark.parametrize("code", [1, 7])
def test_exit_status_one_when_a_command_fails(cli: Cli, main_inventory: Path,
                                              main_fleet: Fleet, code: int) -> None:
    command = on_address(address(main_fleet, "web02"), f"exit {code}") + "; echo done"
    result = cli.run("-i", str(main_inventory), "--json", "-g", "everything", "-cmd",
                     f"{command}")
    assert result.returncode == 1, result
    events = result.events()
    ends = terminals(events, MAIN_NAMES)
    assert ends["web02"]["event"] == "exit" and ends["web02"]["exit_status"] == code
    for host in ("web01", "web03", "db01"):
        assert (ends[host]["event"], ends[host]["exit_status"]) == ("exit", 0)
        assert json_lines(events, host, "stdout") == ["done"]
    assert json_lines(events, "web02", "stdout") == []
    assert "web02" in result.stderr  # the summary names the failed host


def test_exit_status_unreachable_wins_over_failed(cli: Cli, outage_fleet: Fleet,
                                                  tmp_path: Path) -> None:
    inventory = write_inventory(
        tmp_path / "outage.ini",
        {name: fleet_host(outage_fleet, name) for name in ("ok1", "down1")},
        defaults={"user": TEST_USER},
    )
    result = cli.run("-i", str(inventory), "--json", "-h", "ok1,down1", "-cmd",
                     "echo ran; exit 1")
    assert result.returncode == 3, result
    events = result.events()
    ends = terminals(events, ["ok1", "down1"])
    assert (ends["ok1"]["event"], ends["ok1"]["exit_status"]) == ("exit", 1)
    assert (ends["down1"]["event"], ends["down1"]["kind"]) == ("error", "connect")
    assert json_lines(events, "ok1", "stdout") == ["ran"]
    assert "down1" in result.stderr and "ok1" in result.stderr


# ------------------------------------------------------------------ 18. output hygiene


def test_json_stdout_is_pure_json_lines(cli: Cli, main_inventory: Path,
                                        main_fleet: Fleet) -> None:
    command = ("echo '{\"not\": json'; echo 'web01: fake prefix'; echo err >&2; "
               + on_address(address(main_fleet, "db01"), "exit 4")
               + "; printf 'tail without newline'")
    result = cli.run("-i", str(main_inventory), "--json", "-g", "everything", "-cmd", command)
    assert result.returncode == 1, result
    events = result.events()  # raises if any stdout line is not a JSON object
    ends = terminals(events, MAIN_NAMES)
    assert ends["db01"]["exit_status"] == 4
    for host in ("web01", "web02", "web03"):
        assert json_lines(events, host, "stdout") == [
            '{"not": json', "web01: fake prefix", "tail without newline"]
        assert json_lines(events, host, "stderr") == ["err"]
    assert {e["event"] for e in events} <= {"stdout", "stderr", "exit", "error"}
    # the summary is still printed, on stderr
    assert re.search(r"\b4 hosts\b", result.stderr), result


def test_pipe_into_head_finishes_cleanly(cli: Cli, main_inventory: Path,
                                         tmp_path: Path) -> None:
    from tests.integration.conftest import BATCH_RUN

    err_file = tmp_path / "stderr.txt"
    script = (f"'{BATCH_RUN}' -i '{main_inventory}' -h web01 -cmd 'seq 1 200000' "
              f"2>'{err_file}' | head -n 1; exit ${{PIPESTATUS[0]}}")
    start = time.monotonic()
    proc = subprocess.run(["bash", "-c", script], env=cli.env(), cwd=cli.cwd,
                          capture_output=True, timeout=60, check=False)
    elapsed = time.monotonic() - start
    stderr = err_file.read_text()
    assert proc.stdout == b"web01: 1\n", (proc.stdout[:200], stderr)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert "Exception ignored" not in stderr, stderr
    # the run still finished and its status reflects the host (which exited 0)
    assert proc.returncode == 0, stderr
    assert re.search(r"\b1 host\b.*\b1 ok\b", stderr), stderr
    assert elapsed < 30


def test_non_utf8_bytes_become_replacement_characters(cli: Cli, main_inventory: Path) -> None:
    result = cli.run("-i", str(main_inventory), "-h", "web01", "-cmd",
                     r"printf 'ok \377\376 end\n'; printf 'bad \300 err\n' >&2")
    assert result.returncode == 0, result
    assert result.stdout == "web01: ok \ufffd\ufffd end\n"
    assert "web01: bad \ufffd err\n" in result.stderr
    json_result = cli.run("-i", str(main_inventory), "--json", "-h", "web01", "-cmd",
                          r"printf 'ok \377\376 end\n'")
    assert json_lines(json_result.events(), "web01", "stdout") == ["ok \ufffd\ufffd end"]


def _run_in_ptys(cli: Cli, args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run the CLI with stdout and stderr each on its own pseudo-terminal."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    proc = subprocess.Popen(cli.argv(args), env=cli.env(env), cwd=cli.cwd,
                            stdin=subprocess.DEVNULL, stdout=out_slave, stderr=err_slave)
    os.close(out_slave)
    os.close(err_slave)
    buffers = {out_master: b"", err_master: b""}
    open_fds = set(buffers)
    deadline = time.monotonic() + 60
    try:
        while open_fds and time.monotonic() < deadline:
            readable, _, _ = select.select(list(open_fds), [], [], 1.0)
            for fd in readable:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the slave side is closed
                    data = b""
                if data:
                    buffers[fd] += data
                else:
                    open_fds.discard(fd)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(out_master)
        os.close(err_master)
    return status, buffers[out_master], buffers[err_master]


def test_colours_only_on_a_terminal_and_never_with_no_color(cli: Cli,
                                                             main_inventory: Path) -> None:
    args = ["-i", str(main_inventory), "-h", "web01,db01", "-cmd", "echo out; echo err >&2"]
    status, out, err = _run_in_ptys(cli, args, {"TERM": "xterm-256color"})
    assert status == 0, (out, err)
    assert ANSI.search(out.decode()), out
    assert ANSI.search(err.decode()), err
    assert b"out" in out and b"err" in err
    plain_out = ANSI.sub("", out.decode()).replace("\r\n", "\n")
    assert sorted(split_lines(plain_out)) == ["db01: out", "web01: out"]

    status, out, err = _run_in_ptys(cli, args, {"TERM": "xterm-256color", "NO_COLOR": "1"})
    assert status == 0, (out, err)
    assert b"\x1b" not in out and b"\x1b" not in err, (out, err)
    assert sorted(split_lines(out.decode().replace("\r\n", "\n"))) == ["db01: out",
                                                                        "web01: out"]

    piped = cli.run(*args, env={"TERM": "xterm-256color"})
    assert piped.returncode == 0, piped
    assert "\x1b" not in piped.stdout and "\x1b" not in piped.stderr, piped
    assert_no_traceback(piped)
