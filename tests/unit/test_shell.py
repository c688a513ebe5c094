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
    SudoMarkers,
    build_command,
    is_identifier,
    kill_group,
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
