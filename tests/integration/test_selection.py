"""Host selection end to end (groups, children, ranges, globs, -x, --list) and inventory
validation: every mistake is exit 2 with one line on stderr, and nothing runs."""

from __future__ import annotations

import os
import pwd
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    MAIN_NAMES,
    TEST_USER,
    Cli,
    Result,
    assert_no_traceback,
    connection_pending,
    fleet_host,
    json_lines,
    silent_listener,
    split_lines,
    terminals,
    write_inventory,
)
from tests.support.fleet import Fleet

pytestmark = pytest.mark.integration

ALL_HOSTS = [*MAIN_NAMES, "trap01", "ghost1", "ghost2", "ghost3"]


@pytest.fixture
def trap(tmp_path: Path) -> Iterator[tuple[object, int]]:
    """A listening socket a host points at; no test that must not connect may touch it."""
    with silent_listener("127.0.14.1") as (sock, port):
        yield sock, port


@pytest.fixture
def inventory(main_fleet: Fleet, tmp_path: Path, trap: tuple[object, int]) -> Path:
    _, port = trap
    hosts = {name: fleet_host(main_fleet, name) for name in MAIN_NAMES}
    hosts["trap01"] = {"hostname": "127.0.14.1", "port": str(port)}
    return write_inventory(
        tmp_path / "hosts.ini",
        hosts,
        {
            "web_clusters": ["web01", "web[02-03]"],
            "db_servers": ["db01"],
            "everything": {"children": "web_clusters, db_servers"},
            # ghosts have no [host:] section: hostname = name, which does not resolve
            "ghosts": ["ghost[1-3]"],
            "empty": {"hosts": ""},
        },
        defaults={"user": TEST_USER, "connect_timeout": "2"},
    )


@pytest.fixture
def marker() -> Iterator[Path]:
    """A file the remote command would create in hbtest's home if it ran."""
    home = Path(pwd.getpwnam(TEST_USER).pw_dir)
    path = home / f"hb-ran-{secrets.token_hex(6)}"
    yield path
    path.unlink(missing_ok=True)


def _list(cli: Cli, inventory: Path, *args: str) -> Result:
    return cli.run("-i", str(inventory), "--list", *args)


# ------------------------------------------------------------------ 5. selection


def test_list_all_in_inventory_order_without_connecting(cli: Cli, inventory: Path,
                                                        trap: tuple[object, int]) -> None:
    sock, _ = trap
    result = _list(cli, inventory, "-g", "all")
    assert result.returncode == 0, result
    assert split_lines(result.stdout) == ALL_HOSTS
    assert result.duration < 10
    assert not connection_pending(sock)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-g", "everything"], ["web01", "web02", "web03", "db01"]),
        (["-g", "web_clusters"], ["web01", "web02", "web03"]),
        (["-h", "web*"], ["web01", "web02", "web03"]),
        (["-h", "web[01-02]"], ["web01", "web02"]),
        (["-h", "ghost[2-3],web01"], ["web01", "ghost2", "ghost3"]),
        (["-h", "db01", "-g", "web_clusters"], ["web01", "web02", "web03", "db01"]),
        (["-g", "everything", "-x", "web02"], ["web01", "web03", "db01"]),
        (["-g", "all", "-x", "ghost*,trap01"], list(MAIN_NAMES)),
        (["-g", "all", "-x", "ghost[1-2]", "-x", "web0?"], ["db01", "trap01", "ghost3"]),
        (["-g", "db_*"], ["db01"]),
        (["-g", "ghosts", "-h", "ghost1,ghost1"], ["ghost1", "ghost2", "ghost3"]),
        (["-h", "web01", "-h", "db01"], ["web01", "db01"]),
    ],
)
def test_list_selection_forms(cli: Cli, inventory: Path, args: list[str],
                              expected: list[str], trap: tuple[object, int]) -> None:
    result = _list(cli, inventory, *args)
    assert result.returncode == 0, result
    assert split_lines(result.stdout) == expected, result
    assert not connection_pending(trap[0])  # type: ignore[arg-type]


def test_exclude_matching_nothing_is_fine(cli: Cli, inventory: Path) -> None:
    result = _list(cli, inventory, "-g", "db_servers", "-x", "nosuchhost")
    assert result.returncode == 0, result
    assert split_lines(result.stdout) == ["db01"]


def test_selection_runs_exactly_the_selected_hosts(cli: Cli, inventory: Path) -> None:
    result = cli.run("-i", str(inventory), "--json", "-g", "everything", "-x", "web02",
                     "-h", "web0[2-3]", "-cmd", "echo ran")
    assert result.returncode == 0, result
    events = result.events()
    terminals(events, ["web01", "web03", "db01"])  # exactly these, each once
    assert {e["host"] for e in events} == {"web01", "web03", "db01"}
    for host in ("web01", "web03", "db01"):
        assert json_lines(events, host, "stdout") == ["ran"]


@pytest.mark.parametrize(
    ("args", "needle", "suggestion"),
    [
        (["-h", "web01,web1"], "web1", "web01"),
        (["-h", "dbb01"], "dbb01", "db01"),
        (["-g", "web_cluster"], "web_cluster", "web_clusters"),
        (["-g", "everything,db_server"], "db_server", "db_servers"),
        (["-h", "app*"], "app*", None),
    ],
)
def test_unknown_host_or_group_is_exit_2_and_nothing_runs(
    cli: Cli, inventory: Path, marker: Path, args: list[str], needle: str,
    suggestion: str | None, trap: tuple[object, int],
) -> None:
    result = cli.run("-i", str(inventory), *args, "-cmd", f"touch {marker}")
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    assert needle in lines[0]
    if suggestion is not None:
        assert suggestion in lines[0].replace(needle, "", 1), result
    assert_no_traceback(result)
    assert not marker.exists()
    assert not connection_pending(trap[0])  # type: ignore[arg-type]


def test_no_hosts_and_no_groups_is_a_usage_error(cli: Cli, inventory: Path,
                                                 marker: Path) -> None:
    result = cli.run("-i", str(inventory), "-cmd", f"touch {marker}")
    assert result.returncode == 2, result
    assert "-h" in result.stderr and "-g" in result.stderr, result
    assert len(result.stderr.splitlines()) == 1
    assert not marker.exists()


@pytest.mark.parametrize(
    "args",
    [["--forks", "0", "-g", "all", "-cmd", "true"], ["--no-such-option", "-g", "all"],
     ["-g", "all"], ["--timeout", "soon", "-g", "all", "-cmd", "true"],
     ["-g", "all", "-cmd", "true", "extra", "words"]],
)
def test_usage_errors_are_exit_2(cli: Cli, inventory: Path, marker: Path,
                                 args: list[str]) -> None:
    result = cli.run("-i", str(inventory), *args)
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1, result
    assert result.stdout == ""
    assert_no_traceback(result)


def test_help_documents_exit_statuses(cli: Cli) -> None:
    for via in ("batch_run", "hostbatch"):
        result = cli.run("--help", via=via)
        assert result.returncode == 0, result
        for needle in ("-cmd", "--json", "--timeout", "--accept-new", "130"):
            assert needle in result.stdout, (via, needle)
        assert re.search(r"^\s*3\s", result.stdout, re.MULTILINE), result.stdout


def test_inventory_location_order(cli: Cli, main_fleet: Fleet, tmp_path: Path) -> None:
    def inventory_for(host: str, path: Path) -> Path:
        return write_inventory(path, {host: fleet_host(main_fleet, host)})

    config = inventory_for("db01", cli.home / ".config" / "hostbatch" / "hosts.ini")
    assert split_lines(cli.run("--list", "-g", "all").stdout) == ["db01"]
    inventory_for("web02", cli.cwd / "hosts.ini")
    assert split_lines(cli.run("--list", "-g", "all").stdout) == ["web02"]
    from_env = inventory_for("web03", tmp_path / "env.ini")
    result = cli.run("--list", "-g", "all", env={"HOSTBATCH_INVENTORY": str(from_env)})
    assert split_lines(result.stdout) == ["web03"]
    explicit = inventory_for("web01", tmp_path / "explicit.ini")
    result = cli.run("-i", str(explicit), "--list", "-g", "all",
                     env={"HOSTBATCH_INVENTORY": str(from_env)})
    assert split_lines(result.stdout) == ["web01"]
    assert config.exists()


# ------------------------------------------------------------------ 15. bad inventories


def _bad_inventory(tmp_path: Path, main_fleet: Fleet, text: str) -> Path:
    good = fleet_host(main_fleet, "web01")
    lines = ["[defaults]", f"user = {TEST_USER}", "", "[host:web01]",
             *(f"{k} = {v}" for k, v in good.items()), "", text]
    path = tmp_path / "bad.ini"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("text", "section", "key", "extra"),
    [
        ("[host:web02]\nhostname = 127.0.10.11\nprot = 22", "host:web02", "prot", "port"),
        ("[host:web02]\nhostname = 127.0.10.11\nport = twenty-two", "host:web02", "port",
         "twenty-two"),
        ("[host:web02]\nhostname = 127.0.10.11\nport = 70000", "host:web02", "port", "70000"),
        ("[host:web02]\nhostname = 127.0.10.11\nport = 0", "host:web02", "port", None),
        ("[group:a]\nhosts = web01\nchildren = b\n\n[group:b]\nchildren = a", None, "children",
         "cycle"),
        ("[group:a]\nhosts = web01\nchildren = nosuchgroup", "group:a", "children",
         "nosuchgroup"),
        ("[group:a]\nhosts = web01\nmembers = web01", "group:a", "members", None),
    ],
)
def test_bad_inventory_is_one_line_exit_2(
    cli: Cli, main_fleet: Fleet, tmp_path: Path, marker: Path, text: str,
    section: str | None, key: str, extra: str | None,
) -> None:
    path = _bad_inventory(tmp_path, main_fleet, text)
    result = cli.run("-i", str(path), "-h", "web01", "-cmd", f"touch {marker}")
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    line = lines[0]
    assert str(path) in line, line
    if section is not None:
        assert section in line, line
    else:
        assert "group:a" in line or "group:b" in line, line
    assert key in line, line
    if extra is not None:
        assert extra in line.lower(), line
    assert_no_traceback(result)
    assert not marker.exists()


def test_missing_inventory_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "hosts.ini"
    result = cli.run("-i", str(missing), "-g", "all", "-cmd", "true")
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and str(missing) in result.stderr, result
    assert_no_traceback(result)
    # no -i, no $HOSTBATCH_INVENTORY, no ./hosts.ini, no ~/.config/hostbatch/hosts.ini
    result = cli.run("-g", "all", "-cmd", "true")
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and "hosts.ini" in result.stderr, result


@pytest.mark.parametrize(
    "args",
    [["-g", "empty"], ["-g", "everything", "-x", "*"], ["-h", "web01", "-x", "web01"]],
)
def test_empty_selection_is_exit_2(cli: Cli, inventory: Path, marker: Path,
                                   args: list[str]) -> None:
    result = cli.run("-i", str(inventory), *args, "-cmd", f"touch {marker}")
    assert result.returncode == 2, result
    assert "empty" in result.stderr.lower(), result
    assert len(result.stderr.splitlines()) == 1, result
    assert_no_traceback(result)
    assert not marker.exists()


def test_marker_command_really_creates_the_marker(cli: Cli, inventory: Path,
                                                  marker: Path) -> None:
    """Control: the command the tests above must not run does create the marker."""
    result = cli.run("-i", str(inventory), "-h", "web01", "-cmd", f"touch {marker}")
    assert result.returncode == 0, result
    assert marker.exists()
    assert os.stat(marker).st_uid == pwd.getpwnam(TEST_USER).pw_uid
