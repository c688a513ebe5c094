"""The personal config file (``~/.config/hostbatch/config.ini``, ``$HOSTBATCH_CONFIG``): where
it is found, its checks, and its place in both precedence orders, in-process (nothing
connects: ``execute`` is replaced by a recorder)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hostbatch.cli import execute as cli_execute
from hostbatch.cli.arguments import RunOptions
from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main, run_main, scp_main
from hostbatch.errors import UsageError
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import DEFAULT_CONNECT_TIMEOUT, HostSpec
from hostbatch.inventory.resolve import Resolver
from hostbatch.userconfig import config_path, load_user_config

from .conftest import WriteInventory

INVENTORY = """
[defaults]
keepalive_interval = 7

[host:h1]
hostname = 127.100.0.1

[host:h2]
hostname = 127.100.0.2
connect_timeout = 3
"""
ROW = re.compile(r"^(?P<key>\S+)\s+(?P<value>.*?)  \((?P<source>[^()]*)\)$")


@dataclass
class Ran:
    status: int
    stderr: str
    hosts: dict[str, HostSpec]
    options: RunOptions | None
    environ: dict[str, str]


@pytest.fixture(autouse=True)
def no_known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets made by earlier tests (one-letter ones among them) would mask error text."""
    monkeypatch.setattr("hostbatch.secrets._known_values", set())


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return home


def write_config(home: Path, text: str) -> Path:
    path = home / ".config" / "hostbatch" / "config.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run(monkeypatch: pytest.MonkeyPatch, home: Path, *argv: str | Path,
        environ: dict[str, str] | None = None, main: Any = run_main) -> Ran:
    seen: list[tuple[list[HostSpec], RunOptions, Environment]] = []

    def fake_execute(hosts: list[HostSpec], action: object, options: RunOptions,
                     env: Environment, *rest: object) -> int:
        seen.append((hosts, options, env))
        return ExitStatus.OK

    monkeypatch.setattr(cli_execute, "execute", fake_execute)
    err = io.BytesIO()
    env = Environment(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=err,
                      environ={"HOME": str(home), **(environ or {})},
                      stdout_isatty=False, stderr_isatty=False)
    status = int(main([str(a) for a in argv], env))
    if not seen:
        return Ran(status, err.getvalue().decode(), {}, None, dict(env.environ))
    ((hosts, options, used),) = seen
    return Ran(status, err.getvalue().decode(), {h.name: h for h in hosts}, options,
               dict(used.environ))


# ------------------------------------------------------------------ finding and reading


def test_where_the_file_is_found(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert config_path({}, home) == (None, False)  # no file: no personal defaults
    default = write_config(tmp_path, "")
    assert config_path({}, home) == (default, False)
    xdg = tmp_path / "xdg"
    assert config_path({"XDG_CONFIG_HOME": str(xdg)}, home) == (None, False)
    (xdg / "hostbatch").mkdir(parents=True)
    (xdg / "hostbatch" / "config.ini").write_text("")
    assert config_path({"XDG_CONFIG_HOME": str(xdg)}, home) == (
        xdg / "hostbatch" / "config.ini", False)
    # A relative XDG_CONFIG_HOME is ignored, as the XDG spec asks.
    assert config_path({"XDG_CONFIG_HOME": "rel"}, home) == (default, False)
    assert config_path({"HOSTBATCH_CONFIG": "/x/y.ini", "XDG_CONFIG_HOME": str(xdg)}, home) == (
        Path("/x/y.ini"), True)


def test_values_are_typed(tmp_path: Path) -> None:
    write_config(tmp_path, "# mine\n[defaults]\nforks = 8  # -f\nconnect-timeout = 2.5\n"
                           "keepalive = 0\nkeepalive_count = 4\ntimeout = 60\n"
                           "output = Gather\nhistory = off\ncolor = never\n"
                           "summary = full\nretries = 0\n")
    config = load_user_config({}, str(tmp_path))
    assert config.run == {"forks": 8, "timeout": 60.0, "output": "gather", "history": False,
                          "color": "never", "summary": "full", "retries": 0}
    assert config.hosts == {"connect_timeout": 2.5, "keepalive_interval": 0.0,
                            "keepalive_count_max": 4}


@pytest.mark.parametrize(("text", "message"), [
    ("[defaults]\nfroks = 8\n", r"froks is not a setting \(did you mean 'forks'\?\)"),
    ("[default]\nforks = 8\n", r"unknown section \[default\] \(did you mean 'defaults'\?\)"),
    ("[defaults]\nforks = many\n", r"\[defaults\] forks: 'many' is not a whole number"),
    ("[defaults]\nforks = 0\n", r"forks: '0' is out of range"),
    ("[defaults]\ntimeout = -1\n", r"timeout: '-1' is out of range"),
    ("[defaults]\noutput = jsn\n", r"output: 'jsn' is not one of .* \(did you mean 'json'\?\)"),
    ("[defaults]\nhistory = maybe\n", r"history: 'maybe' is not on or off"),
    ("forks = 8\n", r"not INI: File contains no section headers"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(UsageError, match=message) as caught:
        load_user_config({}, str(tmp_path))
    assert str(caught.value).startswith(f"config file {path}: ")
    assert "\n" not in str(caught.value)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"config file /nonexistent/c.ini \(\$HOSTBATCH_CONFIG\) "
                                         "does not exist"):
        load_user_config({"HOSTBATCH_CONFIG": "/nonexistent/c.ini"}, str(tmp_path))


# ------------------------------------------------------------------ precedence


def test_per_host_layer_sits_between_ssh_config_and_built_in() -> None:
    def ssh_lookup(name: str) -> dict[str, Any]:
        return {"keepalive_count_max": 9} if name == "h1" else {}

    resolver = Resolver(defaults={"keepalive_interval": 7.0},
                        sections={"h1": {}, "h2": {"connect_timeout": 3.0}}, local_user="me",
                        ssh_lookup=ssh_lookup,
                        user_config={"connect_timeout": 2.5, "keepalive_interval": 1.0,
                                     "keepalive_count_max": 4})
    h1, h2 = resolver.resolve("h1"), resolver.resolve("h2")
    assert (h1.spec.connect_timeout, h1.sources["connect_timeout"]) == (2.5, "config file")
    assert (h2.spec.connect_timeout, h2.sources["connect_timeout"]) == (3.0, "host section")
    assert (h1.spec.keepalive_interval, h1.sources["keepalive_interval"]) == (7.0, "defaults")
    assert (h1.spec.keepalive_count_max, h1.sources["keepalive_count_max"]) == (9, "ssh_config")
    assert (h2.spec.keepalive_count_max, h2.sources["keepalive_count_max"]) == (4, "config file")
    plain = Resolver(defaults={}, sections={"h1": {}}, local_user="me").resolve("h1")
    assert plain.spec.connect_timeout == DEFAULT_CONNECT_TIMEOUT


def test_a_run_takes_the_config_below_the_command_line(
        monkeypatch: pytest.MonkeyPatch, home: Path, write_inventory: WriteInventory) -> None:
    inventory = write_inventory(INVENTORY)
    write_config(home, "[defaults]\nforks = 8\ntimeout = 60\nconnect_timeout = 2.5\n"
                       "keepalive_count = 4\noutput = quiet\nhistory = off\nsummary = full\n"
                       "color = never\n")
    ran = run(monkeypatch, home, "-i", inventory, "-g", "all", "-cmd", "true")
    assert ran.status == 0, ran.stderr
    assert ran.options is not None
    settings, output = ran.options.settings, ran.options.output
    assert (settings.forks, settings.command_timeout) == (8, 60.0)
    assert output.quiet and output.full_summary and not ran.options.history.enabled
    assert ran.environ.get("NO_COLOR") == "1"
    assert ran.hosts["h1"].connect_timeout == 2.5  # nothing above sets it
    assert ran.hosts["h2"].connect_timeout == 3  # the host section wins over the file
    assert ran.hosts["h1"].keepalive_interval == 7  # so does the inventory's [defaults]
    assert ran.hosts["h1"].keepalive_count_max == 4

    given = run(monkeypatch, home, "-i", inventory, "-g", "all", "-f", "3", "--timeout", "5",
                "--connect-timeout", "9", "-b", "--summary", "compact", "-cmd", "true")
    assert given.status == 0, given.stderr
    assert given.options is not None
    assert (given.options.settings.forks, given.options.settings.command_timeout) == (3, 5.0)
    output = given.options.output
    assert output.gather and not output.quiet  # a mode on the command line replaces the file's
    assert output.summary == "compact"
    assert given.hosts["h2"].connect_timeout == 9
    verbose = run(monkeypatch, home, "-i", inventory, "-g", "all", "-v", "-cmd", "true")
    assert verbose.options is not None and verbose.options.output.full_summary


def test_keys_for_flags_a_command_lacks_are_ignored(
        monkeypatch: pytest.MonkeyPatch, home: Path, write_inventory: WriteInventory) -> None:
    inventory = write_inventory(INVENTORY)
    write_config(home, "[defaults]\noutput = gather\n")
    (home.parent / "f").write_text("x")
    ran = run(monkeypatch, home, "-i", inventory, "-g", "all", home.parent / "f", "/tmp/",
              main=scp_main)
    assert ran.status == 0, ran.stderr
    assert ran.options is not None and not ran.options.output.gather


def test_a_bad_config_stops_a_run_but_not_help(
        monkeypatch: pytest.MonkeyPatch, home: Path, write_inventory: WriteInventory) -> None:
    inventory = write_inventory(INVENTORY)
    path = write_config(home, "[defaults]\nfork = 8\n")
    ran = run(monkeypatch, home, "-i", inventory, "-g", "all", "-cmd", "true")
    assert ran.status == 2 and ran.options is None
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert f"config file {path}: [defaults] fork is not a setting (did you mean 'forks'?)" \
        in ran.stderr
    assert run(monkeypatch, home, "--help").status == 0
    missing = run(monkeypatch, home, "-i", inventory, "-g", "all", "-cmd", "true",
                  environ={"HOSTBATCH_CONFIG": str(home / "nope.ini")})
    assert missing.status == 2 and "does not exist" in missing.stderr


def test_explain_names_the_config_file_and_its_values(
        monkeypatch: pytest.MonkeyPatch, home: Path, write_inventory: WriteInventory) -> None:
    inventory = write_inventory(INVENTORY)
    path = write_config(home, "[defaults]\nconnect_timeout = 2.5\nforks = 8\nhistory = off\n")
    out, err = io.BytesIO(), io.BytesIO()
    env = Environment(stdout=out, stderr=err, environ={"HOME": str(home)},
                      stdout_isatty=False, stderr_isatty=False)
    assert hostbatch_main(["inventory", "explain", "-i", str(inventory), "h1"], env) == 0, err
    table = {m["key"]: (m["value"], m["source"]) for m in map(ROW.match,
                                                              out.getvalue().decode().splitlines())
             if m}
    assert table["connect_timeout"] == ("2.5s", "config file")
    assert table["config_file"] == (str(path), "default")
    assert table["forks"] == ("8", "config file; the command line wins")
    assert table["history"] == ("off", "config file; the command line wins")
    out.truncate(0)
    assert hostbatch_main(["inventory", "explain", "-i", str(inventory), "h2"], env) == 0
    assert "connect_timeout  3s  (host section)" in out.getvalue().decode().replace("   ", "  ")
