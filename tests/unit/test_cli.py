"""The CLI in-process: run_main / hostbatch_main with an injected Environment, no network.

Every test here stops before anything connects; ``execute`` (the part that would) is replaced by
a recorder, so a test that reached it by mistake still cannot open a connection.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hostbatch.actions import Action, RunCommand
from hostbatch.cli import execute as cli_execute
from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main, run_main
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import HostSpec

from .conftest import WriteInventory

INVENTORY = """
[defaults]
user = deploy

[host:h1]
hostname = 127.100.0.1
password = pw%#;secret

[host:h2]

[host:h3]

[group:web_clusters]
hosts = web[01-03]

[group:db_servers]
hosts = db1, h2

[group:everything]
children = web_clusters, db_servers
"""


@dataclass
class CliResult:
    status: int
    stdout: str
    stderr: str
    executed: list[tuple[list[str], Action]] = field(default_factory=list)

    @property
    def hosts_run(self) -> list[str]:
        (hosts, _), = self.executed
        return hosts


Cli = Callable[..., CliResult]


@pytest.fixture
def inventory_path(write_inventory: WriteInventory) -> Path:
    return write_inventory(INVENTORY)


@pytest.fixture
def executed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], Action]]:
    calls: list[tuple[list[str], Action]] = []

    def fake_execute(hosts: list[HostSpec], action: Action, *rest: object) -> int:
        calls.append(([spec.name for spec in hosts], action))
        return ExitStatus.OK

    monkeypatch.setattr(cli_execute, "execute", fake_execute)
    return calls


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        executed: list[tuple[list[str], Action]]) -> Cli:
    """Run batch_run in-process in an empty cwd with an empty HOME (unless environ says)."""
    home = tmp_path / "empty-home"
    home.mkdir()
    cwd = tmp_path / "empty-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def run(*argv: str, environ: dict[str, str] | None = None,
            main: Callable[[list[str], Environment], int] = run_main) -> CliResult:
        out, err = io.BytesIO(), io.BytesIO()
        env = Environment(stdin=io.BytesIO(), stdout=out, stderr=err,
                          environ={"HOME": str(home), **(environ or {})},
                          stdout_isatty=False, stderr_isatty=False)
        status = main(list(argv), env)
        result = CliResult(int(status), out.getvalue().decode(), err.getvalue().decode(),
                           list(executed))
        executed.clear()
        assert "Traceback" not in result.stderr + result.stdout
        assert "internal error" not in result.stderr
        return result

    return run


def error_line(result: CliResult) -> str:
    """The single error line on stderr (one line, prefixed like argparse)."""
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- help / version


@pytest.mark.parametrize("argv", [["--help"], ["--help", "-h", "h1"], ["-g", "all", "--help"]])
def test_help_returns_zero(cli: Cli, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.status == 0
    assert "usage:" in result.stdout
    for option in ("-h", "-g", "-x", "--list", "-cmd", "--json", "--forks", "--timeout",
                   "--connect-timeout", "--accept-new", "-i"):
        assert option in result.stdout
    assert "exit status" in result.stdout
    for status in ("130", " 3 ", " 2 ", " 1 ", " 0 "):
        assert status in result.stdout
    assert result.stderr == ""
    assert result.executed == []


def test_help_does_not_raise_system_exit() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={}, stdout_isatty=False,
                      stderr_isatty=False)
    assert run_main(["--help"], env) == 0  # a SystemExit here would escape main


def test_hostbatch_run_help(cli: Cli) -> None:
    result = cli("run", "--help", main=hostbatch_main)
    assert result.status == 0 and "usage: hostbatch run" in result.stdout


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.status == 0 and result.stdout.startswith("hostbatch ")


def test_hostbatch_without_command_is_a_usage_error(cli: Cli) -> None:
    result = cli(main=hostbatch_main)
    assert result.status == 2
    assert "run" in result.stdout + result.stderr


def test_hostbatch_unknown_command(cli: Cli) -> None:
    result = cli("frobnicate", main=hostbatch_main)
    assert result.status == 2 and "frobnicate" in result.stderr


# --------------------------------------------------------------------------- --list


def test_list_prints_selected_hosts_one_per_line(cli: Cli, inventory_path: Path) -> None:
    result = cli("-i", str(inventory_path), "-g", "all", "--list")
    assert result.status == 0
    assert result.stdout == "h1\nh2\nh3\nweb01\nweb02\nweb03\ndb1\n"
    assert result.executed == []


def test_list_with_exclude(cli: Cli, inventory_path: Path) -> None:
    result = cli("-i", str(inventory_path), "-g", "all", "-x", "web*,h[1-2]", "--list")
    assert (result.status, result.stdout) == (0, "h3\ndb1\n")


def test_seed_syntax_list(cli: Cli, inventory_path: Path) -> None:
    result = cli("-i", str(inventory_path), "-h", "h1,h2", "-g", "web_clusters,db_servers",
                 "-cmd", "df -h", "--list")
    assert result.status == 0
    assert result.stdout.splitlines() == ["h1", "h2", "web01", "web02", "web03", "db1"]
    assert result.executed == []


def test_list_ignores_a_missing_command(cli: Cli, inventory_path: Path) -> None:
    assert cli("-i", str(inventory_path), "-h", "h3", "--list").stdout == "h3\n"


def test_list_output_has_no_color(cli: Cli, inventory_path: Path) -> None:
    result = cli("-i", str(inventory_path), "-g", "all", "--list")
    assert "\x1b[" not in result.stdout + result.stderr


def test_exclude_matching_nothing_is_a_warning(cli: Cli, inventory_path: Path) -> None:
    result = cli("-i", str(inventory_path), "-h", "h1", "-x", "nosuch", "--list")
    assert result.status == 0
    assert result.stdout == "h1\n"
    assert "warning" in result.stderr and "nosuch" in result.stderr


def test_readable_password_file_is_refused_unless_insecure(
        cli: Cli, write_inventory: WriteInventory) -> None:
    path = write_inventory(INVENTORY, name="open.ini", mode=0o644)
    result = cli("-i", str(path), "-h", "h1", "--list")
    assert result.status == ExitStatus.USAGE and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert f"chmod 600 {path}" in result.stderr and "--insecure-inventory" in result.stderr
    result = cli("-i", str(path), "-h", "h1", "--list", "--insecure-inventory")
    assert result.status == 0 and result.stdout == "h1\n"
    assert "warning" in result.stderr and "chmod 600" in result.stderr
    assert "pw%#;secret" not in result.stderr + result.stdout


# --------------------------------------------------------------------------- reaching execute


@pytest.mark.parametrize("flag", ["-cmd", "--cmd"])
def test_seed_syntax_runs_the_union(cli: Cli, inventory_path: Path, flag: str) -> None:
    result = cli("-i", str(inventory_path), "-h", "h1,h2,h3", "-g", "web_clusters,db_servers",
                 flag, "df -h")
    assert result.status == 0
    assert result.hosts_run == ["h1", "h2", "h3", "web01", "web02", "web03", "db1"]
    (_, action), = result.executed
    assert isinstance(action, RunCommand) and action.command == "df -h"


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["-h", "h1", "--", "uptime", "-a"], "uptime -a"),
        (["-h", "h1", "uptime"], "uptime"),
        (["-cmd", "echo a; echo b >&2", "-h", "h1"], "echo a; echo b >&2"),
        (["-h", "h1", "-cmd", "ls -l /"], "ls -l /"),
    ],
)
def test_command_forms(cli: Cli, inventory_path: Path, argv: list[str], command: str) -> None:
    result = cli("-i", str(inventory_path), *argv)
    assert result.status == 0
    (_, action), = result.executed
    assert isinstance(action, RunCommand) and action.command == command


def test_inventory_from_environment_variable(cli: Cli, inventory_path: Path) -> None:
    result = cli("-h", "h2", "--list", environ={"HOSTBATCH_INVENTORY": str(inventory_path)})
    assert (result.status, result.stdout) == (0, "h2\n")


def test_inventory_from_cwd(cli: Cli, inventory_path: Path) -> None:
    Path("hosts.ini").write_text(inventory_path.read_text())
    Path("hosts.ini").chmod(0o600)
    result = cli("-h", "h3", "--list")
    assert (result.status, result.stdout) == (0, "h3\n")


# --------------------------------------------------------------------------- exit 2


@pytest.mark.parametrize("flag", ["-cmd", "--cmd"])
def test_cmd_flag_accepted_before_selection_errors(cli: Cli, inventory_path: Path,
                                                   flag: str) -> None:
    """-cmd and --cmd both parse: the error is about the unknown host, not the command."""
    result = cli("-i", str(inventory_path), "-h", "nosuch", flag, "uptime")
    assert result.status == 2
    line = error_line(result)
    assert "'nosuch'" in line
    assert "command" not in line and "unrecognized" not in line


def test_no_selection_is_a_usage_error(cli: Cli, inventory_path: Path) -> None:
    for argv in (["-cmd", "uptime"], ["--list"], ["-x", "h1", "-cmd", "uptime"]):
        result = cli("-i", str(inventory_path), *argv)
        assert result.status == 2
        line = error_line(result)
        assert "-h" in line and "-g" in line
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["-h", "h4", "-cmd", "true"], ["'h4'", "did you mean"]),
        (["-h", "h1,wbe01", "-cmd", "true"], ["'wbe01'", "web01"]),
        (["-g", "web_cluster", "-cmd", "true"], ["'web_cluster'", "web_clusters"]),
        (["-g", "nosuchgroup", "--list"], ["'nosuchgroup'"]),
        (["-h", "web*", "-x", "web*", "--list"], ["empty"]),
    ],
)
def test_selection_errors_exit_2(cli: Cli, inventory_path: Path, argv: list[str],
                                 fragments: list[str]) -> None:
    result = cli("-i", str(inventory_path), *argv)
    assert result.status == 2
    line = error_line(result)
    for fragment in fragments:
        assert fragment in line
    assert result.stdout == "" and result.executed == []


def test_missing_inventory_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.ini"
    result = cli("-i", str(missing), "-h", "h1", "-cmd", "true")
    assert result.status == 2
    assert str(missing) in error_line(result)


def test_no_inventory_anywhere(cli: Cli) -> None:
    result = cli("-h", "h1", "-cmd", "true")
    assert result.status == 2
    line = error_line(result)
    assert "hosts.ini" in line and "-i" in line


def test_invalid_inventory(cli: Cli, write_inventory: WriteInventory) -> None:
    path = write_inventory("[host:web1]\nhostnme = 127.100.0.1\n", name="bad.ini")
    result = cli("-i", str(path), "-h", "web1", "-cmd", "true")
    assert result.status == 2
    line = error_line(result)
    assert str(path) in line and "[host:web1]" in line and "hostnme" in line
    assert "hostname" in line


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["-h", "h1"], "command"),
        (["-h", "h1", "-cmd", ""], "command"),
        (["-h", "h1", "-cmd", "   "], "command"),
        (["-h", "h1", "-cmd", "true", "--", "false"], "one argument"),
        (["-h", "h1", "-f", "0", "-cmd", "true"], "0"),
        (["-h", "h1", "-f", "-3", "-cmd", "true"], "-f"),
        (["-h", "h1", "-f", "many", "-cmd", "true"], "many"),
        (["-h", "h1", "--forks", "0", "-cmd", "true"], "0"),
        (["-h", "h1", "--timeout", "0", "-cmd", "true"], "0"),
        (["-h", "h1", "--timeout", "soon", "-cmd", "true"], "soon"),
        (["-h", "h1", "--connect-timeout", "-1", "-cmd", "true"], "-1"),
        (["-h", "h1", "--retries", "-1", "-cmd", "true"], "-1"),
        (["-h", "h1", "--frobnicate", "-cmd", "true"], "--frobnicate"),
        (["-h"], "-h"),
        (["-h", "h1", "--lis"], "--lis"),  # no abbreviations
    ],
)
def test_usage_errors_exit_2(cli: Cli, inventory_path: Path, argv: list[str],
                            fragment: str) -> None:
    result = cli("-i", str(inventory_path), *argv)
    assert result.status == 2
    line = error_line(result)
    assert fragment in line
    assert result.stdout == "" and result.executed == []


def test_usage_error_before_inventory_is_read(cli: Cli, tmp_path: Path) -> None:
    """A bad flag is reported as such, even when the inventory is missing too."""
    result = cli("-i", str(tmp_path / "missing.ini"), "-h", "h1", "-f", "0", "-cmd", "true")
    assert result.status == 2
    assert "missing.ini" not in error_line(result)


def test_error_goes_to_stderr_only(cli: Cli, inventory_path: Path) -> None:
    result = cli("-i", str(inventory_path), "-h", "zzz", "--list")
    assert result.stdout == ""
    assert result.stderr.startswith("batch_run: error:")
    assert result.stderr.count("\n") == 1


def test_hostbatch_run_is_batch_run(cli: Cli, inventory_path: Path) -> None:
    result = cli("run", "-i", str(inventory_path), "-g", "db_servers", "--list",
                 main=hostbatch_main)
    assert (result.status, result.stdout) == (0, "h2\ndb1\n")
    bad = cli("run", "-i", str(inventory_path), "-h", "nope", "--list", main=hostbatch_main)
    assert bad.status == 2 and bad.stderr.startswith("hostbatch run: error:")


# --------------------------------------------------------------------------- secrets in errors


def test_internal_error_and_its_traceback_never_show_a_secret(
        tmp_path: Path, write_inventory: WriteInventory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug whose exception text holds a password: the one-line message and the --debug
    traceback both come out masked."""
    path = write_inventory(INVENTORY)

    def buggy_execute(hosts: list[HostSpec], *rest: object) -> int:
        password = hosts[0].password
        assert password is not None
        raise RuntimeError(f"bug while holding {password.reveal()}")

    monkeypatch.setattr(cli_execute, "execute", buggy_execute)
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--debug"]):
        err = io.BytesIO()
        env = Environment(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=err,
                          environ={"HOME": str(tmp_path)}, stdout_isatty=False,
                          stderr_isatty=False)
        status = run_main(["-i", str(path), "-h", "h1", "-cmd", "true", *extra], env)
        text = err.getvalue().decode()
        assert status == 70, text
        assert "internal error: RuntimeError: bug while holding ***" in text
        assert ("Traceback" in text) == bool(extra), text
        assert "pw%#;secret" not in text


def test_exit_status_help_is_made_from_the_enum() -> None:
    from hostbatch.exit_status import RUN_STATUSES, exit_status_help

    text = exit_status_help()
    assert text.startswith("exit status:\n")
    for status in RUN_STATUSES:
        assert f"\n  {int(status):<5}{status.meaning.split()[0]}" in text
    assert ExitStatus.INTERNAL == 70 and ExitStatus.HANGUP == 129
    assert ExitStatus.TERMINATED == 143


def test_make_warn_redacts_labels_and_flushes() -> None:
    import io

    from hostbatch.cli.failures import make_warn
    from hostbatch.secrets import Secret

    secret = Secret("warn-s3cret-value")
    out = io.BytesIO()
    make_warn("batch_run", out)(f"password {secret.reveal()} looks odd")
    make_warn("hostbatch", out, label=None)("plain")
    assert out.getvalue() == b"batch_run: warning: password *** looks odd\nhostbatch: plain\n"


@pytest.mark.parametrize(("argv", "hint"), [
    (["-g", "all", "-w", "web1", "-cmd", "true"], "use -h HOSTS (inventory hosts) or -H HOSTS"),
    (["-g", "all", "-t", "5", "-cmd", "true"], "use --timeout S"),
    (["-g", "all", "-p", "9", "-cmd", "true"], "use -f N"),
    (["-g", "all", "--frks", "3", "-cmd", "true"], "did you mean --forks?"),
])
def test_pssh_and_clush_habits_get_a_pointer(cli: Cli, inventory_path: Path, argv: list[str],
                                             hint: str) -> None:
    result = cli("-i", str(inventory_path), *argv)
    assert result.status == 2 and hint in result.stderr, result
    assert result.stderr.count("\n") == 1


def test_an_inventory_error_names_the_line_and_points_at_lint(cli: Cli,
                                                             write_inventory: WriteInventory
                                                             ) -> None:
    path = write_inventory("[defaults]\nuser = x\n\n[host:web1]\nport = abc\n")
    result = cli("-i", str(path), "-g", "all", "-cmd", "true")
    assert result.status == 2
    assert result.stderr.count("\n") == 1
    assert "(line 5); to see every problem at once: hostbatch inventory lint -i" in result.stderr
