"""Real admin work against real sshd hosts: --sudo, --env, stdin broadcast and --script.

sudo runs as the local user ``hbsudo`` (created here, with a password) under a sudoers rule
that requires that password every time (``timestamp_timeout=0``), so every run is asked.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.integration.conftest import (
    MAIN_NAMES,
    TEST_USER,
    Cli,
    Result,
    fleet_host,
    host_lines,
    json_lines,
    terminals,
    wait_for_processes,
    write_inventory,
)
from tests.support.cli import answer_prompt_on_pty
from tests.support.fleet import MARKER_VAR, Fleet, ensure_test_user

pytestmark = pytest.mark.integration

SUDO_USER = "hbsudo"
SUDO_PASSWORD = "sudo-pw %#;'x\"y"
SUDOERS = Path("/etc/sudoers.d/hostbatch-test")
SUDOERS_TEXT = (f"# hostbatch test suite: {SUDO_USER} may sudo, with its password every time\n"
                f"Defaults:{SUDO_USER} timestamp_timeout=0, !mail_badpass\n"
                f"{SUDO_USER} ALL=(ALL:ALL) ALL\n")
WEB = ["web01", "web02", "web03"]


@pytest.fixture(scope="session")
def sudo_user(test_user: str) -> str:
    """The user ``hbsudo`` with a password and a password-requiring sudo rule (idempotent)."""
    ensure_test_user(SUDO_USER, SUDO_PASSWORD)
    if not SUDOERS.exists() or SUDOERS.read_text() != SUDOERS_TEXT:
        # sudo skips names with a dot, so the candidate is never read half-written; the pid
        # keeps suites running at the same time from writing the same candidate.
        candidate = SUDOERS.with_name(f".hostbatch-test.{os.getpid()}")
        candidate.write_text(SUDOERS_TEXT)
        candidate.chmod(0o440)
        check = subprocess.run(["visudo", "-cf", str(candidate)], capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        candidate.rename(SUDOERS)
    return SUDO_USER


def unique() -> str:
    """A token unique to this test run: other suites on this machine may run these very
    tests at the same time, with the same hosts' home directories and process table."""
    return secrets.token_hex(4)


def sleeps(*bases: int) -> tuple[list[str], str]:
    """``sleep`` commands with durations unique to this run, and a ``pgrep -x`` pattern
    matching exactly them."""
    token = secrets.randbelow(10**6)
    commands = [f"sleep {base}.{token:06d}" for base in bases]
    pattern = "(" + "|".join(re.escape(command) for command in commands) + ")"
    return commands, pattern


def sudo_inventory(fleet: Fleet, path: Path, **defaults: str) -> Path:
    return write_inventory(path, {name: fleet_host(fleet, name) for name in WEB},
                           {"web": WEB}, defaults={"user": SUDO_USER, **defaults})


def run_with_stdin(cli: Cli, data: bytes, *args: str | Path,
                   env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    proc = cli.popen(*args, stdin=subprocess.PIPE, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(input=data, timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Result(list(map(str, args)), proc.returncode, stdout.decode(), stderr.decode(), 0.0)


def assert_no_password(result: Result, password: str = SUDO_PASSWORD) -> None:
    for text in (result.stdout, result.stderr):
        assert password not in text, result
        assert "hostbatch-sudo" not in text, result  # neither prompt nor start marker


# ------------------------------------------------------------------ --sudo


def test_sudo_with_password_runs_as_root(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                         tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini",
                               sudo_password=SUDO_PASSWORD)
    result = cli.run("-i", inventory, "-g", "web", "--sudo", "-cmd",
                     "id -u; id -un >&2; logname 2>/dev/null || true")
    assert result.returncode == 0, result
    out = host_lines(result.stdout, WEB)
    for host in WEB:
        assert out[host][0] == "0", result
    err = host_lines(result.stderr, WEB, strict=False)
    for host in WEB:
        assert err[host] == ["root"], result
    assert_no_password(result)


def test_sudo_json_and_wrong_password(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                      tmp_path: Path) -> None:
    wrong = "not-the-password-42"
    inventory = write_inventory(
        tmp_path / "hosts.ini",
        {"web01": fleet_host(main_fleet, "web01", sudo_password=wrong),
         "web02": fleet_host(main_fleet, "web02", sudo_password=SUDO_PASSWORD)},
        defaults={"user": SUDO_USER})
    result = cli.run("-i", inventory, "-g", "all", "--sudo", "--json", "-cmd", "id -u")
    assert result.returncode == 3, result
    ends = terminals(result.events(), ["web01", "web02"])
    assert (ends["web01"]["kind"], ends["web01"]["error"]) == (
        "auth", "sudo: incorrect password"), ends
    assert ends["web02"]["exit_status"] == 0
    assert json_lines(result.events(), "web02", "stdout") == ["0"]
    assert json_lines(result.events(), "web01", "stdout") == []
    assert json_lines(result.events(), "web01", "stderr") == []  # sudo's chatter is not output
    assert_no_password(result)
    assert_no_password(result, wrong)


def test_sudo_without_a_password_fails_clearly(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                               tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini")
    result = cli.run("-i", inventory, "-h", "web01", "--sudo", "--json", "-cmd", "id -u",
                     timeout=30)
    assert result.returncode == 3, result
    end = terminals(result.events(), ["web01"])["web01"]
    assert end["kind"] == "auth" and "sudo_password" in end["error"], end


def test_sudo_user_not_allowed(cli: Cli, sudo_user: str, main_inventory: Path) -> None:
    """hbtest has no sudo rule: sudo refuses, and the host fails with sudo's reason."""
    result = cli.run("-i", main_inventory, "-h", "web01", "--sudo", "--json", "-cmd", "id -u",
                     env={"HB_UNUSED": "1"}, timeout=30)
    assert result.returncode == 3, result
    end = terminals(result.events(), ["web01"])["web01"]
    assert end["kind"] == "auth" and end["error"].startswith("sudo"), end


def test_sudo_password_from_environment(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                        tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini",
                               sudo_password_env="HB_TEST_SUDO_PW")
    result = cli.run("-i", inventory, "-h", "web02", "--sudo", "-cmd", "id -u",
                     env={"HB_TEST_SUDO_PW": SUDO_PASSWORD})
    assert result.returncode == 0, result
    assert result.stdout == "web02: 0\n", result
    missing = cli.run("-i", inventory, "-h", "web02", "--sudo", "-cmd", "id -u")
    assert missing.returncode == 2, missing
    assert len(missing.stderr.splitlines()) == 1, missing
    assert "HB_TEST_SUDO_PW" in missing.stderr and "not set" in missing.stderr, missing


def _fleet_cmdlines() -> list[bytes]:
    """The argv of every process in a fleet session on this machine."""
    lines = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            environ = Path(proc, "environ").read_bytes()
            cmdline = Path(proc, "cmdline").read_bytes()
        except OSError:
            continue
        if f"{MARKER_VAR}=".encode() in environ:
            lines.append(cmdline)
    return lines


def root_commands(pattern: str) -> list[str]:
    """Root processes whose whole command line matches ``pattern``: sudo resets the
    environment, so the fleet marker cannot pick out the host's processes; ``-x`` keeps the
    local hostbatch (whose argv merely contains the command) out."""
    proc = subprocess.run(["pgrep", "-a", "-x", "-f", "-u", "root", pattern],
                          capture_output=True, text=True, timeout=10, check=False)
    return proc.stdout.splitlines()


def wait_for_root_commands(pattern: str, timeout: float, *, present: bool) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = root_commands(pattern)
        if bool(found) == present or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_sudo_password_never_on_a_command_line_and_timeout_kills_root_tree(
        cli: Cli, sudo_user: str, main_fleet: Fleet, tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini",
                               sudo_password=SUDO_PASSWORD)
    (first, second), pattern = sleeps(4301, 4302)
    assert root_commands(pattern) == []
    proc = cli.popen("-i", inventory, "-h", "web01", "--sudo", "--timeout", "4", "--json",
                     "-cmd", f"echo up; sh -c '{first} & {second} & wait'",
                     start_new_session=True)
    try:
        seen = wait_for_root_commands(pattern, 20.0, present=True)
        assert len(seen) == 2, seen
        cmdlines = _fleet_cmdlines()
        assert any(b"sudo" in line for line in cmdlines), cmdlines
        for line in cmdlines:
            assert SUDO_PASSWORD.encode() not in line, line
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = Result([], proc.returncode, stdout.decode(), stderr.decode(), 0.0)
    assert result.returncode == 3, result
    end = terminals(result.events(), ["web01"])["web01"]
    assert end["kind"] == "timeout", end
    assert json_lines(result.events(), "web01", "stdout") == ["up"]
    leftover = wait_for_root_commands(pattern, 5.0, present=False)
    assert leftover == [], f"root processes survived --timeout under sudo: {leftover}"
    assert_no_password(result)


def test_sudo_ctrl_c_kills_root_tree(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                     tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini",
                               sudo_password=SUDO_PASSWORD)
    (first, second), pattern = sleeps(4501, 4502)
    assert root_commands(pattern) == []
    proc = cli.popen("-i", inventory, "-h", "web02", "--sudo", "--json", "-cmd",
                     f"sh -c '{first} & {second} & wait'", start_new_session=True)
    try:
        assert len(wait_for_root_commands(pattern, 20.0, present=True)) == 2
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    result = Result([], proc.returncode, stdout.decode(), stderr.decode(), 0.0)
    assert terminals(result.events(), ["web02"])["web02"]["kind"] == "interrupted"
    leftover = wait_for_root_commands(pattern, 5.0, present=False)
    assert leftover == [], f"root processes survived Ctrl-C under sudo: {leftover}"


def test_sudo_with_stdin_and_env(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                 tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini",
                               sudo_password=SUDO_PASSWORD)
    data = bytes(range(256)) * 2048
    result = run_with_stdin(cli, data, "-i", inventory, "-g", "web", "--sudo", "--env",
                            "GREETING=it's me", "-cmd",
                            'id -u; printf "%s\\n" "$GREETING"; sha256sum')
    assert result.returncode == 0, result
    digest = hashlib.sha256(data).hexdigest()
    out = host_lines(result.stdout, WEB)
    for host in WEB:
        assert out[host] == ["0", "it's me", f"{digest}  -"], result
    assert_no_password(result)


def test_ask_sudo_pass_prompts_once_without_echo(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                                 tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini")
    status, shown, stdout = answer_prompt_on_pty(
        cli, b"sudo password:", SUDO_PASSWORD.encode() + b"\n",
        "-i", inventory, "-g", "web", "--sudo", "--ask-sudo-pass", "-cmd", "id -u")
    assert status == 0, shown
    assert shown.count(b"sudo password:") == 1, shown
    assert SUDO_PASSWORD.encode() not in shown, shown  # not echoed
    assert sorted(stdout.splitlines()) == sorted(f"{host}: 0" for host in WEB), stdout


def test_ask_sudo_pass_needs_a_terminal(cli: Cli, sudo_user: str, main_fleet: Fleet,
                                        tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini")
    result = cli.run("-i", inventory, "-g", "web", "--sudo", "--ask-sudo-pass", "-cmd", "true")
    assert result.returncode == 2, result
    assert "terminal" in result.stderr and len(result.stderr.splitlines()) == 1, result
    alone = cli.run("-i", inventory, "-g", "web", "--ask-sudo-pass", "-cmd", "true")
    assert alone.returncode == 2 and "--ask-sudo-pass needs --sudo" in alone.stderr, alone


# ------------------------------------------------------------------ --env


def test_env_values_are_exported_exactly(cli: Cli, main_inventory: Path) -> None:
    values = {"PLAIN": "x", "SPACES": "a  b", "QUOTES": "it's \"q\"", "DOLLAR": "$HOME `id`",
              "EMPTY": "", "UNICODE": "grüße", "EQUALS": "k=v"}
    args = [arg for name, value in values.items() for arg in ("--env", f"{name}={value}")]
    command = "printf '%s|\\n' " + " ".join(f'"${name}"' for name in values)
    result = cli.run("-i", main_inventory, "-h", "web01,db01", *args, "-cmd", command)
    assert result.returncode == 0, result
    out = host_lines(result.stdout, ["web01", "db01"])
    for host in ("web01", "db01"):
        assert out[host] == [f"{value}|" for value in values.values()], result


@pytest.mark.parametrize("pair", ["1X=3", "A-B=1", "NOEQUALS", "=v", "A B=1"])
def test_env_rejects_bad_names(cli: Cli, main_inventory: Path, pair: str) -> None:
    result = cli.run("-i", main_inventory, "-g", "all", "--env", pair, "-cmd", "true")
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and "--env" in result.stderr, result


# ------------------------------------------------------------------ stdin broadcast


def test_stdin_broadcast_is_byte_exact(cli: Cli, main_inventory: Path) -> None:
    data = bytes(range(256)) * (3 * 4096) + b"\x00tail without newline"
    result = run_with_stdin(cli, data, "-i", main_inventory, "-g", "all", "-cmd",
                            "sha256sum; wc -c < /dev/null")
    assert result.returncode == 0, result
    digest = hashlib.sha256(data).hexdigest()
    out = host_lines(result.stdout, MAIN_NAMES)
    for host in MAIN_NAMES:
        assert out[host][0] == f"{digest}  -", result


def test_stdin_script_through_sh(cli: Cli, main_inventory: Path) -> None:
    script = b"echo one\ncat <<'END'\nheredoc $HOME\nEND\nexit 4\necho never\n"
    result = run_with_stdin(cli, script, "-i", main_inventory, "-h", "web01,web02", "-cmd",
                            "sh -s")
    assert result.returncode == 1, result
    out = host_lines(result.stdout, ["web01", "web02"])
    for host in ("web01", "web02"):
        assert out[host] == ["one", "heredoc $HOME"], result


def test_no_stdin_sends_eof(cli: Cli, main_inventory: Path) -> None:
    result = run_with_stdin(cli, b"ignored\n", "-i", main_inventory, "-h", "web01",
                            "--no-stdin", "-cmd", "wc -c")
    assert result.returncode == 0 and result.stdout == "web01: 0\n", result
    empty = cli.run("-i", main_inventory, "-h", "web01", "-cmd", "wc -c")  # stdin: /dev/null
    assert empty.returncode == 0 and empty.stdout == "web01: 0\n", empty


def test_stdin_not_read_by_a_command_that_exits(cli: Cli, main_inventory: Path) -> None:
    data = b"x" * (8 * 1024 * 1024)
    result = run_with_stdin(cli, data, "-i", main_inventory, "-g", "all", "-cmd", "echo done")
    assert result.returncode == 0, result
    assert sorted(result.stdout.splitlines()) == sorted(f"{h}: done" for h in MAIN_NAMES)


# ------------------------------------------------------------------ --script


def _leftover_scripts(label: str, user: str = TEST_USER) -> list[str]:
    """This test's uploaded scripts still in the user's home (named after ``label``)."""
    return sorted(str(p) for p in Path(f"/home/{user}").glob(f".hostbatch-script-*-{label}"))


def test_script_runs_with_shebang_and_args_and_is_removed(cli: Cli, main_inventory: Path,
                                                          tmp_path: Path) -> None:
    label = f"check_disk-{unique()}.py"
    script = tmp_path / label.replace("_", " ")
    script.write_text("#!/usr/bin/env python3\nimport os, sys\n"
                      "print('args', sys.argv[1:])\n"
                      "print('mode', oct(os.stat(sys.argv[0]).st_mode & 0o777))\n"
                      "sys.exit(3 if 'fail' in sys.argv else 0)\n")
    result = cli.run("-i", main_inventory, "-h", "web01,web02", "--script", script, "--",
                     "a b", "it's")
    assert result.returncode == 0, result
    out = host_lines(result.stdout, ["web01", "web02"])
    for host in ("web01", "web02"):
        assert out[host] == ["args ['a b', \"it's\"]", "mode 0o700"], result
    failed = cli.run("-i", main_inventory, "-h", "web01", "--script", script, "fail")
    assert failed.returncode == 1, failed
    assert _leftover_scripts(label) == []


def test_script_removed_after_timeout(cli: Cli, main_inventory: Path, tmp_path: Path) -> None:
    label = f"slow-{unique()}.sh"
    script = tmp_path / label
    (command,), pattern = sleeps(4401)
    script.write_text(f"#!/bin/sh\necho started\n{command}\n")
    result = cli.run("-i", main_inventory, "-h", "web03", "--timeout", "2", "--json",
                     "--script", script)
    assert result.returncode == 3, result
    end = terminals(result.events(), ["web03"])["web03"]
    assert end["kind"] == "timeout", end
    assert json_lines(result.events(), "web03", "stdout") == ["started"]
    assert _leftover_scripts(label) == []
    leftover, _ = wait_for_processes(pattern, 3.0, present=False)
    assert leftover == []


def test_script_with_sudo(cli: Cli, sudo_user: str, main_fleet: Fleet, tmp_path: Path) -> None:
    inventory = sudo_inventory(main_fleet, tmp_path / "hosts.ini",
                               sudo_password=SUDO_PASSWORD)
    label = f"whoami-{unique()}.sh"
    script = tmp_path / label
    script.write_text("#!/bin/sh\nid -u\n")
    result = cli.run("-i", inventory, "-h", "web01", "--sudo", "--script", script)
    assert result.returncode == 0 and result.stdout == "web01: 0\n", result
    assert _leftover_scripts(label, SUDO_USER) == []


def test_script_errors_before_connecting(cli: Cli, main_inventory: Path,
                                         tmp_path: Path) -> None:
    missing = cli.run("-i", main_inventory, "-g", "all", "--script", tmp_path / "nope.sh")
    assert missing.returncode == 2 and "nope.sh" in missing.stderr, missing
    assert len(missing.stderr.splitlines()) == 1, missing
    both = cli.run("-i", main_inventory, "-g", "all", "--script", __file__, "-cmd", "true")
    assert both.returncode == 2 and "not both" in both.stderr, both
