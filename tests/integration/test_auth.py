"""Authentication against real sshd: password (with a hostile agent and ~/.ssh), key files,
default keys, the ssh-agent; and secrets never leaking into anything a run leaves behind."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    TEST_PASSWORD,
    TEST_USER,
    Cli,
    Result,
    ThrowawayKeys,
    assert_no_traceback,
    fleet_host,
    json_lines,
    terminals,
    write_inventory,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "wrong%pw#;Zq9"


def _password_host(fleet: Fleet, name: str, password: str) -> dict[str, str]:
    """A host section with a password and no identity_file."""
    section = fleet_host(fleet, name, password=password)
    del section["identity_file"]
    return section


def _fill_home_with_unauthorized_keys(cli: Cli, keys: ThrowawayKeys) -> None:
    ssh_dir = cli.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    for name, path in keys.default_keys.items():
        shutil.copy(path, ssh_dir / name)
        shutil.copy(path.with_suffix(".pub"), ssh_dir / f"{name}.pub")
        (ssh_dir / name).chmod(0o600)


@pytest.fixture
def hostile_agent(agent_factory: Any, throwaway_keys: ThrowawayKeys) -> Any:
    """An ssh-agent holding 7 keys that no host accepts."""
    agent = agent_factory()
    agent.add(*throwaway_keys.agent_keys)
    return agent


# ------------------------------------------------------------------ 3. password auth


def test_password_wins_over_agent_and_default_keys(cli: Cli, main_fleet: Fleet, tmp_path: Path,
                                                   throwaway_keys: ThrowawayKeys,
                                                   hostile_agent: Any) -> None:
    _fill_home_with_unauthorized_keys(cli, throwaway_keys)
    inventory = write_inventory(
        tmp_path / "pw.ini",
        {"web01": _password_host(main_fleet, "web01", TEST_PASSWORD),
         "web02": _password_host(main_fleet, "web02", TEST_PASSWORD)},
        defaults={"user": TEST_USER},
    )
    assert stat.S_IMODE(inventory.stat().st_mode) == 0o600
    assert "pw%#;x" in inventory.read_text()  # the literal value, % and #; included
    result = cli.run("-i", str(inventory), "--json", "-h", "web01,web02", "-cmd", "id -un",
                     env=hostile_agent.env)
    ends = terminals(result.events(), ["web01", "web02"])
    assert result.returncode == 0, result
    assert all(e["event"] == "exit" and e["exit_status"] == 0 for e in ends.values()), ends
    assert json_lines(result.events(), "web01", "stdout") == [TEST_USER]
    assert "Too many authentication failures" not in result.stderr + result.stdout
    assert "warning" not in result.stderr.lower(), result  # mode 0600: no warning
    assert TEST_PASSWORD not in result.stdout + result.stderr


def test_hostile_setup_really_offers_many_keys(cli: Cli, main_fleet: Fleet, tmp_path: Path,
                                               throwaway_keys: ThrowawayKeys,
                                               hostile_agent: Any) -> None:
    """Control for the test above: without a password, the same keys are offered and fail."""
    _fill_home_with_unauthorized_keys(cli, throwaway_keys)
    section = fleet_host(main_fleet, "web01")
    del section["identity_file"]
    inventory = write_inventory(tmp_path / "keys.ini", {"web01": section},
                                defaults={"user": TEST_USER})
    result = cli.run("-i", str(inventory), "--json", "-h", "web01", "-cmd", "true",
                     env=hostile_agent.env)
    assert result.returncode == 3, result
    assert terminals(result.events(), ["web01"])["web01"]["kind"] == "auth", result


def test_wrong_password_is_auth_failure_and_never_printed(cli: Cli, main_fleet: Fleet,
                                                          tmp_path: Path) -> None:
    inventory = write_inventory(
        tmp_path / "wrong.ini", {"web01": _password_host(main_fleet, "web01", WRONG_PASSWORD)},
        defaults={"user": TEST_USER})
    result = cli.run("-i", str(inventory), "--json", "-h", "web01", "-cmd", "true")
    assert result.returncode == 3, result
    end = terminals(result.events(), ["web01"])["web01"]
    assert (end["event"], end["kind"]) == ("error", "auth"), end
    assert WRONG_PASSWORD not in result.stdout + result.stderr
    lines_mode = cli.run("-i", str(inventory), "--debug", "-h", "web01", "-cmd", "true")
    assert lines_mode.returncode == 3, lines_mode
    assert "web01" in lines_mode.stderr and "auth" in lines_mode.stderr
    assert WRONG_PASSWORD not in lines_mode.stdout + lines_mode.stderr
    assert_no_traceback(lines_mode)


def test_world_readable_inventory_with_password_is_refused(cli: Cli, main_fleet: Fleet,
                                                           tmp_path: Path) -> None:
    """Refused (exit 2, nothing runs) unless --insecure-inventory; then only a warning.
    (More cases in test_credentials.py.)"""
    inventory = write_inventory(
        tmp_path / "open.ini", {"web01": _password_host(main_fleet, "web01", TEST_PASSWORD)},
        defaults={"user": TEST_USER}, mode=0o644)
    refused = cli.run("-i", str(inventory), "-h", "web01", "-cmd", "echo fine")
    assert refused.returncode == 2 and refused.stdout == "", refused
    assert f"chmod 600 {inventory}" in refused.stderr, refused
    result = cli.run("-i", str(inventory), "--insecure-inventory", "-h", "web01", "-cmd",
                     "echo fine")
    assert result.returncode == 0, result  # a warning, not an error
    assert result.stdout == "web01: fine\n"
    warning = [line for line in result.stderr.splitlines() if "chmod 600" in line]
    assert warning, result
    assert str(inventory) in warning[0]
    assert TEST_PASSWORD not in result.stdout + result.stderr


# ------------------------------------------------------------------ 4. key auth


def test_identity_file_from_inventory(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path / "id.ini", {"db01": fleet_host(main_fleet, "db01")},
                                defaults={"user": TEST_USER})
    assert not (cli.home / ".ssh").exists()
    result = cli.run("-i", str(inventory), "-h", "db01", "-cmd", "id -un")
    assert (result.returncode, result.stdout) == (0, f"db01: {TEST_USER}\n"), result


def test_identity_file_that_does_not_exist_is_auth_failure(cli: Cli, main_fleet: Fleet,
                                                           tmp_path: Path) -> None:
    missing = tmp_path / "no_such_key"
    inventory = write_inventory(
        tmp_path / "id.ini", {"db01": fleet_host(main_fleet, "db01", identity_file=str(missing))},
        defaults={"user": TEST_USER})
    result = cli.run("-i", str(inventory), "--json", "-h", "db01", "-cmd", "true")
    assert result.returncode == 3, result
    end = terminals(result.events(), ["db01"])["db01"]
    assert end["kind"] == "auth" and str(missing) in end["error"], end


def _keyless_inventory(main_fleet: Fleet, tmp_path: Path) -> Path:
    section = fleet_host(main_fleet, "web03")
    del section["identity_file"]
    return write_inventory(tmp_path / "keyless.ini", {"web03": section},
                           defaults={"user": TEST_USER})


def test_default_key_in_home_ssh(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    inventory = _keyless_inventory(main_fleet, tmp_path)
    without = cli.run("-i", str(inventory), "--json", "-h", "web03", "-cmd", "true")
    assert without.returncode == 3, without  # nothing to offer yet
    assert terminals(without.events(), ["web03"])["web03"]["kind"] == "auth"
    ssh_dir = cli.home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(main_fleet.client_key, ssh_dir / "id_ed25519")
    (ssh_dir / "id_ed25519").chmod(0o600)
    result = cli.run("-i", str(inventory), "-h", "web03", "-cmd", "echo via-default-key")
    assert (result.returncode, result.stdout) == (0, "web03: via-default-key\n"), result


def test_ssh_agent_only(cli: Cli, main_fleet: Fleet, tmp_path: Path, agent_factory: Any) -> None:
    inventory = _keyless_inventory(main_fleet, tmp_path)
    agent = agent_factory()
    agent.add(main_fleet.client_key)
    assert not (cli.home / ".ssh").exists()
    result = cli.run("-i", str(inventory), "-h", "web03", "-cmd", "echo via-agent",
                     env=agent.env)
    assert (result.returncode, result.stdout) == (0, "web03: via-agent\n"), result
    agent.stop()  # the same run without a live agent cannot authenticate
    result = cli.run("-i", str(inventory), "--json", "-h", "web03", "-cmd", "true",
                     env=agent.env)
    assert result.returncode == 3, result
    assert terminals(result.events(), ["web03"])["web03"]["kind"] == "auth"


# ------------------------------------------------------------------ 19. secrets


def _all_text_under(directory: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in directory.rglob("*")
            if path.is_file() and not path.is_symlink()}


def test_password_never_left_anywhere(cli: Cli, main_fleet: Fleet, tmp_path: Path,
                                      throwaway_keys: ThrowawayKeys, hostile_agent: Any) -> None:
    _fill_home_with_unauthorized_keys(cli, throwaway_keys)
    kh = tmp_path / "kh" / "known_hosts"
    good = _password_host(main_fleet, "web01", TEST_PASSWORD) | {"known_hosts": str(kh)}
    bad = _password_host(main_fleet, "web02", WRONG_PASSWORD)
    inventory = write_inventory(tmp_path / "secrets.ini", {"web01": good, "web02": bad},
                                {"both": ["web01", "web02"]}, defaults={"user": TEST_USER},
                                mode=0o644)
    runs: list[Result] = []
    insecure = ["-i", str(inventory), "--insecure-inventory"]
    for extra in (["--accept-new"], ["--json"], ["--debug"], ["--json", "--debug"]):
        runs.append(cli.run(*insecure, *extra, "-g", "both", "-cmd",
                            "echo $USER", env=hostile_agent.env))
    runs.append(cli.run(*insecure, "--list", "-g", "both"))
    runs.append(cli.run(*insecure, "-g", "both", "-x", "nothing*", "-cmd", "true"))
    runs.append(cli.run("-i", str(inventory), "-g", "both", "-cmd", "true"))  # refused
    first = runs[0]
    assert first.returncode == 3, first  # web01 works, web02 fails authentication
    assert "web01: hbtest" in first.stdout, first
    assert kh.exists() and "ssh-ed25519" in kh.read_text()  # --accept-new recorded web01
    assert any("chmod 600" in run.stderr for run in runs)
    for secret in (TEST_PASSWORD, WRONG_PASSWORD):
        for run in runs:
            assert secret not in run.stdout, (secret, run)
            assert secret not in run.stderr, (secret, run)
        for path, data in {**_all_text_under(cli.home), **_all_text_under(kh.parent),
                           **_all_text_under(cli.cwd)}.items():
            assert secret.encode() not in data, path
