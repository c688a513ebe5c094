"""Every command of the command line and its argparse parser, in one place.

``hostbatch --help``, ``hostbatch help COMMAND``, the man pages (:mod:`hostbatch.cli.man`)
and shell completion (:mod:`hostbatch.cli.completion`) all read the parsers listed here, so
they describe exactly the options that ``--help`` shows and the parser accepts.

Some subcommands (``history ...``, ``inventory lint|convert|explain``) build their parser
inside their entry point; :func:`captured_parser` runs that entry point with ``--help`` and
keeps the parser it built, so those options are still declared only once.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hostbatch.cli.environment import Environment
from hostbatch.cli.options import build_run_parser, build_scp_parser
from hostbatch.cli.parser import Parser


@dataclass(frozen=True)
class Command:
    """A ``hostbatch`` subcommand as ``hostbatch --help`` lists it."""

    name: str
    summary: str


#: ``hostbatch`` subcommands, in the order ``hostbatch --help`` shows them.
COMMANDS = (
    Command("run", "run a shell command on many hosts (same as batch_run)"),
    Command("scp", "copy files to or from many hosts (same as batch_scp)"),
    Command("console", "an interactive prompt on many hosts over connections kept open"),
    Command("keyscan", "fetch host keys, compare them with known_hosts, record new ones"),
    Command("inventory", "inventory tools: lint, convert, explain"),
    Command("history", "list, replay (show) and compare (diff) recorded runs"),
    Command("relay", "run a shard of a fleet for a controller (started over SSH; see via)"),
    Command("help", "show a command's help: hostbatch help run"),
    Command("man", "write a man page (roff) to stdout, or --install the pages"),
    Command("completion", "write a bash, zsh or fish completion script to stdout"),
)

#: Subcommands of ``hostbatch inventory`` and ``hostbatch history`` (``list`` is the default).
INVENTORY_SUBCOMMANDS = ("lint", "convert", "explain")
HISTORY_SUBCOMMANDS = ("list", "show", "diff", "prune")

#: The programs that have a man page, and the shells completion supports.
MAN_PAGES = ("batch_run", "batch_scp", "hostbatch")
SHELLS = ("bash", "zsh", "fish")

HOSTBATCH_EXAMPLES = """\
examples:
  hostbatch run -g web -cmd 'systemctl is-active nginx'   # same as batch_run
  hostbatch history show --diff                           # the last run, as a drift view
  hostbatch completion bash > /etc/bash_completion.d/hostbatch      # TAB completion
"""


COMPLETION_INSTALL = """\
install (one line; then open a new shell):
  bash: hostbatch completion bash > /etc/bash_completion.d/hostbatch
        for yourself: hostbatch completion bash > ~/.hostbatch.bash
                      and the line  . ~/.hostbatch.bash  in ~/.bashrc
  zsh:  hostbatch completion zsh > /usr/local/share/zsh/site-functions/_hostbatch
        for yourself: into a directory of your $fpath, named _hostbatch
  fish: hostbatch completion fish > ~/.config/fish/conf.d/hostbatch.fish"""


def hostbatch_usage() -> str:
    """The text of ``hostbatch --help``: the commands, then three examples."""
    width = max(len(command.name) for command in COMMANDS) + 2
    lines = "".join(f"  {c.name:<{width}}{c.summary}\n" for c in COMMANDS)
    return ("usage: hostbatch COMMAND [OPTIONS]\n\ncommands:\n" + lines
            + "\nRun 'hostbatch help COMMAND' (or 'hostbatch COMMAND --help') for the options "
              "of a command.\n\n" + HOSTBATCH_EXAMPLES)


def build_man_parser(prog: str = "hostbatch man") -> Parser:
    """The parser of ``hostbatch man``."""
    parser = Parser(prog=prog, add_help=False, allow_abbrev=False,
                    description="Write the man page of batch_run, batch_scp or hostbatch "
                                "(roff, generated from the same options as --help) to stdout.",
                    epilog="Read one without installing it: hostbatch man batch_run | man -l -")
    parser.add_argument("--help", action="store_true", help="show this help and exit")
    parser.add_argument("page", nargs="?", choices=MAN_PAGES, default="hostbatch",
                        help="which page (default hostbatch)")
    parser.add_argument("--install", metavar="DIR", nargs="?", const="",
                        help="write all three pages as DIR/NAME.1 instead (default DIR: "
                             "share/man/man1 beside the installed commands, which man finds "
                             "when they are on PATH)")
    return parser


def build_completion_parser(prog: str = "hostbatch completion") -> Parser:
    """The parser of ``hostbatch completion``."""
    parser = Parser(prog=prog, add_help=False, allow_abbrev=False,
                    description="Write a completion script for batch_run, batch_scp and "
                                "hostbatch to stdout: it completes\noptions, and host and "
                                "group names from the inventory (-i on the line, else the\n"
                                "usual lookup).",
                    epilog=COMPLETION_INSTALL,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help", action="store_true", help="show this help and exit")
    parser.add_argument("shell", nargs="?", choices=SHELLS, help="the shell")
    return parser


def captured_parser(main: Callable[[Sequence[str], Environment], int],
                    argv: Sequence[str]) -> Parser:
    """The parser that ``main(argv + ['--help'])`` builds to print its help.

    ``Parser.format_help`` is replaced for the call so nothing is printed and the parser is
    kept; the entry point stops there, as it does for ``--help``.
    """
    from unittest import mock  # only here: help and man pages, never a run

    seen: list[Parser] = []

    def keep(parser: Parser) -> str:
        seen.append(parser)
        return ""

    env = Environment(stdin=io.BytesIO(), stdout=io.BytesIO(), stderr=io.BytesIO(),
                      environ={}, stdin_isatty=False, stdout_isatty=False,
                      stderr_isatty=False)
    with mock.patch.object(Parser, "format_help", autospec=True, side_effect=keep):
        main([*argv, "--help"], env)
    if not seen:
        raise LookupError(f"{' '.join(argv)} --help built no parser")
    return seen[-1]


def subcommand_parser(words: Sequence[str]) -> Parser | None:
    """The parser of ``hostbatch WORDS...`` (``["inventory", "lint"]``, ``["history"]``), or
    None for a word that names no parser (``inventory`` alone, an unknown command)."""
    from hostbatch.cli import console, history, inventory, keyscan, relay

    name, rest = (words[0], list(words[1:2])) if words else ("", [])
    prog = f"hostbatch {name}"
    builders: dict[str, Callable[[str], Parser]] = {
        "run": build_run_parser, "scp": build_scp_parser, "keyscan": keyscan.build_parser,
        "console": console.build_parser, "man": build_man_parser,
        "completion": build_completion_parser, "relay": relay.build_parser}
    if name in builders:
        return builders[name](prog)
    if name == "history":
        sub = rest[0] if rest and rest[0] in HISTORY_SUBCOMMANDS else "list"
        return captured_parser(history.history_main, [] if sub == "list" else [sub])
    if name == "inventory" and rest and rest[0] in INVENTORY_SUBCOMMANDS:
        return captured_parser(inventory.main, rest)
    return None


def program_parser(program: str) -> Parser:
    """The parser of ``batch_run`` or ``batch_scp``."""
    return {"batch_run": build_run_parser, "batch_scp": build_scp_parser}[program](program)


def all_subcommands() -> list[list[str]]:
    """Every ``hostbatch`` subcommand that has a parser, as the words that name it."""
    words: list[list[str]] = []
    for command in COMMANDS:
        if command.name == "inventory":
            words += [["inventory", sub] for sub in INVENTORY_SUBCOMMANDS]
        elif command.name == "history":
            words += [["history"]] + [["history", sub] for sub in HISTORY_SUBCOMMANDS[1:]]
        elif command.name != "help":
            words.append([command.name])
    return words
