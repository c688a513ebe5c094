"""The end-of-run summary against real sshd hosts: each failure printed once, live; the summary
compact by default (one line per kind with the folded hosts), per host with ``-v`` or
``--summary full`` (and with ``-q``); long failure lines cut so they never wrap."""

from __future__ import annotations

import re
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
    write_inventory,
)
from tests.support.cli import run_with_pty_stderr
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

#: Addresses with no listener (the range given to this suite): connections are refused.
GONE = {"gone1": "127.0.20.10", "gone2": "127.0.20.11"}
#: A host name long enough that its failure line passes any width.
LONG = "long-" + "n" * 190 + "1"


@pytest.fixture
def inventory(tmp_path: Path, main_fleet: Fleet, outage_fleet: Fleet) -> Path:
    """web01-03 (up), down1 (sshd stopped) and gone1-2 (nothing listening): three hosts
    refused, for the same reason."""
    hosts = {name: fleet_host(main_fleet, name) for name in ("web01", "web02", "web03")}
    hosts["down1"] = fleet_host(outage_fleet, "down1")
    for name, addr in {**GONE, LONG: "127.0.20.12"}.items():
        hosts[name] = {**fleet_host(outage_fleet, "down1"), "hostname": addr}
    return write_inventory(tmp_path / "hosts.ini", hosts,
                           {"mixed": ["web01", "web02", "web03", "down1", *GONE]},
                           defaults={"user": TEST_USER})


def summary_of(stderr: str) -> list[str]:
    """The summary's lines: from the count line to the end."""
    lines = stderr.splitlines()
    start = max(n for n, line in enumerate(lines) if re.match(r"hostbatch: \d+ hosts? in ", line))
    return lines[start:]


def failing_command(main_fleet: Fleet) -> str:
    """Exit 5 on web02, 0 elsewhere."""
    return on_address(address(main_fleet, "web02"), "exit 5")


def test_each_failure_once_live_then_compact_summary(cli: Cli, inventory: Path,
                                                     main_fleet: Fleet) -> None:
    result = cli.run("-i", inventory, "-g", "mixed", "-cmd", failing_command(main_fleet))
    assert result.returncode == 3, result
    for host in ("down1", "gone1", "gone2"):
        live = [line for line in result.stderr.splitlines()
                if line.startswith(f"hostbatch: {host}: ")]
        assert len(live) == 1 and live[0].startswith(f"hostbatch: {host}: connect: "), result
    assert result.stderr.count("connection refused") == 3, result
    summary = summary_of(result.stderr)
    assert summary[0].endswith(": 2 ok, 1 failed, 3 unreachable"), summary
    assert summary[1:-1] == ["  exit 5 (1): web02", "  unreachable (3): down1,gone[1-2]"], summary
    assert summary[-1].startswith("  slowest: "), summary
    assert_no_traceback(result)


@pytest.mark.parametrize("flags", [("-v",), ("--verbose",), ("--summary", "full")])
def test_full_summary_has_a_line_per_host(cli: Cli, inventory: Path, main_fleet: Fleet,
                                          flags: tuple[str, ...]) -> None:
    result = cli.run("-i", inventory, "-g", "mixed", *flags, "-cmd", failing_command(main_fleet))
    assert result.returncode == 3, result
    failed = {line.split()[1]: line for line in summary_of(result.stderr)[1:]
              if not line.startswith("  slowest")}
    assert set(failed) == {"web02", "down1", "gone1", "gone2"}, result
    assert failed["web02"].split() == ["failed", "web02", "exit", "status", "5"], failed
    assert all("connect: connection refused" in failed[h] for h in ("down1", "gone1", "gone2"))


def test_quiet_defaults_to_full_and_summary_compact_overrides(cli: Cli, inventory: Path,
                                                              main_fleet: Fleet) -> None:
    quiet = cli.run("-i", inventory, "-g", "mixed", "-q", "-cmd", failing_command(main_fleet))
    # Nothing was printed live, so the summary gives every host's reason.
    assert "exit status 5" in quiet.stderr and quiet.stderr.count("connection refused") == 3
    compact = cli.run("-i", inventory, "-g", "mixed", "-q", "--summary", "compact", "-cmd",
                      failing_command(main_fleet))
    assert compact.returncode == 3, compact
    assert compact.stderr.splitlines()[1:3] == ["  exit 5 (1): web02",
                                                "  unreachable (3): down1,gone[1-2]"], compact
    refused = cli.run("-i", inventory, "-g", "mixed", "-v", "--summary", "compact", "-cmd", "true")
    assert refused.returncode == 2 and "give one" in refused.stderr, refused


def test_long_failure_lines_are_cut_and_json_keeps_them_whole(cli: Cli, inventory: Path) -> None:
    piped = cli.run("-i", inventory, "-h", LONG, "-v", "-cmd", "true")
    assert piped.returncode == 3, piped
    (live,) = [line for line in piped.stderr.splitlines() if line.startswith("hostbatch: long")]
    assert len(live) == 200 and live.endswith("\u2026"), live  # not a terminal: 200 columns
    full = [line for line in summary_of(piped.stderr) if LONG[:50] in line]
    assert len(full) == 1 and len(full[0]) == 200, piped.stderr
    as_json = cli.run("-i", inventory, "-h", LONG, "--json", "-cmd", "true")
    assert f"{LONG}" in as_json.stdout and "connection refused by 127.0.20.12" in as_json.stdout
    # On a terminal (120 columns), the line fits the terminal.
    status, _, err = run_with_pty_stderr(cli, "-i", inventory, "-h", LONG, "-cmd", "true")
    assert status == 3, err
    lines = [ANSI.sub("", line).rstrip("\r") for line in err.splitlines()]
    (live,) = [line for line in lines if line.startswith("hostbatch: long")]
    assert len(live) == 120, lines


def test_config_file_defaults_apply_below_the_command_line(cli: Cli, inventory: Path,
                                                           main_fleet: Fleet,
                                                           tmp_path: Path) -> None:
    config = tmp_path / "mine.ini"
    config.write_text("[defaults]\nsummary = full\nconnect_timeout = 4\nforks = 2\n")
    environ = {"HOSTBATCH_CONFIG": str(config)}
    full = cli.run("-i", inventory, "-g", "mixed", "-cmd", failing_command(main_fleet),
                   env=environ)
    assert full.returncode == 3, full
    assert any(line.split()[:2] == ["failed", "web02"] for line in summary_of(full.stderr))
    compact = cli.run("-i", inventory, "-g", "mixed", "--summary", "compact", "-cmd",
                      failing_command(main_fleet), env=environ)
    assert "  exit 5 (1): web02" in summary_of(compact.stderr), compact
    config.write_text("[defaults]\nsumary = full\n")
    refused = cli.run("-i", inventory, "-g", "mixed", "-cmd", "true", env=environ)
    assert refused.returncode == 2, refused
    assert "sumary is not a setting (did you mean 'summary'?)" in refused.stderr, refused
    assert "hosts in" not in refused.stderr  # nothing ran
