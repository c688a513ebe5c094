"""The run history against real sshd hosts: what is recorded, replay, @failed, diff, secrets,
concurrent writers, and a history that cannot be written."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from hostbatch.history.store import HistoryStore
from tests.integration.conftest import (
    HOSTBATCH,
    MAIN_NAMES,
    TEST_PASSWORD,
    TEST_USER,
    Cli,
    Result,
    address,
    assert_no_traceback,
    fleet_host,
    host_lines,
    on_address,
    refused_port,
    split_lines,
    wait_for_processes,
    write_inventory,
)
from tests.integration.test_kill import LineReader
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

#: Addresses for hosts of this module's own inventories (nothing listens there).
DOWN_ADDRESS = "127.0.21.10"


def history(cli: Cli, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``hostbatch history ARGS`` in the test's environment."""
    argv = [HOSTBATCH, "history", *args]
    start = time.monotonic()
    proc = subprocess.run(argv, env=cli.env(env), cwd=cli.cwd, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)
    return Result(argv, proc.returncode, proc.stdout.decode(), proc.stderr.decode(),
                  time.monotonic() - start)


def db_path(cli: Cli) -> Path:
    return cli.home / ".local" / "state" / "hostbatch" / "history.db"


def query(cli: Cli, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db_path(cli)}?mode=ro", uri=True) as db:
        return db.execute(sql, params).fetchall()


def output_of(cli: Cli, run_id: int, stream: str, host: str | None = None
              ) -> list[tuple[str, bytes]]:
    """(host, bytes) of a run's rows of ``stream``, read from wherever the history keeps
    them (its output files), as ``history show`` reads them."""
    store = HistoryStore.open(db_path(cli), create=False)
    try:
        rows = [(name, data) for _, name, kind, data in store.output(run_id, host)
                if kind == stream]
        assert not store.problems, store.problems
        return rows
    finally:
        store.close()


def last_id(cli: Cli) -> int:
    (row,) = query(cli, "SELECT max(id) FROM runs")
    assert isinstance(row[0], int)
    return row[0]


def with_down_host(main_fleet: Fleet, tmp_path: Path) -> Path:
    """The main fleet plus ``down01``, whose address refuses connections."""
    hosts = {name: fleet_host(main_fleet, name) for name in MAIN_NAMES}
    hosts["down01"] = {"hostname": DOWN_ADDRESS, "port": str(refused_port(DOWN_ADDRESS)),
                       "identity_file": str(main_fleet.client_key)}
    return write_inventory(tmp_path / "hosts.ini", hosts, defaults={"user": TEST_USER})


# ------------------------------------------------------------------ recording and listing


def test_run_recorded_with_hosts_and_listed(cli: Cli, main_inventory: Path,
                                            main_fleet: Fleet) -> None:
    fail_web02 = on_address(address(main_fleet, "web02"), "exit 3", "echo fine")
    result = cli.run("-i", main_inventory, "-g", "all", "-cmd", fail_web02)
    assert result.returncode == 1, result
    assert db_path(cli).stat().st_mode & 0o777 == 0o600
    assert db_path(cli).parent.stat().st_mode & 0o777 == 0o700
    run_id = last_id(cli)
    (run,) = query(cli, "SELECT command, action, user, host_count, exit_status, selection "
                        "FROM runs WHERE id = ?", run_id)
    assert run[:5] == (fail_web02, "run", "root", 4, 1)
    assert json.loads(str(run[5])) == {"hosts": [], "groups": ["all"], "exclude": []}
    hosts = query(cli, "SELECT host, state, exit_status FROM hosts WHERE run_id = ? "
                       "ORDER BY position", run_id)
    assert hosts == [("web01", "ok", 0), ("web02", "failed", 3), ("web03", "ok", 0),
                     ("db01", "ok", 0)]

    second = cli.run("-i", main_inventory, "-h", "db01", "-cmd", "echo two\necho lines")
    assert second.returncode == 0, second
    listed = history(cli)
    assert listed.returncode == 0, listed
    lines = split_lines(listed.stdout)
    assert lines[0].split() == ["ID", "STARTED", "HOSTS", "OK", "FAILED", "EXIT", "COMMAND"]
    newest, older = lines[1].split(None, 7), lines[2].split(None, 7)
    assert newest[0] == str(run_id + 1) and newest[3:] == ["1", "1", "0", "0",
                                                           "echo two\\necho lines"]
    assert older[0] == str(run_id) and older[3:7] == ["4", "3", "1", "1"]
    assert older[7] == fail_web02
    assert len(split_lines(history(cli, "-n", "1").stdout)) == 2
    as_json = [json.loads(line) for line in split_lines(history(cli, "--json").stdout)]
    assert [(r["id"], r["ok"], r["failed"]) for r in as_json] == [(run_id + 1, 1, 0),
                                                                 (run_id, 3, 1)]


def test_no_history_records_nothing(cli: Cli, main_inventory: Path) -> None:
    result = cli.run("-i", main_inventory, "-h", "web01", "--no-history", "-cmd", "true")
    assert result.returncode == 0, result
    assert not db_path(cli).exists()
    empty = history(cli)
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        0, "no runs recorded yet\n", ""), empty
    show = history(cli, "show")
    assert show.returncode == 2 and "no run history yet" in show.stderr, show
    assert len(split_lines(show.stderr)) == 1
    at_failed = cli.run("-i", main_inventory, "-h", "@failed", "-cmd", "true")
    assert at_failed.returncode == 2 and "no run history yet" in at_failed.stderr, at_failed


def test_xdg_state_home_is_honoured(cli: Cli, main_inventory: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = cli.run("-i", main_inventory, "-h", "web01", "-cmd", "true",
                     env={"XDG_STATE_HOME": str(state)})
    assert result.returncode == 0, result
    assert (state / "hostbatch" / "history.db").is_file()
    assert not db_path(cli).exists()


# ------------------------------------------------------------------ replay


REPLAY_COMMAND = ("for i in 1 2 3; do echo \"out $i\"; echo \"err $i\" >&2; done; "
                  "printf 'caf\\351 \\n'; printf 'no newline'; "
                  + "test $(echo $SSH_CONNECTION | cut -d' ' -f3) != {addr}")


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_show_replays_the_original_output(cli: Cli, main_fleet: Fleet, tmp_path: Path,
                                          mode: list[str]) -> None:
    inventory = with_down_host(main_fleet, tmp_path)
    command = REPLAY_COMMAND.format(addr=address(main_fleet, "web03"))
    live = cli.run("-i", inventory, "-g", "all", *mode, "-cmd", command)
    assert live.returncode == 3, live  # web03 exits 1, down01 is unreachable
    assert "down01" in live.stderr and "web03" in live.stderr
    shown = history(cli, "show", str(last_id(cli)), *mode)
    assert shown.returncode == 0, shown
    assert shown.stdout == live.stdout
    assert shown.stderr == live.stderr  # host stderr, failures and the summary, in order
    # Without an id: the last run; -h keeps some hosts, in the run's order.
    some = history(cli, "show", "-h", "db01,web0[1-2]", *mode)
    assert some.returncode == 0, some
    if not mode:
        wanted = host_lines(live.stdout, ["web01", "web02", "db01"], strict=False)
        assert host_lines(some.stdout, ["web01", "web02", "db01"]) == wanted
    assert "web03" not in some.stdout + some.stderr
    unknown = history(cli, "show", "-h", "web09", *mode)
    assert unknown.returncode == 2 and "web09" in unknown.stderr, unknown


GATHER_COMMAND = ("echo same; " + on_address("{web03}", "echo other", "echo line") + "; "
                  + on_address("{db01}", "exit 4"))


@pytest.mark.parametrize("mode", [["-b"], ["-b", "--gather-stderr"], ["--diff"], ["-q"]])
def test_show_in_gathered_modes_equals_the_live_run(cli: Cli, main_fleet: Fleet,
                                                    tmp_path: Path, mode: list[str]) -> None:
    inventory = with_down_host(main_fleet, tmp_path)
    command = GATHER_COMMAND.format(web03=address(main_fleet, "web03"),
                                    db01=address(main_fleet, "db01"))
    live = cli.run("-i", inventory, "-g", "all", *mode, "-cmd", command)
    assert live.returncode == 3, live
    if mode[0] == "-b":
        assert "---- web[01-02] (2) ----" in live.stdout, live
    shown = history(cli, "show", str(last_id(cli)), *mode)
    assert shown.returncode == 0, shown
    assert (shown.stdout, shown.stderr) == (live.stdout, live.stderr)


def test_show_of_a_streamed_run_gathered_and_into_files(cli: Cli, main_fleet: Fleet,
                                                        main_inventory: Path,
                                                        tmp_path: Path) -> None:
    command = "echo same; " + on_address(address(main_fleet, "web03"), "echo other >&2")
    live = cli.run("-i", main_inventory, "-g", "all", "-cmd", command)
    assert live.returncode == 0, live
    gathered = history(cli, "show", "-b")
    assert gathered.returncode == 0, gathered
    assert gathered.stdout.startswith("---- db01,web[01-03] (4) ----\nsame\n"), gathered
    assert "web03: other" in gathered.stderr
    outdir = tmp_path / "out"
    files = history(cli, "show", "-q", "-o", str(outdir), "-e", str(tmp_path / "err"))
    assert (files.returncode, files.stdout) == (0, ""), files
    assert {path.name: path.read_text() for path in outdir.iterdir() if "." not in path.name} \
        == {name: "same\n" for name in MAIN_NAMES}
    assert (tmp_path / "err" / "web03").read_text() == "other\n"
    conflicting = history(cli, "show", "-b", "--json")
    assert conflicting.returncode == 2 and len(split_lines(conflicting.stderr)) == 1


def test_show_of_a_copy_replays_file_lines(cli: Cli, main_inventory: Path) -> None:
    scp = Cli(cli.home, cli.cwd, command="scp")
    live = scp.run("-i", main_inventory, "-g", "all", "-action", "get", "-remote",
                   "/etc/hostname", "-local", "got")
    assert live.returncode == 0, live
    assert len(live.file_lines()) == 4
    listed = history(cli)
    assert "get /etc/hostname -> " in listed.stdout, listed
    shown = history(cli, "show")
    assert (shown.returncode, shown.stdout) == (0, live.stdout), shown


def test_output_cap_cuts_with_a_note(cli: Cli, main_inventory: Path) -> None:
    result = cli.run("-i", main_inventory, "-h", "web01,web02", "--history-cap", "10K",
                     "-cmd", "seq 1 20000")
    assert result.returncode == 0, result
    shown = history(cli, "show")
    lines = host_lines(shown.stdout, ["web01", "web02"])
    for host in ("web01", "web02"):
        kept, note = lines[host][:-1], lines[host][-1]
        assert "output cut here" in note and "10.0 KiB" in note, note
        assert kept == [str(n) for n in range(1, len(kept) + 1)]
        assert 9 * 1024 < sum(len(line) + 1 for line in kept) <= 10 * 1024
    dropped = query(cli, "SELECT host, output_bytes, dropped_bytes FROM hosts "
                         "WHERE run_id = ?", last_id(cli))
    total = sum(len(str(n)) + 1 for n in range(1, 20001))
    assert all(out + drop == total for _, out, drop in dropped), dropped


# ------------------------------------------------------------------ @failed and @ok


def test_at_failed_selects_exactly_the_failed_hosts(cli: Cli, main_fleet: Fleet,
                                                    tmp_path: Path) -> None:
    inventory = with_down_host(main_fleet, tmp_path)
    fail = on_address(address(main_fleet, "web02"), "false",
                      on_address(address(main_fleet, "db01"), "exit 7"))
    first = cli.run("-i", inventory, "-g", "all", "-cmd", fail)
    assert first.returncode == 3, first
    first_id = last_id(cli)
    listed = cli.run("-i", inventory, "-h", "@failed", "--list")
    assert (listed.returncode, listed.stdout) == (0, "web02\ndb01\ndown01\n"), listed
    ok_hosts = cli.run("-i", inventory, "-g", "all", "-x", f"@failed:{first_id}", "--list")
    assert ok_hosts.stdout == "web01\nweb03\n", ok_hosts
    assert cli.run("-i", inventory, "-h", f"@ok:{first_id}", "--list").stdout == \
        "web01\nweb03\n"

    retry = cli.run("-i", inventory, "-h", "@failed,web01", "-x", "down01", "-cmd",
                    "echo again")
    assert retry.returncode == 0, retry
    assert host_lines(retry.stdout, ["web01", "web02", "db01"]) == {
        "web01": ["again"], "web02": ["again"], "db01": ["again"]}
    (selection,) = query(cli, "SELECT selection FROM runs WHERE id = ?", last_id(cli))
    assert json.loads(str(selection[0]))["hosts"] == ["@failed,web01"]
    # The newest run is now the retry, where nothing failed.
    none_failed = cli.run("-i", inventory, "-h", "@failed", "-cmd", "true")
    assert none_failed.returncode == 2, none_failed
    assert f"no host failed in run {last_id(cli)}" in none_failed.stderr
    assert len(split_lines(none_failed.stderr)) == 1
    # The failed hosts of the first run are still there by id.
    by_id = cli.run("-i", inventory, "-h", f"@failed:{first_id}", "--list")
    assert by_id.stdout == "web02\ndb01\ndown01\n", by_id


def test_at_failed_errors_are_one_line(cli: Cli, main_fleet: Fleet, main_inventory: Path,
                                       tmp_path: Path) -> None:
    inventory = with_down_host(main_fleet, tmp_path)
    assert cli.run("-i", inventory, "-h", "down01", "-cmd", "true").returncode == 3
    for args, needle in (
        (["-i", main_inventory, "-h", "@failed", "-cmd", "true"],
         "down01 of run 1 is not in"),
        (["-i", inventory, "-h", "@failed:99", "-cmd", "true"], "no run 99"),
        (["-i", inventory, "-h", "@failures", "-cmd", "true"], "unknown shortcut"),
    ):
        result = cli.run(*args)
        assert result.returncode == 2, result
        assert needle in result.stderr and len(split_lines(result.stderr)) == 1, result
        assert_no_traceback(result)


def test_at_failed_in_batch_scp(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    inventory = with_down_host(main_fleet, tmp_path)
    assert cli.run("-i", inventory, "-g", "all", "-cmd",
                   on_address(address(main_fleet, "web01"), "false")).returncode == 3
    scp = Cli(cli.home, cli.cwd, command="scp")
    listed = scp.run("-i", inventory, "-h", "@failed", "-x", "down01", "-action", "get",
                     "-remote", "/etc/hostname", "-local", "got", "--list")
    assert (listed.returncode, listed.stdout) == (0, "web01\n"), listed


def test_interrupted_run_is_recorded(cli: Cli, main_inventory: Path) -> None:
    pattern = "sleep 3301"
    proc = cli.popen("-i", main_inventory, "-g", "all", "-f", "1", "-cmd",
                     f"echo started; {pattern}", start_new_session=True)
    try:
        reader = LineReader(proc)
        # -f 1: web01 runs alone; once its line is out, its command can be killed.
        assert reader.until(lambda line: line == "web01: started", timeout=30), reader.lines
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    (run,) = query(cli, "SELECT exit_status, interrupted, finished IS NOT NULL FROM runs")
    assert run == (130, 1, 1)
    states = query(cli, "SELECT host, state FROM hosts ORDER BY position")
    assert states == [("web01", "interrupted"), ("web02", "skipped"), ("web03", "skipped"),
                      ("db01", "skipped")]
    assert output_of(cli, last_id(cli), "stdout") == [("web01", b"started\n")]
    listed = cli.run("-i", main_inventory, "-h", "@failed", "--list")
    assert listed.stdout == "web01\nweb02\nweb03\ndb01\n", listed
    leftover, _ = wait_for_processes(pattern, 15.0, present=False)
    assert leftover == []


# ------------------------------------------------------------------ diff


def test_diff_shows_what_changed_per_host(cli: Cli, main_fleet: Fleet, main_inventory: Path,
                                          tmp_path: Path) -> None:
    data = Path(f"/tmp/hb-history-diff-{os.getpid()}-{time.monotonic_ns()}")
    data.mkdir(mode=0o755)
    try:
        for name in MAIN_NAMES:
            (data / address(main_fleet, name)).write_text("a\nb\nc\n")
        command = f"cat {data}/$(echo $SSH_CONNECTION | cut -d' ' -f3)"
        assert cli.run("-i", main_inventory, "-h", "web0[1-3]", "-cmd", command).returncode == 0
        first = last_id(cli)
        (data / address(main_fleet, "web02")).write_text("a\nB\nc\n")
        (data / address(main_fleet, "web03")).unlink()
        second_run = cli.run("-i", main_inventory, "-h", "web0[1-2],db01", "-cmd", command)
        assert second_run.returncode == 0, second_run
        second = last_id(cli)
        third_run = cli.run("-i", main_inventory, "-h", "web03", "-cmd", command)
        assert third_run.returncode == 1, third_run
        third = last_id(cli)
    finally:
        for item in data.iterdir():
            item.unlink()
        data.rmdir()

    diff = history(cli, "diff", str(first), str(second))
    assert diff.returncode == 1, diff
    assert split_lines(diff.stdout) == [
        "==== web02: output changed",
        f"--- run {first} web02 stdout",
        f"+++ run {second} web02 stdout",
        "@@ -1,3 +1,3 @@",
        " a",
        "-b",
        "+B",
        " c",
        f"==== web03: only in run {first} (exit 0)",
        f"==== db01: only in run {second} (exit 0)",
    ]
    assert "3 of 4 hosts differ" in diff.stderr, diff
    status = history(cli, "diff", str(first), str(third))
    assert "==== web03: exit 0 -> exit 1" in status.stdout, status
    assert f"+++ run {third} web03 stderr" in status.stdout
    same = history(cli, "diff", str(first), str(first))
    assert (same.returncode, same.stdout) == (0, ""), same
    assert cli.run("-i", main_inventory, "-h", "web01", "-cmd", "true").returncode == 0
    other = history(cli, "diff", str(first), str(last_id(cli)))
    assert other.returncode == 2 and "different commands" in other.stderr, other
    assert history(cli, "diff", str(first), str(last_id(cli)), "--force").returncode == 1


# ------------------------------------------------------------------ secrets


def test_no_secret_reaches_the_history(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    fake, sudo, from_env = "Fake-Secret-4711", "Sudo-Secret-2024", "Env-Sudo-Secret-77"
    from_cmd = "Cmd-Secret-5150"
    web01 = {**fleet_host(main_fleet, "web01", password=TEST_PASSWORD), "sudo_password": sudo}
    web02 = {**fleet_host(main_fleet, "web02", password=fake),
             "sudo_password_env": "HB_TEST_SUDO"}
    web03 = {**fleet_host(main_fleet, "web03"), "password_cmd": f"echo {from_cmd}"}
    for section in (web01, web02, web03):
        del section["identity_file"]  # password authentication
    inventory = write_inventory(tmp_path / "hosts.ini",
                                {"web01": web01, "web02": web02, "web03": web03},
                                defaults={"user": TEST_USER})
    secrets = (TEST_PASSWORD, fake, sudo, from_env, from_cmd)
    command = (f"echo 'pw is {TEST_PASSWORD}'; echo {fake} >&2; echo {sudo} {from_env}; "
               f"echo {from_cmd}")
    result = cli.run("-i", inventory, "-g", "all", "-cmd", command,
                     env={"HB_TEST_SUDO": from_env})
    assert result.returncode == 3, result  # the passwords of web02 and web03 are wrong
    assert "web01: pw is" in result.stdout, result  # password authentication worked
    files = [path for path in db_path(cli).parent.rglob("*") if path.is_file()]
    assert any(path.parent.name == "history-output" for path in files), files
    blobs = b"".join(path.read_bytes() for path in files)
    assert b"pw is" in blobs  # the output was recorded ...
    for secret in secrets:
        assert secret.encode() not in blobs  # ... but never a secret, in any file
    shown = history(cli, "show")
    (command_stored,) = query(cli, "SELECT command FROM runs")
    assert command_stored[0] == "echo 'pw is ***'; echo *** >&2; echo *** ***; echo ***"
    assert "web01: pw is ***" in shown.stdout and "web01: ***" in shown.stderr, shown
    assert "web01: *** ***" in shown.stdout
    for text in (shown.stdout, shown.stderr, history(cli, "--json").stdout):
        for secret in secrets:
            assert secret not in text


# ------------------------------------------------------------------ concurrency and failures


def test_two_concurrent_runs_are_both_recorded(cli: Cli, main_inventory: Path) -> None:
    commands = ["seq 1 40000", "seq 1 30000 >&2; echo done"]
    procs = [cli.popen("-i", main_inventory, "-g", "all", "-cmd", command)
             for command in commands]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    errors = [err[-2000:].decode(errors="replace") for _, err in outputs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert not any("history" in text for text in errors), errors
    assert query(cli, "PRAGMA integrity_check") == [("ok",)]
    runs = query(cli, "SELECT id, command, exit_status FROM runs ORDER BY command DESC")
    assert [(r[1], r[2]) for r in runs] == [(commands[0], 0), (commands[1], 0)]
    for (run_id, command, _), streams in zip(runs, ({"stdout": 40000}, {"stderr": 30000}),
                                             strict=True):
        states = query(cli, "SELECT host, state FROM hosts WHERE run_id = ?", run_id)
        assert sorted(states) == sorted((name, "ok") for name in MAIN_NAMES), command
        for host in MAIN_NAMES:
            for stream, count in streams.items():
                assert isinstance(run_id, int)
                data = b"".join(chunk for _, chunk in output_of(cli, run_id, stream, host))
                assert data == "".join(f"{n}\n" for n in range(1, count + 1)).encode()


def _read_only(directory: Path) -> list[str]:
    """A wrapper running the command with ``directory`` mounted read-only (root ignores
    permission bits, so a mode would not do)."""
    return ["unshare", "--mount", "--", "sh", "-c",
            'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"',
            str(directory)]


def test_unwritable_history_warns_once_and_never_fails_the_run(
        cli: Cli, main_fleet: Fleet, main_inventory: Path) -> None:
    state = cli.home / ".local" / "state"
    state.mkdir(parents=True)
    fail_db01 = on_address(address(main_fleet, "db01"), "exit 5", "seq 1 3")
    missing = cli.run("-i", main_inventory, "-g", "all", "-cmd", fail_db01,
                      wrapper=_read_only(state))
    assert missing.returncode == 1, missing
    warnings = [line for line in split_lines(missing.stderr) if "history" in line]
    assert len(warnings) == 1 and "not recorded" in warnings[0], missing
    assert host_lines(missing.stdout, ["web01", "web02", "web03"]) == {
        host: ["1", "2", "3"] for host in ("web01", "web02", "web03")}
    assert not db_path(cli).exists()

    assert cli.run("-i", main_inventory, "-h", "web01", "-cmd", "true").returncode == 0
    existing = cli.run("-i", main_inventory, "-g", "all", "-cmd", fail_db01,
                       wrapper=_read_only(db_path(cli).parent))
    assert existing.returncode == 1, existing
    warnings = [line for line in split_lines(existing.stderr) if "history" in line]
    assert len(warnings) == 1, existing
    assert_no_traceback(existing)
    assert query(cli, "SELECT count(*) FROM runs") == [(1,)]
