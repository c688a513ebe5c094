"""Shell completion: ``hostbatch completion bash|zsh|fish`` and the hidden ``__complete``.

The shell scripts are thin: on each TAB they run ``hostbatch __complete SHELL -- WORDS...``
(the words of the line up to the cursor, the last one being the word under it) and show
what it prints. All the logic lives here, so the three shells complete alike and the option
lists always come from the same parsers as ``--help`` (:mod:`hostbatch.cli.catalog`).

``__complete`` reads the inventory for host and group names (``-i`` on the line, else the
usual lookup) and never imports paramiko. It prints ``:files`` or ``:dirs`` alone when the
shell should complete paths itself, and prints nothing at all on any error: a completion
must never write a traceback into someone's prompt.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from hostbatch.cli import catalog
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import run_reporting_errors
from hostbatch.exit_status import ExitStatus

#: ``hostbatch -h``-style values that take names from the run history.
HISTORY_SHORTCUTS = ("@failed", "@ok")

#: Options whose value is a directory, and options whose value is any path.
DIR_METAVARS = frozenset({"DIR"})
PATH_METAVARS = frozenset({"FILE", "PATH", "OUT"})


@dataclass(frozen=True)
class Candidate:
    """One completion: the word, and a short description for shells that show one."""

    word: str
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """What to offer: candidates, or ``paths`` (``files``/``dirs``) for the shell to list."""

    candidates: tuple[Candidate, ...] = ()
    paths: str | None = None


class _Permissive(dict[str, str]):
    """An environment in which every variable is set: the variables a run would need
    (``sudo_password_env``) are not needed to list names."""

    def __missing__(self, key: str) -> str:
        return "unset"


def _value_after(words: Sequence[str], names: tuple[str, ...]) -> str | None:
    """The last value given to an option among ``names`` (``-i F``, ``--inventory=F``)."""
    found = None
    for index, word in enumerate(words):
        option, eq, value = word.partition("=")
        if eq and option in names and option.startswith("--"):
            found = value
        elif word in names and index + 1 < len(words):
            found = words[index + 1]
    return found


def inventory_names(words: Sequence[str], environ: Mapping[str, str]
                    ) -> tuple[list[str], list[str]]:
    """Host names and group names of the inventory the line would use; empty lists when
    there is none or it cannot be read."""
    from hostbatch.errors import HostbatchError
    from hostbatch.inventory.loader import load_inventory, locate_inventory

    explicit = _value_after(words, ("-i", "--inventory"))
    kind = _value_after(words, ("--inventory-format",)) or "auto"
    try:
        inventory = load_inventory(locate_inventory(explicit, environ), warn=lambda _: None,
                                   environ=_Permissive(environ), inventory_format=kind,
                                   insecure=True, local_user="-")
    except (HostbatchError, OSError, ValueError):
        return [], []
    groups = list(inventory.groups)
    return list(inventory.hosts), groups + ([] if "all" in groups else ["all"])


def _listed(current: str, names: Sequence[str], extra: Sequence[str] = ()) -> Reply:
    """Names for the last item of a comma list, each with the items already typed."""
    head, comma, last = current.rpartition(",")
    prefix = head + comma
    taken = set(head.split(",")) if comma else set()
    words = [prefix + name for name in [*names, *extra]
             if name.startswith(last) and name not in taken]
    return Reply(tuple(Candidate(word) for word in words))


def _option_candidates(parser: argparse.ArgumentParser, current: str) -> Reply:
    found = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        found += [Candidate(option, " ".join((action.help or "").split()))
                  for option in action.option_strings if option.startswith(current)]
    return Reply(tuple(found))


def _value_reply(action: argparse.Action, words: Sequence[str], current: str,
                 environ: Mapping[str, str]) -> Reply:
    """Candidates for the value of ``action`` (an option, or a positional argument)."""
    if action.choices is not None:
        return Reply(tuple(Candidate(str(c)) for c in action.choices
                           if str(c).startswith(current)))
    if action.dest in ("hosts", "exclude", "groups", "host"):
        hosts, groups = inventory_names(words, environ)
        if action.dest == "groups":
            return _listed(current, groups)
        if action.dest == "host":
            return _listed(current, hosts)
        return _listed(current, hosts, HISTORY_SHORTCUTS)
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if action.dest == "remote":
        return Reply()  # a path on the hosts: nothing here to list
    if metavar in DIR_METAVARS:
        return Reply(paths="dirs")
    if metavar in PATH_METAVARS or action.dest in ("file", "local"):
        return Reply(paths="files")
    return Reply()


def _starting(words: Sequence[str], current: str) -> Reply:
    return Reply(tuple(Candidate(word) for word in words if word.startswith(current)))


def _subcommand_reply(plain: Sequence[str], current: str) -> Reply | None:
    """Subcommand names when the word under the cursor is one (``hostbatch <TAB>``,
    ``hostbatch inventory <TAB>``, ``hostbatch help history <TAB>``), else None."""
    if current.startswith("-"):
        return None
    if not plain:
        return Reply(tuple(Candidate(c.name, c.summary) for c in catalog.COMMANDS
                           if c.name.startswith(current)))
    asked = list(plain[1:]) if plain[0] == "help" else list(plain)
    if plain[0] == "help" and not asked:
        return _starting([c.name for c in catalog.COMMANDS if c.name != "help"], current)
    if asked == ["inventory"]:
        return _starting(catalog.INVENTORY_SUBCOMMANDS, current)
    if asked == ["history"]:
        return _starting(catalog.HISTORY_SUBCOMMANDS[1:], current)
    return Reply() if plain[0] == "help" else None


def _parser_for(before: Sequence[str]) -> argparse.ArgumentParser | None:
    """The parser of the command on the line (``batch_run``, ``hostbatch inventory lint``)."""
    program = os.path.basename(before[0])
    if program in ("batch_run", "batch_scp"):
        return catalog.program_parser(program)
    plain = [w for w in before[1:] if not w.startswith("-")]
    return catalog.subcommand_parser(plain[:2]) if plain else None


def complete(words: Sequence[str], environ: Mapping[str, str]) -> Reply:
    """What to offer for the last of ``words`` (the word under the cursor, maybe empty)."""
    words = _joined(words)
    if len(words) < 2:
        return Reply()
    *before, current = words
    if os.path.basename(before[0]) == "hostbatch":
        reply = _subcommand_reply([w for w in before[1:] if not w.startswith("-")], current)
        if reply is not None:
            return reply
    parser = _parser_for(before)
    if parser is None:
        return Reply()
    previous = parser._option_string_actions.get(before[-1])
    if previous is not None and previous.nargs != 0:
        return _value_reply(previous, before, current, environ)
    if current.startswith("-"):
        return _option_candidates(parser, current)
    positionals = [a for a in parser._actions
                   if not a.option_strings and a.nargs != argparse.REMAINDER]
    if positionals:
        return _value_reply(positionals[0], before, current, environ)
    return Reply()


def _joined(words: Sequence[str]) -> list[str]:
    """bash splits ``--inventory=FILE`` at ``=``: put such options back together."""
    out: list[str] = []
    for word in words:
        if out and (word == "=" or out[-1].endswith("=")) and out[-1].startswith("--"):
            out[-1] += word
        else:
            out.append(word)
    return out


def format_reply(reply: Reply, shell: str) -> Iterator[str]:
    """The lines ``__complete`` prints for ``shell``."""
    if reply.paths:
        yield f":{reply.paths}"
        return
    for candidate in reply.candidates:
        description = candidate.description[:70]
        if shell == "zsh":
            word = candidate.word.replace("\\", "\\\\").replace(":", "\\:")
            yield f"{word}:{description}" if description else word
        elif shell == "fish" and description:
            yield f"{candidate.word}\t{description}"
        else:
            yield candidate.word


def script(shell: str) -> str:
    """The completion script for ``shell`` (``bash``, ``zsh`` or ``fish``)."""
    return (resources.files("hostbatch.cli") / "shells" / f"hostbatch.{shell}").read_text(
        encoding="utf-8")


def complete_main(argv: Sequence[str], env: Environment) -> int:
    """``hostbatch __complete SHELL -- WORDS...``: always exit 0, print nothing on error."""
    try:
        shell, separator, *words = argv
        if separator != "--":
            return ExitStatus.USAGE
        lines = list(format_reply(complete(words, env.environ), shell))
    except Exception:  # a prompt is no place for a traceback
        return ExitStatus.OK
    env.stdout.write("".join(f"{line}\n" for line in lines).encode())
    return ExitStatus.OK


def completion_main(argv: Sequence[str], env: Environment,
                    prog: str = "hostbatch completion") -> int:
    """``hostbatch completion SHELL``: the script on stdout."""
    parser = catalog.build_completion_parser(prog)

    def body() -> int:
        args = parser.parse_args(list(argv))
        if args.help or args.shell is None:
            (env.stdout if args.help else env.stderr).write(parser.format_help().encode())
            return ExitStatus.OK if args.help else ExitStatus.USAGE
        env.stdout.write(script(args.shell).encode())
        return ExitStatus.OK

    return run_reporting_errors(prog, argv, env.stdout, env.stderr, body)
