"""Properties of the command lines: ``batch_run``, ``batch_scp`` and ``hostbatch run|scp|
keyscan|inventory|history`` called in-process with generated argv. Whatever the words, each
call ends with exit 0 or 2 (or a command's other documented status), no traceback, never 70,
every stderr line one short line, no hang.

Nothing generated here can connect: the part of a run that would (``execute``, keyscan's
``perform``) is replaced by a recorder, the terminal prompt by "no terminal", and the
inventory's hosts point at 127.0.0.1 ports where nothing listens. The one property that does
run the engine (:func:`test_real_runs_against_closed_ports_end_in_a_documented_status`) only
ever reaches those closed ports.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from hostbatch.cli import execute as cli_execute
from hostbatch.cli import keyscan as cli_keyscan
from hostbatch.cli import prompt as cli_prompt
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import LINE_LIMIT, error_line, make_warn, one_line
from hostbatch.cli.main import hostbatch_main, run_main, scp_main
from hostbatch.exit_status import ExitStatus

from .properties import (
    LONG,
    check_message,
    fast,
    forget_secrets,  # noqa: F401  (autouse fixture)
    junk,
    long_token,
    run_cli,
)

Main = Callable[[list[str], Environment], int]


def closed_port() -> int:
    """A port of 127.0.0.1 with no listener (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An empty HOME and working directory, and an inventory of hosts on closed ports."""
    root = tmp_path_factory.mktemp("cli")
    home, cwd = root / "home", root / "cwd"
    home.mkdir()
    cwd.mkdir()
    sections = [f"[host:h{n}]\nhostname = 127.0.0.1\nport = {closed_port()}\n" for n in (1, 2, 3)]
    inventory = root / "hosts.ini"
    inventory.write_text("[defaults]\nuser = nobody\nconnect_timeout = 2\n\n" + "\n".join(sections)
                         + "\n[group:web]\nhosts = h1, h2\n\n[group:all_of_them]\n"
                           "children = web\nhosts = h3\n", encoding="utf-8")
    inventory.chmod(0o600)
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        yield {"HOME": str(home), "HOSTBATCH_INVENTORY": str(inventory), "root": str(root)}
    finally:
        os.chdir(previous)


@pytest.fixture
def nothing_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace what would connect or ask a terminal with harmless stand-ins."""
    monkeypatch.setattr(cli_execute, "execute", lambda *args, **kwargs: ExitStatus.OK)
    monkeypatch.setattr(cli_keyscan, "perform", lambda *args, **kwargs: ExitStatus.OK)
    monkeypatch.setattr(cli_prompt, "terminal_prompt", lambda: None)


def environ(place: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in place.items() if key != "root"}


# ------------------------------------------------------------------ words of a command line

_HOSTS = st.sampled_from(["h1", "h[1-2]", "h*", "web", "all", "@failed", "@ok:1", "nosuch",
                          "h1,h2", "h[1-100000000]", "h[", "!h1", ""])
_NUMBERS = st.sampled_from(["0", "1", "3", "-1", "1.5", "1e999", "nan", "inf", "10%", "0%",
                            "150%", "4M", "1K", "x", "9" * 5000, ""])
#: Text with no "/": a generated path never leaves the test's working directory.
_WORD = st.one_of(junk(30), long_token(), _HOSTS, _NUMBERS).map(lambda w: w.replace("/", "_"))
_VALUE = st.one_of(_HOSTS, _NUMBERS, _WORD)

_COMMON = ["-h", "-g", "-x", "--list", "-f", "--forks", "--connect-timeout", "--keepalive",
           "--keepalive-count", "--retries", "--workers", "--insecure-inventory", "--json", "-q",
           "--debug", "--no-history", "--history-cap", "--canary", "--batch", "--max-fail",
           "--confirm-over", "-i", "--inventory-format", "-F", "-l", "--help", "--version",
           "--", "-", "--accept-new", "--ask-pass", "--frobnicate", "--forks=2", "-f2", "-hh1"]
_RUN = [*_COMMON, "-b", "--diff", "--gather-stderr", "-o", "-e", "--sudo", "--ask-sudo-pass",
        "--env", "--no-stdin", "--script", "-cmd", "--timeout"]
_SCP = [*_COMMON, "-action", "--action", "-local", "--local", "-remote", "--remote", "-r",
        "-p", "--verify", "--mkdir", "--timeout"]
_KEYSCAN = [*_COMMON, "-y", "--yes"]


def command_lines(flags: list[str], always: list[str] | None = None
                  ) -> st.SearchStrategy[list[str]]:
    """Argv made of known flags, each maybe followed by a value, and stray words."""
    word = st.one_of(st.sampled_from(flags), _VALUE, st.sampled_from(["put", "get", "uptime"]))
    words = st.lists(word, max_size=10)
    return words.map(lambda w: [*(always or []), *w])


# ------------------------------------------------------------------ properties


@given(st.sampled_from([("run", _RUN), ("scp", _SCP)]), st.data())
@example(("run", _RUN), None)
@fast(200, seconds=10)
def test_batch_run_and_scp_end_in_0_or_2(place: dict[str, str], nothing_connects: None,
                                         which: tuple[str, list[str]],
                                         data: st.DataObject | None) -> None:
    name, flags = which
    if data is None:  # the explicit example: a pasted blob where a flag's value goes
        argv = ["-g", "all", "--forks", "x" * 5 * LONG, "--unknown-" + "y" * LONG, "z" * LONG]
    else:
        argv = data.draw(command_lines(flags, ["-g", "all"]) | command_lines(flags),
                         label="argv")
    main: Main = run_main if name == "run" else scp_main
    event(f"exit {run_cli(main, argv, environ(place)).status}")


@given(st.sampled_from(["run", "scp", "keyscan", "inventory", "history", "help", "--help",
                        "--version"]) | junk(12).map(lambda w: w.replace("/", "_")),
       st.sampled_from(["", "lint", "convert", "explain", "list", "show", "diff", "prune",
                        "bogus"]), st.data())
@example("inventory", "x" * LONG, None)
@example("inventory", "explain", None)
@fast(200, seconds=10)
def test_hostbatch_subcommands_end_in_a_documented_status(
        place: dict[str, str], nothing_connects: None, command: str, sub: str,
        data: st.DataObject | None) -> None:
    flags = {"run": _RUN, "scp": _SCP, "keyscan": _KEYSCAN}.get(
        command, [*_RUN, "--strict", "-o", "-n", "--force", "--keep", "--json"])
    words = (["-h", "h" + "1" * LONG, "--" + "q" * LONG] if data is None
             else data.draw(command_lines(flags), label="words"))
    if command == "keyscan":
        words = [*words, "--list"]  # never a scan, whatever the words
    if command == "inventory" and "-o" in words:  # convert writes only in the working directory
        words = [w for w in words if "/" not in w]
    argv = [command, *([sub] if sub else []), *words]
    statuses = (0, 1, 2) if command == "inventory" or sub == "diff" else (0, 2)
    event(f"exit {run_cli(hostbatch_main, argv, environ(place), statuses=statuses).status}")


@given(st.lists(st.sampled_from(["-f", "1", "2", "--connect-timeout", "0.5", "--retries", "0",
                                 "--json", "-q", "-b", "--keepalive", "0", "--timeout", "3",
                                 "--canary", "1", "--max-fail", "50%", "--batch", "1",
                                 "--no-history", "--workers", "1"]), max_size=6),
       st.sampled_from([["-g", "all"], ["-h", "h1"], ["-h", "h[1-3]", "-x", "h2"]]))
@fast(6, seconds=30)
def test_real_runs_against_closed_ports_end_in_a_documented_status(
        place: dict[str, str], monkeypatch: pytest.MonkeyPatch, options: list[str],
        selection: list[str]) -> None:
    """The engine itself, on hosts whose ports are closed: unreachable (3), or a usage error
    for a generated contradiction; the workers come and go within the example's time."""
    monkeypatch.setattr(cli_prompt, "terminal_prompt", lambda: None)
    outcome = run_cli(run_main, [*selection, *options, "-cmd", "true"], environ(place),
                      seconds=30, statuses=(2, 3))
    event(f"exit {outcome.status}")


# ------------------------------------------------------------------ the catch-all cap


@given(st.text(max_size=3 * LINE_LIMIT) | long_token(), st.sampled_from([None, "warning"]))
@example("a\nb\rc\x0bd\x0ce\x1cf\u2028g\u2029h\x85i\x1b[31mj\tk", "warning")
@example("x" * 10 * LINE_LIMIT + " (see batch_run --help)", None)
@fast(200)
def test_every_error_and_warning_is_one_bounded_line(text: str, label: str | None) -> None:
    line = error_line("prog", text).decode()
    assert line.endswith("\n") and len(line.splitlines()) <= 1
    check_message(line)
    assert len(line) <= len("prog: error: \n") + LINE_LIMIT
    printed: list[bytes] = []

    class Sink:
        def write(self, data: bytes) -> int:
            printed.append(data)
            return len(data)

        def flush(self) -> None:
            pass

    make_warn("prog", Sink(), label=label)(text)
    (warning,) = printed
    assert len(warning.decode().splitlines()) <= 1 and warning.endswith(b"\n")
    assert len(warning) <= len("prog: warning: \n") + 4 * LINE_LIMIT  # UTF-8 bytes


def test_a_cut_keeps_the_start_and_the_hint() -> None:
    text = "argument -f: " + "x" * 5000 + " (see batch_run --help)"
    cut = one_line(text)
    assert len(cut) == LINE_LIMIT
    assert cut.startswith("argument -f: xxx") and cut.endswith("(see batch_run --help)")


@pytest.mark.parametrize("argv", [
    ["-g", "all", "--forks", "x" * 5000],
    ["-g", "all", "--env", "=" * 5000],
    ["-g", "all", "--inventory-format", "y" * 5000],
    ["-g", "all", "--history-cap", "z" * 5000],
    ["-g", "all", "-cmd", "true", *["stray" + str(n) for n in range(2000)]],
    ["-g", "all", "--max-fail", "9" * 5000 + "%"],
])
def test_argparse_messages_are_capped(place: dict[str, str], nothing_connects: None,
                                      argv: list[str]) -> None:
    """Regression: argparse and the type functions quoted the whole value (5,000 characters)
    or every stray word; now one short line that still says where to look."""
    outcome = run_cli(run_main, argv, environ(place), statuses=(2,))
    (line,) = outcome.stderr.splitlines()
    assert len(line) <= 2 * 3 * 80, line
    assert line.endswith("(see batch_run --help)") or "(extra: 'stray0 stray1" in line, line


def test_inventory_subcommand_errors_are_capped(place: dict[str, str], nothing_connects: None
                                                ) -> None:
    """Regression: ``hostbatch inventory WORD`` quoted the whole unknown word, and
    ``inventory explain`` printed its errors unredacted and uncapped."""
    for argv in (["inventory", "x" * 5000], ["inventory", "explain", "h" + "1" * 5000],
                 ["inventory", "explain", "--" + "y" * 5000]):
        outcome = run_cli(hostbatch_main, argv, environ(place), statuses=(2,))
        assert len(outcome.stderr) < 400, outcome.stderr
