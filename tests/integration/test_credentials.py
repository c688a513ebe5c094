"""Credential sources against real sshd: encrypted keys (passphrase on a real terminal), the
ssh-agent, password_env, password_cmd, --ask-pass, the order of methods, one clear reason per
failure, readable inventories refused, and secrets grepped for in everything a run leaves.

The fleet here (127.0.25.x) has a key-only host and a password-only host (sshd ``Match
LocalAddress`` blocks) beside two ordinary ones. Prompts are answered through a pseudo-terminal
that is the run's controlling terminal, as a user's would be.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import subprocess
import termios
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    TEST_PASSWORD,
    TEST_USER,
    Cli,
    Result,
    assert_no_traceback,
    fleet_host,
    keygen,
    terminals,
    wait_for_processes,
    write_inventory,
)
from tests.integration.test_admin import SUDO_PASSWORD, sudo_user
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration
__all__ = ["sudo_user"]  # a fixture of test_admin, used here too

NAMES = ("k1", "k2", "keyonly", "pwonly")
PASSPHRASE = "Pass phrase;#%9q"
WRONG_PASSWORD = "Wr0ng;pw#%zz"
SSHD_CONFIG = """\
Match LocalAddress 127.0.25.12
    PasswordAuthentication no
Match LocalAddress 127.0.25.13
    PubkeyAuthentication no
"""


@dataclass
class AuthFleet:
    fleet: Fleet
    encrypted_key: Path  # authorized, passphrase PASSPHRASE
    plain_copy: Path  # the same key without a passphrase (to load into an agent)
    stranger_key: Path  # not authorized anywhere

    def section(self, name: str, **options: str) -> dict[str, str]:
        host = self.fleet.host(name)
        return {"hostname": host.address, "port": str(host.port),
                "known_hosts": str(self.fleet.known_hosts), **options}


@pytest.fixture(scope="module")
def auth_fleet(test_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthFleet]:
    keys = tmp_path_factory.mktemp("auth-keys")
    encrypted = keys / "enc_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "enc",
                    "-f", str(encrypted)], check=True, capture_output=True, timeout=60)
    plain = keys / "plain_copy"
    shutil.copy(encrypted, plain)
    plain.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", PASSPHRASE, "-N", "", "-f", str(plain)],
                   check=True, capture_output=True, timeout=60)
    stranger = keygen(keys / "stranger")
    with Fleet(tmp_path_factory.mktemp("auth-fleet"), len(NAMES), names=NAMES,
               first_address="127.0.25.10", user=test_user,
               extra_sshd_config=SSHD_CONFIG) as fleet:
        with fleet.authorized_keys.open("a") as handle:
            handle.write(encrypted.with_suffix(".pub").read_text())
        yield AuthFleet(fleet, encrypted, plain, stranger)


# ------------------------------------------------------------------ a real terminal


@dataclass
class TerminalRun:
    status: int
    terminal: str  # everything written to the terminal (prompts; never echoed input)
    stdout: str
    stderr: str
    prompts: int


def run_on_terminal(cli: Cli, args: Sequence[str], answers: Sequence[str] = (),
                    env: Mapping[str, str] | None = None, prompt_text: str = ": ",
                    timeout: float = 60) -> TerminalRun:
    """Run the CLI with a pseudo-terminal as its controlling terminal (and stdin); each time
    the terminal shows a line ending in ``prompt_text``, type the next answer."""
    master, slave = pty.openpty()

    def become_terminal_owner() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(cli.argv(args), env=cli.env(env), cwd=cli.cwd, stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=become_terminal_owner)
    os.close(slave)
    pending = list(answers)
    seen = b""
    prompts = 0
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: nobody holds the terminal any more
                break
            seen += data
            if seen.rstrip(b" ").endswith(prompt_text.strip().encode()):
                prompts += 1
                if not pending:
                    break  # asked more often than the test expects
                os.write(master, pending.pop(0).encode() + b"\n")
                seen += b"\n"
        if proc.poll() is None:
            proc.kill()
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        os.close(master)
    return TerminalRun(proc.returncode, seen.decode(errors="replace"), stdout.decode(),
                       stderr.decode(), prompts)


def _inventory(path: Path, hosts: Mapping[str, Mapping[str, str]], **kw: Any) -> Path:
    return write_inventory(path, hosts, defaults={"user": TEST_USER}, **kw)


# ------------------------------------------------------------------ encrypted keys


def test_passphrase_asked_once_for_every_host_sharing_the_key(cli: Cli, auth_fleet: AuthFleet,
                                                              tmp_path: Path) -> None:
    key = str(auth_fleet.encrypted_key)
    inventory = _inventory(tmp_path / "enc.ini",
                           {n: auth_fleet.section(n, identity_file=key)
                            for n in ("k1", "k2", "keyonly")})
    run = run_on_terminal(cli, ["-i", str(inventory), "-h", "k1,k2,keyonly", "-cmd", "id -un"],
                          ["not it", PASSPHRASE])
    assert run.status == 0, run
    assert run.prompts == 2, run  # one wrong try, then right: one key, asked for once
    assert run.terminal.count(f"Enter passphrase for key {key}") == 2, run
    assert "Wrong passphrase" in run.terminal
    assert sorted(run.stdout.splitlines()) == [f"{n}: {TEST_USER}" for n in ("k1", "k2",
                                                                             "keyonly")]
    assert PASSPHRASE not in run.terminal + run.stdout + run.stderr


def test_wrong_passphrase_three_times_is_a_clear_auth_failure(
        cli: Cli, auth_fleet: AuthFleet, tmp_path: Path) -> None:
    key = str(auth_fleet.encrypted_key)
    inventory = _inventory(tmp_path / "enc.ini",
                           {n: auth_fleet.section(n, identity_file=key) for n in ("k1", "k2")})
    run = run_on_terminal(cli, ["-i", str(inventory), "--json", "-h", "k1,k2", "-cmd", "true"],
                          ["bad-1", "bad-2", "bad-3"])
    assert run.status == 3, run
    assert run.prompts == 3, run
    ends = terminals(Result([], run.status, run.stdout, run.stderr, 0).events(), ["k1", "k2"])
    for end in ends.values():
        assert end["kind"] == "auth" and f"passphrase for {key} is wrong" in end["error"], end
    assert "bad-1" not in run.stdout + run.stderr


def test_encrypted_key_without_a_terminal(cli: Cli, auth_fleet: AuthFleet,
                                          tmp_path: Path) -> None:
    key = str(auth_fleet.encrypted_key)
    inventory = _inventory(tmp_path / "enc.ini", {"k1": auth_fleet.section("k1",
                                                                           identity_file=key)})
    result = cli.run("-i", str(inventory), "--json", "-h", "k1", "-cmd", "true")
    assert result.returncode == 3, result
    end = result.terminals(["k1"])["k1"]
    assert end["kind"] == "auth" and f"encrypted key {key} needs a passphrase" in end["error"]
    warnings = [line for line in result.stderr.splitlines() if "no terminal" in line]
    assert len(warnings) == 1 and key in warnings[0], result


def test_key_held_by_the_agent_is_not_asked_for(cli: Cli, auth_fleet: AuthFleet,
                                                tmp_path: Path, agent_factory: Any) -> None:
    agent = agent_factory()
    agent.add(auth_fleet.plain_copy)
    key = str(auth_fleet.encrypted_key)
    inventory = _inventory(tmp_path / "enc.ini", {"keyonly": auth_fleet.section(
        "keyonly", identity_file=key)})
    run = run_on_terminal(cli, ["-i", str(inventory), "-h", "keyonly", "-cmd", "echo via-agent"],
                          [], env=agent.env)
    assert (run.status, run.stdout, run.prompts) == (0, "keyonly: via-agent\n", 0), run
    assert "passphrase" not in run.terminal.lower()


def test_agent_key_on_a_key_only_host(cli: Cli, auth_fleet: AuthFleet, tmp_path: Path,
                                      agent_factory: Any) -> None:
    inventory = _inventory(tmp_path / "agent.ini", {"keyonly": auth_fleet.section("keyonly")})
    agent = agent_factory()
    agent.add(auth_fleet.stranger_key, auth_fleet.plain_copy)
    result = cli.run("-i", str(inventory), "-h", "keyonly", "-cmd", "echo ok", env=agent.env)
    assert (result.returncode, result.stdout) == (0, "keyonly: ok\n"), result
    wrong_agent = agent_factory()
    wrong_agent.add(auth_fleet.stranger_key)
    result = cli.run("-i", str(inventory), "--json", "-h", "keyonly", "-cmd", "true",
                     env=wrong_agent.env)
    assert result.returncode == 3, result
    end = result.terminals(["keyonly"])["keyonly"]
    assert end["kind"] == "auth" and "ssh-agent keys rejected (1)" in end["error"], end


# ------------------------------------------------------------------ password sources


def test_password_env(cli: Cli, auth_fleet: AuthFleet, tmp_path: Path) -> None:
    inventory = _inventory(tmp_path / "env.ini", {
        "pwonly": auth_fleet.section("pwonly", password_env="HB_TEST_PW")})
    result = cli.run("-i", str(inventory), "-h", "pwonly", "-cmd", "echo fine",
                     env={"HB_TEST_PW": TEST_PASSWORD})
    assert (result.returncode, result.stdout) == (0, "pwonly: fine\n"), result
    missing = cli.run("-i", str(inventory), "-h", "pwonly", "-cmd", "true")
    assert missing.returncode == 2, missing
    assert len(missing.stderr.splitlines()) == 1, missing
    assert "[host:pwonly]" in missing.stderr and "HB_TEST_PW" in missing.stderr


def test_password_cmd_runs_once_per_distinct_command(cli: Cli, auth_fleet: AuthFleet,
                                                     tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    tool = tmp_path / "vault.sh"
    tool.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\necho 'vault says hi' >&2\n"
                    f"printf '%s\\nmetadata: x\\n' '{TEST_PASSWORD}'\n")
    tool.chmod(0o755)
    inventory = _inventory(tmp_path / "cmd.ini", {
        "pwonly": auth_fleet.section("pwonly", password_cmd=f"{tool} show 'ops/web 1'"),
        "k1": auth_fleet.section("k1", password_cmd=f"{tool} show 'ops/web 1'"),
        "k2": auth_fleet.section("k2", password_cmd=f"{tool} show ops/k2")})
    result = cli.run("-i", str(inventory), "-h", "pwonly,k1,k2", "-cmd", "echo fine")
    assert result.returncode == 0, result
    assert sorted(result.stdout.splitlines()) == ["k1: fine", "k2: fine", "pwonly: fine"]
    assert log.read_text().splitlines() == ["show ops/web 1", "show ops/k2"]
    assert "vault says hi" in result.stderr  # the command's stderr reaches the user

    tool.write_text(f"#!/bin/sh\necho '{TEST_PASSWORD}'\nexit 4\n")
    failed = cli.run("-i", str(inventory), "-h", "pwonly", "-cmd", "true")
    assert failed.returncode == 2, failed
    assert len(failed.stderr.splitlines()) == 1 and "exited with status 4" in failed.stderr
    assert TEST_PASSWORD not in failed.stdout + failed.stderr


def test_ask_pass_on_a_terminal(cli: Cli, auth_fleet: AuthFleet, tmp_path: Path) -> None:
    inventory = _inventory(tmp_path / "ask.ini", {
        "pwonly": auth_fleet.section("pwonly"), "k1": auth_fleet.section("k1"),
        "k2": auth_fleet.section("k2", password=WRONG_PASSWORD)})
    run = run_on_terminal(cli, ["-i", str(inventory), "--ask-pass", "--json", "-h",
                                "pwonly,k1,k2", "-cmd", "echo fine"], [TEST_PASSWORD])
    assert run.status == 3, run  # k2 keeps its own (wrong) password
    assert run.prompts == 1, run
    ends = terminals(Result([], run.status, run.stdout, run.stderr, 0).events(),
                     ["pwonly", "k1", "k2"])
    assert ends["pwonly"]["event"] == "exit" and ends["k1"]["event"] == "exit", ends
    assert ends["k2"]["kind"] == "auth" and "wrong password" in ends["k2"]["error"], ends
    for secret in (TEST_PASSWORD, WRONG_PASSWORD):
        assert secret not in run.terminal + run.stdout + run.stderr
    no_terminal = cli.run("-i", str(inventory), "--ask-pass", "-h", "pwonly", "-cmd", "true")
    assert no_terminal.returncode == 2 and "terminal" in no_terminal.stderr, no_terminal


# ------------------------------------------------------------------ order and reasons


@pytest.mark.parametrize(
    ("host", "options", "status", "reason"),
    [
        ("keyonly", {"password": TEST_PASSWORD}, 3, "server allows only: publickey"),
        ("pwonly", {"password": WRONG_PASSWORD}, 3, "wrong password"),
        ("keyonly", {"identity_file": "STRANGER"}, 3, "key rejected: STRANGER"),
        ("k1", {}, 3, "no usable authentication method (no password, no key, no agent)"),
        # The key first, then the password: the key is refused, the password works.
        ("k1", {"identity_file": "STRANGER", "password": TEST_PASSWORD}, 0, ""),
        ("pwonly", {"identity_file": "ENC", "password": TEST_PASSWORD}, 0, ""),
    ],
)
def test_each_failure_has_its_reason(cli: Cli, auth_fleet: AuthFleet, tmp_path: Path,
                                     host: str, options: dict[str, str], status: int,
                                     reason: str) -> None:
    paths = {"STRANGER": str(auth_fleet.stranger_key), "ENC": str(auth_fleet.encrypted_key)}
    options = {k: paths.get(v, v) for k, v in options.items()}
    reason = reason.replace("STRANGER", paths["STRANGER"])
    inventory = _inventory(tmp_path / "order.ini", {host: auth_fleet.section(host, **options)})
    result = cli.run("-i", str(inventory), "--json", "-h", host, "-cmd", "true")
    assert result.returncode == status, result
    end = result.terminals([host])[host]
    if status == 0:
        assert end["event"] == "exit", end
    else:
        assert end["kind"] == "auth" and reason in end["error"], end
    assert TEST_PASSWORD not in result.stdout + result.stderr
    assert_no_traceback(result)


# ------------------------------------------------------------------ readable inventories


def test_world_readable_inventory_with_password_is_refused(cli: Cli, auth_fleet: AuthFleet,
                                                           tmp_path: Path) -> None:
    listener = auth_fleet.fleet.log_path("pwonly")
    before = listener.stat().st_size if listener.exists() else 0
    inventory = _inventory(tmp_path / "open.ini", {"pwonly": auth_fleet.section(
        "pwonly", password=TEST_PASSWORD)}, mode=0o644)
    result = cli.run("-i", str(inventory), "-h", "pwonly", "-cmd", "echo fine")
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.count("\n") == 1, result
    assert f"chmod 600 {inventory}" in result.stderr and "--insecure-inventory" in result.stderr
    assert TEST_PASSWORD not in result.stderr
    assert (listener.stat().st_size if listener.exists() else 0) == before
    accepted = cli.run("-i", str(inventory), "--insecure-inventory", "-h", "pwonly", "-cmd",
                       "echo fine")
    assert (accepted.returncode, accepted.stdout) == (0, "pwonly: fine\n"), accepted
    assert "chmod 600" in accepted.stderr and TEST_PASSWORD not in accepted.stderr
    private = cli.run("-i", str(_inventory(tmp_path / "env.ini", {"pwonly": auth_fleet.section(
        "pwonly", password_env="HB_PW")}, mode=0o644)), "-h", "pwonly", "-cmd", "echo fine",
        env={"HB_PW": TEST_PASSWORD})
    assert private.returncode == 0, private
    assert "chmod" not in private.stderr, private  # no secret in the file itself


# ------------------------------------------------------------------ secrets everywhere


def _files_under(*directories: Path) -> dict[str, bytes]:
    found = {}
    for directory in directories:
        for path in directory.rglob("*"):
            if path.is_file() and not path.is_symlink():
                found[str(path)] = path.read_bytes()
    return found


def test_no_secret_left_in_anything_a_run_leaves(cli: Cli, auth_fleet: AuthFleet,
                                                 tmp_path: Path) -> None:
    env_secret, cmd_secret = "Env-Secret;#%1", "Cmd-Secret;#%2"
    tool = tmp_path / "tool.sh"
    tool.write_text(f"#!/bin/sh\necho '{cmd_secret}'\n")
    tool.chmod(0o755)
    kh = tmp_path / "kh" / "known_hosts"
    key = str(auth_fleet.encrypted_key)
    hosts = {
        "pwonly": auth_fleet.section("pwonly", password=TEST_PASSWORD, known_hosts=str(kh)),
        "k1": auth_fleet.section("k1", password=WRONG_PASSWORD),
        "k2": auth_fleet.section("k2", password_env="HB_SECRET"),
        "keyonly": auth_fleet.section("keyonly", password_cmd=str(tool), identity_file=key),
    }
    inventory = _inventory(tmp_path / "all.ini", hosts, mode=0o644)
    common = ["-i", str(inventory), "--insecure-inventory", "-g", "all"]
    env = {"HB_SECRET": env_secret}
    # The command line itself carries a secret: its echo comes back masked.
    echo = f"echo '{TEST_PASSWORD}' '{PASSPHRASE}'"
    results: list[Result | TerminalRun] = []
    for extra in (["--accept-new"], ["--json"], ["--debug"], ["--json", "--debug"]):
        results.append(cli.run(*common, *extra, "-cmd", "echo $USER", env=env))
    results.append(run_on_terminal(cli, [*common, "--ask-pass", "-cmd", echo],
                                   [PASSPHRASE], env=env))
    results.append(cli.run(*common, "--list"))
    results.append(cli.run(*common[:-2], "-h", "k2", "-cmd", "true"))  # missing variable
    first, on_terminal = results[0], results[4]
    assert isinstance(first, Result) and isinstance(on_terminal, TerminalRun)
    # Only pwonly has the right password; keyonly's key stays locked without a terminal.
    assert first.returncode == 3 and first.stdout == "pwonly: hbtest\n", first
    assert kh.exists() and "ssh-ed25519" in kh.read_text()
    assert on_terminal.prompts == 1, on_terminal  # the passphrase: no host lacks a password
    assert "keyonly: *** ***" in on_terminal.stdout, on_terminal
    assert "pwonly: *** ***" in on_terminal.stdout, on_terminal
    missing = results[-1]
    assert isinstance(missing, Result) and missing.returncode == 2, missing
    for secret in (TEST_PASSWORD, WRONG_PASSWORD, env_secret, cmd_secret, PASSPHRASE):
        for result in results:
            for stream in (result.stdout, result.stderr,
                           result.terminal if isinstance(result, TerminalRun) else ""):
                assert secret not in stream, (secret, result)
        for path, data in _files_under(cli.home, cli.cwd, kh.parent).items():
            assert secret.encode() not in data, (secret, path)


def test_no_secret_on_any_command_line_while_running(cli: Cli, auth_fleet: AuthFleet,
                                                     tmp_path: Path) -> None:
    """While hosts run, no process on the machine (hostbatch, its workers, sshd and the remote
    commands alike) carries a secret in its command line."""
    tool = tmp_path / "tool.sh"
    tool.write_text(f"#!/bin/sh\necho '{TEST_PASSWORD}'\n")
    tool.chmod(0o755)
    inventory = _inventory(tmp_path / "run.ini", {
        "pwonly": auth_fleet.section("pwonly", password_cmd=str(tool)),
        "k1": auth_fleet.section("k1", password=TEST_PASSWORD)})
    marker = f"sleep 7.{os.getpid() % 1000:03d}"
    proc = cli.popen("-i", str(inventory), "-g", "all", "-cmd", marker, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        found: list[str] = []
        while len(found) < 2 and time.monotonic() < deadline:  # both hosts' commands
            found, _ = wait_for_processes(marker, 30, present=True)
            time.sleep(0.05)
        assert len(found) >= 2, found
        scanned = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    scanned.append(Path(f"/proc/{pid}/cmdline").read_bytes())
                except OSError:
                    continue
        assert sum(marker.encode() in cmdline for cmdline in scanned) >= 2  # the scan sees them
        for cmdline in scanned:
            assert TEST_PASSWORD.encode() not in cmdline, cmdline
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (stdout, stderr)


def test_sudo_password_never_left_anywhere(cli: Cli, main_fleet: Fleet, sudo_user: str,
                                           tmp_path: Path) -> None:
    """The sudo password (--sudo) is a secret like the others: grep everything after runs
    that succeed, fail, use --json and --debug, and echo it on purpose."""
    wrong = "Wrong-sudo;#%7"
    inventory = write_inventory(tmp_path / "sudo.ini", {
        "web01": fleet_host(main_fleet, "web01", sudo_password=SUDO_PASSWORD),
        "web02": fleet_host(main_fleet, "web02", sudo_password=wrong)},
        defaults={"user": sudo_user}, mode=0o644)
    common = ["-i", str(inventory), "--insecure-inventory", "-g", "all", "--sudo"]
    refused = cli.run("-i", str(inventory), "-g", "all", "--sudo", "-cmd", "id -u")
    assert refused.returncode == 2 and "chmod 600" in refused.stderr, refused  # sudo_password
    results = [refused]
    for extra in ([], ["--json"], ["--debug"], ["--json", "--debug"]):
        results.append(cli.run(*common, *extra, "-cmd", "id -u"))
    quoted = SUDO_PASSWORD.replace("'", "'\\''")
    results.append(cli.run(*common, "-cmd", f"printf '%s\\n' '{quoted}'"))
    assert results[1].returncode == 3 and "web01: 0" in results[1].stdout, results[1]
    assert "web01: ***" in results[-1].stdout, results[-1]
    for secret in (SUDO_PASSWORD, wrong):
        for result in results:
            assert secret not in result.stdout + result.stderr, (secret, result)
        for path, data in _files_under(cli.home, cli.cwd).items():
            assert secret.encode() not in data, (secret, path)


def test_ctrl_c_at_the_passphrase_prompt(cli: Cli, auth_fleet: AuthFleet,
                                         tmp_path: Path) -> None:
    key = str(auth_fleet.encrypted_key)
    inventory = _inventory(tmp_path / "enc.ini", {"k1": auth_fleet.section("k1",
                                                                           identity_file=key)})
    run = run_on_terminal(cli, ["-i", str(inventory), "-h", "k1", "-cmd", "true"], ["\x03"])
    assert run.prompts == 1 and run.status == 130, run
    assert "Traceback" not in run.stderr + run.terminal and "interrupted" in run.stderr, run


def test_batch_scp_uses_the_same_credentials(tmp_path: Path, auth_fleet: AuthFleet) -> None:
    scp = Cli(tmp_path / "home", tmp_path / "cwd", command="scp")
    inventory = _inventory(tmp_path / "scp.ini", {
        "pwonly": auth_fleet.section("pwonly", password_env="HB_SCP_PW")})
    args = ["-i", str(inventory), "-h", "pwonly", "-action", "get", "-remote", "/etc/hostname",
            "-local", str(tmp_path / "got")]
    result = scp.run(*args, env={"HB_SCP_PW": TEST_PASSWORD})
    assert result.returncode == 0, result
    assert (tmp_path / "got" / "pwonly" / "hostname").read_bytes() == Path(
        "/etc/hostname").read_bytes()
    missing = scp.run(*args)
    assert missing.returncode == 2 and "HB_SCP_PW" in missing.stderr, missing
