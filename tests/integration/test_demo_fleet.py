"""``demo/fleet.sh start|stop``: the demo fleet answers from a plain shell, and ``stop``
leaves no sshd, no demo user and no demo directory behind."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import require_environment

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FLEET_SH = ROOT / "demo" / "fleet.sh"
USER = "hbdemotest"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in argv:
                found.append(f"{entry.name}: {argv}")
    return found


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def test_fleet_starts_answers_and_stops_clean(tmp_path: Path) -> None:
    require_environment(str(Path(sys.executable).parent / "batch_run"), "sshd fleet, demo user")
    work = tmp_path / "work"
    env = {**os.environ, "HOSTBATCH_DEMO_DIR": str(work), "HOSTBATCH_DEMO_USER": USER,
           "HOSTBATCH_DEMO_SETUP": "no"}
    env.pop("HOSTBATCH_INVENTORY", None)
    started = subprocess.run([str(FLEET_SH), "start"], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    try:
        assert started.returncode == 0, started.stderr
        exports = [line for line in started.stdout.splitlines() if line.startswith("export ")]
        assert [line.split("=", 1)[0] for line in exports] == [
            "export PATH", "export HOSTBATCH_INVENTORY", "export XDG_STATE_HOME"]
        assert "demo/fleet.sh stop" in started.stdout
        # the three lines, pasted into a fresh shell, are all it takes
        script = "\n".join([*exports, "batch_run -g all -cmd 'echo hello' && hostbatch history"])
        used = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                              text=True, timeout=120, check=False,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert used.returncode == 0, used.stderr
        assert sorted(line for line in used.stdout.splitlines() if line.endswith(": hello")) == [
            "db01: hello", "web01: hello", "web02: hello", "web03: hello"]
        assert (work / "state" / "hostbatch" / "history.db").is_file()
        assert _user_exists(USER)
    finally:
        stopped = subprocess.run([str(FLEET_SH), "stop"], env=env, capture_output=True,
                                 text=True, timeout=120, check=False)
    assert stopped.returncode == 0, stopped.stderr
    assert _processes_mentioning(str(work)) == []
    assert not _user_exists(USER)
    assert not work.exists() and not Path("/home", USER).exists()
