"""Every process exit status hostbatch documents, in one enum, and the help text made from it.

It sits at the bottom layer (it imports nothing of hostbatch) so that the engine, which folds
hosts' outcomes into a status, and the CLI, which maps errors to statuses and prints ``--help``,
share one definition instead of repeating numbers and words.
"""

from __future__ import annotations

import enum
import textwrap
from collections.abc import Mapping, Sequence

#: Width of the status column in the help text: the number, then the meaning.
_COLUMN = 7
#: Help lines are wrapped at this width (argparse prints epilogs as written): the widest line
#: of the hand-written tables this replaced, so their text reads as before.
_WIDTH = 81


class ExitStatus(enum.IntEnum):
    """A process exit status; :attr:`meaning` is its one-line description for ``--help``."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitStatus:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "every host ran the command and it exited 0"
    COMMAND_FAILED = 1, "the command exited non-zero on some host"
    USAGE = 2, "usage or inventory error: nothing was run"
    UNREACHABLE = 3, ("some host was unreachable, refused, failed authentication or host-key "
                      "checking, timed out, or lost its connection (wins over 1)")
    #: sysexits.h's EX_SOFTWARE.
    INTERNAL = 70, "internal error (a bug: please report it, with the --debug output)"
    #: 128 + the signal's number, as a shell reports a process the signal killed.
    HANGUP = 129, "ended by SIGHUP (the terminal went away), as Ctrl-C ends a run"
    INTERRUPTED = 130, "interrupted by Ctrl-C (wins over all others)"
    TERMINATED = 143, ("ended by SIGTERM (timeout, a service manager), as Ctrl-C ends a run: "
                       "remote commands killed, summary printed, run recorded")


#: The statuses a run of ``batch_run``/``batch_scp`` can end with, in the order ``--help``
#: lists them (the usual ones first, the bug last).
RUN_STATUSES = (ExitStatus.OK, ExitStatus.COMMAND_FAILED, ExitStatus.USAGE,
                ExitStatus.UNREACHABLE, ExitStatus.INTERRUPTED, ExitStatus.TERMINATED,
                ExitStatus.HANGUP, ExitStatus.INTERNAL)


def exit_status_help(statuses: Sequence[ExitStatus] = RUN_STATUSES,
                     meanings: Mapping[ExitStatus, str] | None = None) -> str:
    """The ``exit status:`` section of a command's help: one entry per status, its meaning
    wrapped under itself. ``meanings`` overrides the generic words where a command's differ."""
    lines = ["exit status:"]
    for status in statuses:
        meaning = (meanings or {}).get(status, status.meaning)
        lines.append(textwrap.fill(meaning, _WIDTH,
                                   initial_indent=f"  {int(status):<{_COLUMN - 2}}",
                                   subsequent_indent=" " * _COLUMN, break_on_hyphens=False))
    return "\n".join(lines)
