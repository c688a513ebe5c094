"""The argument parser every hostbatch command uses: errors become one-line usage errors
(exit 2) that point the way, instead of argparse's usage dump and exit."""

from __future__ import annotations

import argparse
import difflib
from typing import NoReturn

from hostbatch.cli.failures import one_line
from hostbatch.errors import ECHO_LIMIT, UsageError
from hostbatch.render.output import SafeStream


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting.

    argparse quotes what it could not use in full (``unrecognized arguments: A B ...``, an
    invalid choice's value, a type function's message): the message is cut to
    :data:`PARSE_ECHO_LIMIT` characters, so a pasted blob in argv gives a short line that still
    ends with where to look.
    """

    def error(self, message: str) -> NoReturn:
        hint = self._hint(message)
        raise UsageError(f"{one_line(message, PARSE_ECHO_LIMIT)}{hint} (see {self.prog} --help)")

    def _hint(self, message: str) -> str:
        """For an unknown option: the hostbatch way of a pssh/clush habit, else the nearest
        real option."""
        if not message.startswith("unrecognized arguments: "):
            return ""
        words = message.removeprefix("unrecognized arguments: ").split()
        unknown = next((word for word in words if word.startswith("-")), None)
        if unknown is None:
            return ""
        name = unknown.split("=", 1)[0]
        habit = HABITS.get(name)
        if habit is not None:
            return f"; {habit}"
        known = [option for action in self._actions for option in action.option_strings
                 if option.startswith("--")]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""


#: Options of pssh, clush and pdsh that hostbatch spells otherwise, with the pointer shown
#: when one is given.
HABITS = {
    "-w": "for hosts, use -h HOSTS (inventory hosts) or -H HOSTS (any host), as clush -w",
    "-t": "for time limits, use --timeout S (the command) or --connect-timeout S (the "
          "connection), as pssh -t",
    "-p": "for parallelism, use -f N (hosts at once), as pssh -p",
    "-P": "output is streamed as it arrives by default (-b gathers it), as pssh -P",
    "-A": "to be asked a password, use --ask-pass, as pssh -A",
    "-I": "stdin is sent to every host when it is not a terminal, as pssh -I",
    "-B": "to gather stderr too, use -b --gather-stderr, as clush -B",
    "--dest": "name the remote path with -remote PATH, as clush --dest",
}

#: The most characters of an argparse message :meth:`Parser.error` keeps: the option's name
#: and two quoted excerpts fit.
PARSE_ECHO_LIMIT = 3 * ECHO_LIMIT


def answer_help_or_version(parser: argparse.ArgumentParser, args: argparse.Namespace,
                           stdout: SafeStream) -> bool:
    """Write ``--help`` or ``--version`` to ``stdout`` when one was asked for; whether it was."""
    from hostbatch import __version__

    if args.help:
        stdout.write(parser.format_help().encode())
    elif args.version:
        stdout.write(f"hostbatch {__version__}\n".encode())
    return bool(args.help or args.version)
