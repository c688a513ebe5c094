"""The console's pure parts: what a line means, TAB candidates, the prompt, the command line,
and the standing pool's bookkeeping that needs no SSH (no network here)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hostbatch.cli.completion import complete
from hostbatch.cli.console import build_parser, console_from_run
from hostbatch.cli.environment import Environment
from hostbatch.cli.main import hostbatch_main, run_main
from hostbatch.console.specials import (
    SPECIALS,
    Line,
    candidates,
    help_text,
    parse_line,
    split_expressions,
)
from hostbatch.console.terminal import history_file
from hostbatch.errors import UsageError
from hostbatch.exit_status import ExitStatus

HOSTS = ["web01", "web02", "db01"]
GROUPS = ["web", "db_servers", "all"]


@pytest.mark.parametrize(("typed", "expected"), [
    ("", Line("empty")),
    ("   ", Line("empty")),
    ("uptime", Line("remote", "uptime")),
    ("  df -h /  ", Line("remote", "df -h /")),
    (":gather", Line("special", "gather")),
    ("=", Line("special", "gather")),
    ("=x", Line("remote", "=x")),
    ("@", Line("special", "hosts")),
    (":HOSTS", Line("special", "hosts")),
    (":add web[01-02],db01", Line("special", "add", "web[01-02],db01")),
    ("+web01", Line("special", "add", "web01")),
    ("+ @web", Line("special", "add", "@web")),
    ("-web01", Line("special", "remove", "web01")),
    (":remove @failed", Line("special", "remove", "@failed")),
    (":timeout 2.5", Line("special", "timeout", "2.5")),
    ("!ls -l", Line("local", "ls -l")),
    ("?", Line("special", "help")),
    (":quit", Line("special", "quit")),
])
def test_parse_line(typed: str, expected: Line) -> None:
    assert parse_line(typed) == expected


def test_an_unknown_special_command_suggests_the_nearest() -> None:
    with pytest.raises(UsageError, match=r"did you mean :hosts\?"):
        parse_line(":hots")
    with pytest.raises(UsageError, match=":help lists them"):
        parse_line(":zzzzzz")


def test_help_lists_every_special_command() -> None:
    text = help_text()
    for special in SPECIALS:
        assert f":{special.name}" in text
    assert "!CMD" in text and "Ctrl-C" in text


def test_split_expressions_tells_groups_from_history_shortcuts() -> None:
    assert split_expressions("web01, @web @failed @ok:12 db[01-02]") == (
        ["web01", "@failed", "@ok:12", "db[01-02]"], ["web"])
    assert split_expressions("  ") == ([], [])


@pytest.mark.parametrize(("before", "word", "expected"), [
    ("", ":h", [":help", ":history", ":hosts"]),
    ("", ":", sorted(f":{s.name}" for s in SPECIALS)),
    ("", "+we", ["+web01", "+web02"]),
    ("", "-@d", ["-@db_servers"]),
    ("", "upt", []),
    (":add ", "d", ["db01"]),
    (":add ", "@", ["@all", "@db_servers", "@failed", "@ok", "@web"]),
    (":remove web01,", "@f", ["@failed"]),
    ("ping -c1 ", "web0", ["web01", "web02"]),
    ("echo ", "@", []),
])
def test_completion_candidates(before: str, word: str, expected: list[str]) -> None:
    assert candidates(before, word, HOSTS, GROUPS) == expected


def test_history_file_follows_xdg_state_home(tmp_path: Path) -> None:
    assert history_file({"XDG_STATE_HOME": str(tmp_path)}, "/home/u") == (
        tmp_path / "hostbatch" / "console_history")
    assert history_file({"XDG_STATE_HOME": "relative"}, "/home/u") == Path(
        "/home/u/.local/state/hostbatch/console_history")


def _env(*, tty: bool) -> Environment:
    return Environment(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=io.BytesIO(),
                       environ={}, stdin_isatty=tty, stdout_isatty=tty, stderr_isatty=tty)


def test_console_options() -> None:
    args = build_parser("hostbatch console").parse_args(
        ["-g", "web", "-b", "--sudo", "--timeout", "5", "--idle-timeout", "60"])
    assert (args.gather, args.sudo, args.timeout, args.idle_timeout) == (True, True, 5.0, 60.0)
    assert build_parser("hostbatch console").parse_args(["-g", "web"]).idle_timeout == 1800.0


def test_console_without_a_terminal_is_a_usage_error() -> None:
    env = _env(tty=False)
    status = hostbatch_main(["console", "-H", "127.0.0.1"], env)
    assert status == ExitStatus.USAGE
    assert b"needs a terminal" in env.stderr.getvalue()  # type: ignore[attr-defined]


def test_batch_run_without_a_command_starts_the_console_only_on_a_terminal() -> None:
    env = _env(tty=False)
    assert console_from_run(["-H", "127.0.0.1"], env, "batch_run") is None
    assert run_main(["-H", "127.0.0.1"], env) == ExitStatus.USAGE
    assert b"no command given" in env.stderr.getvalue()  # type: ignore[attr-defined]
    on_tty = _env(tty=True)
    for argv in (["-H", "127.0.0.1", "-cmd", "uptime"], ["-H", "127.0.0.1", "uptime"],
                 ["-H", "127.0.0.1", "--list"], ["--help"], ["--bogus"]):
        assert console_from_run(argv, on_tty, "batch_run") is None, argv


def test_console_is_a_listed_subcommand_with_completion() -> None:
    env = _env(tty=False)
    assert hostbatch_main(["--help"], env) == ExitStatus.OK
    assert b"console" in env.stdout.getvalue()  # type: ignore[attr-defined]
    reply = complete(["hostbatch", "console", "--idle"], {})
    assert [candidate.word for candidate in reply.candidates] == ["--idle-timeout"]
