"""hostbatch.ssh.shell: every piece of shell text sent to a host, checked by a real local
shell where quoting or behaviour matters (no network)."""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hostbatch.ssh.shell import (
    RESIDENT_SHELL,
    SudoMarkers,
    build_command,
    frame_prefix,
    is_identifier,
    kill_group,
    resident_line,
    resident_probe,
    script_invocation,
    sha256_command,
    sudo_kill,
    wrap_command,
)

MARKERS = SudoMarkers.from_nonce("0123abcd")
MARKER = "HBM-0123456789abcdef"


def sh(command: str | bytes) -> str:
    """What /bin/sh prints for ``command`` (the quoting is checked by a real shell)."""
    return subprocess.run([b"sh", b"-c", command if isinstance(command, bytes)
                           else command.encode()], capture_output=True, timeout=10,
                          check=True).stdout.decode("utf-8", "replace")


@pytest.mark.parametrize("value", ["plain", "a  b", "it's", "$HOME `id`", "", "grüße", "x\ny"])
def test_exports_survive_the_shell(value: str) -> None:
    assert sh(build_command('printf %s "$V"', [("V", value)])) == value


def test_sudo_wrap_shape() -> None:
    command = build_command("id -u", [("A", "1")], sudo=MARKERS)
    words = shlex.split(command)
    assert words[:5] == ["sudo", "-S", "-p", MARKERS.prompt, "--"]
    assert words[5:7] == ["/bin/sh", "-c"]
    assert words[7] == f"echo {MARKERS.go} >&2; export A=1; id -u"
    assert "%" not in MARKERS.prompt  # sudo expands %-escapes in -p


def test_sudo_kill_and_script_invocation() -> None:
    assert shlex.split(sudo_kill("TERM", 42, MARKERS)) == [
        "sudo", "-S", "-p", MARKERS.prompt, "--", "kill", "-s", "TERM", "--", "-42"]


def test_script_invocation_runs_the_script_and_leaves_no_file(tmp_path: Path) -> None:
    script = tmp_path / "a script 'x'"
    script.write_text("#!/bin/sh\necho \"args:$#:$1:$2\"\n"
                      "test -e \"$SCRIPT\" && echo still there || echo gone\n")
    script.chmod(0o700)
    done = subprocess.run(["sh", "-c", script_invocation(str(script), ["a b", "it's"])],
                          capture_output=True, text=True, timeout=10, check=True,
                          env={"PATH": "/usr/bin:/bin", "SCRIPT": str(script)})
    assert done.stdout == "args:2:a b:it's\ngone\n"
    assert not script.exists()


@pytest.mark.parametrize(("name", "ok"), [("A", True), ("_x1", True), ("1A", False),
                                          ("A-B", False), ("", False), ("Ä", False)])
def test_is_identifier(name: str, ok: bool) -> None:
    assert is_identifier(name) is ok


def test_wrap_command_reports_the_process_group_first() -> None:
    assert wrap_command("df -h", MARKER) == f"echo {MARKER} $$; df -h"
    first, rest = sh(wrap_command("echo hi", MARKER)).split("\n", 1)
    assert first.split()[0] == MARKER and first.split()[1].isdigit() and rest == "hi\n"


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_kill_group_ends_every_process_of_the_group() -> None:
    # A shell and its child in a session of their own, as sshd starts a command.
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], start_new_session=True,
                              stdout=subprocess.PIPE)
    try:
        assert leader.stdout is not None
        child = int(leader.stdout.readline())  # the child exists once its pid is printed
        subprocess.run(["sh", "-c", kill_group("TERM", leader.pid)], check=True, timeout=10)
        assert leader.wait(timeout=10) == -signal.SIGTERM
        end = time.monotonic() + 10
        while not _gone(child) and time.monotonic() < end:
            time.sleep(0.01)
        assert _gone(child)
    finally:
        if leader.poll() is None:
            os.killpg(leader.pid, signal.SIGKILL)


def test_kill_group_of_a_gone_group_is_silent() -> None:
    done = subprocess.run(["sh", "-c", kill_group("KILL", 2**22 - 3)], capture_output=True,
                          timeout=10)
    assert done.stdout == done.stderr == b""


def test_sha256_command_quotes_awkward_names(tmp_path: Path) -> None:
    path = tmp_path / "-a file 'with' $(quotes)"
    path.write_bytes(b"x" * 1000)
    output = sh(sha256_command(str(path)))
    assert output.split()[0].lstrip("\\") == hashlib.sha256(b"x" * 1000).hexdigest()


def resident(lines: list[str], shell: str = "/bin/bash") -> tuple[str, str]:
    """What a resident shell (``shell`` as the login shell) prints on stdout and stderr for
    the probe then ``lines``, run as sshd would: the login shell's ``-c`` with the channel's
    command."""
    done = subprocess.run([shell, "-c", RESIDENT_SHELL], env={**os.environ, "SHELL": shell},
                          input=(resident_probe("p0") + "".join(lines)).encode(),
                          capture_output=True, timeout=20, check=False)
    return done.stdout.decode(), done.stderr.decode()


def test_the_resident_shell_frames_each_command_on_both_streams() -> None:
    out, err = resident([resident_line("echo out; echo err >&2; printf tail", "n1"),
                         resident_line("exit 7", "n2")])
    ready, start, rest = out.split("\n", 2)
    assert ready == f"{frame_prefix('ready', 'p0')} 1"
    assert start.startswith(frame_prefix("start", "n1") + " ") and start.split()[1].isdigit()
    assert rest.startswith(f"out\ntail{frame_prefix('end', 'n1')} 0\n")
    assert rest.endswith(f"{frame_prefix('end', 'n2')} 7\n")
    assert err == f"err\n{frame_prefix('end', 'n1')} 0\n{frame_prefix('end', 'n2')} 0\n"


def test_resident_commands_share_no_directory_variable_or_stdin() -> None:
    out, _ = resident([resident_line("cd /; export HBX=1; HBY=2; set -e", "n1"),
                       resident_line('pwd; echo "${HBX:-no}${HBY:-no}$#"; cat; echo "$-"', "n2"),
                       ])
    body = out.split(f"{frame_prefix('start', 'n2')}", 1)[1].split("\n", 1)[1]
    lines = body.split("\n")
    assert lines[0] == os.getcwd() and lines[1] == "nono0" and "e" not in lines[2]


def test_a_resident_command_runs_in_its_own_process_group() -> None:
    out, _ = resident([resident_line("ps -o pgid= -p $BASHPID", "n1")])
    start = out.split(frame_prefix("start", "n1") + " ", 1)[1]
    pgid, shown = start.split("\n", 2)[:2]
    assert int(shown.strip()) == int(pgid) != os.getpgid(0)


def test_a_shell_without_job_control_says_so() -> None:
    out, _ = resident([], shell="/bin/sh" if Path("/bin/dash").exists() else "dash")
    assert out == f"{frame_prefix('ready', 'p0')} 0\n"


@pytest.mark.parametrize("command", ["echo 'it''s'", "printf '%s\\n' \"$((1+2))\"",
                                     "echo a\necho b"])
def test_resident_lines_quote_the_command(command: str) -> None:
    out, _ = resident([resident_line(command, "n1")])
    expected = sh(command)
    assert expected in out
