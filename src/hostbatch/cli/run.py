"""``batch_run``: the command to run, from ``-cmd``, the words after the options, or
``--script FILE`` (the words are then the script's arguments)."""

from __future__ import annotations

import argparse
import os
import shlex

from hostbatch.actions import RunCommand
from hostbatch.errors import UsageError, clip, excerpt


def _words(args: argparse.Namespace) -> list[str]:
    words = list(args.words)
    if words and words[0] == "--":
        words = words[1:]
    return words


def command_text(args: argparse.Namespace) -> str:
    """The command from ``-cmd`` or the trailing words, never both, never empty."""
    words = _words(args)
    if args.command is not None and words:
        # `-cmd ps aux | grep sshd` reaches us as -cmd ps plus "aux": the shell split it.
        quoted = clip(shlex.quote(" ".join([args.command, *words])))
        raise UsageError(f"the command must be one argument: quote it, as in -cmd {quoted} "
                         f"(extra: {excerpt(' '.join(words))}; a | or > after it went to your "
                         "own shell)")
    command = args.command if args.command is not None else " ".join(words)
    if not command.strip():
        raise UsageError("no command given: use -cmd \"COMMAND\"")
    return command


def check_arguments(args: argparse.Namespace) -> None:
    """Everything about the command that can be checked before the inventory is read."""
    if args.ask_sudo_pass and not args.sudo:
        raise UsageError("--ask-sudo-pass needs --sudo")
    if args.script is None:
        command_text(args)
        return
    if args.command is not None:
        raise UsageError("give either --script FILE or a command, not both")
    read_script(args.script)


def read_script(path: str) -> bytes:
    """The local script's content; a missing or unreadable file is a usage error."""
    try:
        with open(path, "rb") as script:
            return script.read()
    except IsADirectoryError:
        raise UsageError(f"--script {path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"--script {path}: {exc.strerror or exc}") from None


def action_from(args: argparse.Namespace) -> RunCommand:
    """The action of a ``batch_run`` invocation."""
    env = tuple(args.env)
    if args.script is not None:
        return RunCommand("", env=env, sudo=args.sudo, script=os.path.basename(args.script),
                          script_args=tuple(_words(args)))
    return RunCommand(command_text(args), env=env, sudo=args.sudo)
