"""``batch_run``: the command to run, from ``-cmd`` or the words after the options."""

from __future__ import annotations

import argparse

from hostbatch.engine.jobs import RunCommand
from hostbatch.errors import UsageError


def command_text(args: argparse.Namespace) -> str:
    """The command from ``-cmd`` or the trailing words, never both, never empty."""
    words = list(args.words)
    if words and words[0] == "--":
        words = words[1:]
    if args.command is not None and words:
        raise UsageError(f"give the command once, with -cmd or after the options, not both "
                         f"(extra: {' '.join(words)!r})")
    command = args.command if args.command is not None else " ".join(words)
    if not command.strip():
        raise UsageError("no command given: use -cmd \"COMMAND\"")
    return command


def action_from(args: argparse.Namespace) -> RunCommand:
    """The action of a ``batch_run`` invocation."""
    return RunCommand(command_text(args))
