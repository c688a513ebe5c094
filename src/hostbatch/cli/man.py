"""``hostbatch man``: man pages written from the argparse parsers that ``--help`` prints.

Each option's line and text come from the parser itself (through argparse's own help
formatter), so a man page never disagrees with ``--help``. The pages are plain roff (the
``man(7)`` macros), readable with ``man -l``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hostbatch import __version__
from hostbatch.cli import catalog
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import run_reporting_errors
from hostbatch.cli.parser import Parser
from hostbatch.errors import HostbatchError
from hostbatch.exit_status import ExitStatus

SEE_ALSO = {
    "batch_run": "batch_scp(1), hostbatch(1), ssh(1), ssh_config(5)",
    "batch_scp": "batch_run(1), hostbatch(1), scp(1), sftp(1)",
    "hostbatch": "batch_run(1), batch_scp(1), ssh(1), ssh-keyscan(1), ssh_config(5)",
}

FILES = """\
.TP
.I ./hosts.ini, ~/.config/hostbatch/hosts.ini
The inventory, when neither \\fB\\-i\\fR nor \\fB$HOSTBATCH_INVENTORY\\fR names one.
.TP
.I ~/.local/state/hostbatch/history.db
The run history (\\fB$XDG_STATE_HOME/hostbatch/history.db\\fR); each run's output is in a
file of its own beside it, in \\fBhistory\\-output/\\fR.
.TP
.I ~/.ssh/config, ~/.ssh/known_hosts
OpenSSH's client configuration and known host keys, read as ssh(1) reads them.
"""

ENVIRONMENT = """\
.TP
.B HOSTBATCH_INVENTORY
The inventory file when \\fB\\-i\\fR is not given.
.TP
.B XDG_STATE_HOME
Where the history lives (default ~/.local/state).
.TP
.B NO_COLOR
When set, nothing is coloured.
"""


def escape(text: str) -> str:
    """``text`` as roff: backslashes and hyphens escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def _verbatim(text: str) -> str:
    return ".nf\n" + escape(text.strip("\n")) + "\n.fi\n"


def _paragraphs(text: str) -> str:
    return "".join(".PP\n" + escape(" ".join(block.split())) + "\n"
                   for block in re.split(r"\n\s*\n", text.strip()) if block.strip())


def _description(parser: argparse.ArgumentParser) -> str:
    text = parser.description or ""
    raw = parser.formatter_class is argparse.RawDescriptionHelpFormatter and "\n" in text
    return _verbatim(text) if raw else _paragraphs(text)


def split_epilog(epilog: str | None) -> tuple[str, str]:
    """The epilog without its trailing ``examples:`` block, and that block's lines."""
    text = epilog or ""
    head, marker, examples = text.partition("\nexamples:\n")
    if not marker and text.startswith("examples:\n"):
        head, examples = "", text.removeprefix("examples:\n")
    return head, examples


def _options(parser: argparse.ArgumentParser, heading: str) -> str:
    """Each visible option and argument as a ``.TP`` entry, under its group's title set with
    the ``heading`` macro (``.SS`` in a page of its own, italics inside a section)."""
    formatter = parser._get_formatter()
    out = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if not actions:
            continue
        out.append(f"{heading} {escape(group.title or 'options')}\n")
        if group.description:
            out.append(_paragraphs(group.description))
        for action in actions:
            invocation = formatter._format_action_invocation(action)
            help_text = formatter._expand_help(action) if action.help else ""
            out.append(f".TP\n.B {escape(invocation)}\n{escape(' '.join(help_text.split()))}\n")
    return "".join(out)


def _usage(parser: argparse.ArgumentParser) -> str:
    lines = parser.format_usage().removeprefix("usage: ").strip().split("\n")
    return _verbatim("\n    ".join(line.strip() for line in lines))


def _header(name: str) -> str:
    return (f'.TH {name.upper()} 1 "" "hostbatch {__version__}" "User Commands"\n'
            f".SH NAME\n{escape(name)} \\- ")


def _examples(examples: str) -> str:
    return ".SH EXAMPLES\n" + _verbatim(examples) if examples.strip() else ""


def program_page(program: str) -> str:
    """The man page of ``batch_run`` or ``batch_scp``."""
    parser = catalog.program_parser(program)
    summary = (parser.description or "").split(". ")[0].rstrip(".")
    notes, examples = split_epilog(parser.epilog)
    return (_header(program) + escape(summary[:1].lower() + summary[1:]) + "\n"
            + ".SH SYNOPSIS\n" + _usage(parser)
            + ".SH DESCRIPTION\n" + _description(parser)
            + ".PP\nThe same command is available as \\fBhostbatch " + program[6:]
            + "\\fR; see hostbatch(1).\n"
            + ".SH OPTIONS\n" + _options(parser, ".SS")
            + ".SH NOTES\n" + _verbatim(notes) + _examples(examples)
            + ".SH FILES\n" + FILES + ".SH ENVIRONMENT\n" + ENVIRONMENT
            + ".SH SEE ALSO\n" + escape(SEE_ALSO[program]) + "\n")


def _subcommand_section(words: list[str]) -> str:
    parser = catalog.subcommand_parser(words)
    assert parser is not None  # every entry of all_subcommands() has a parser
    title = f".SS {escape(parser.prog)}\n"
    if words[0] in ("run", "scp"):
        return (title + f".PP\nThe same as \\fBbatch_{words[0]}\\fR; see batch_{words[0]}(1) "
                "for its options.\n")
    notes, examples = split_epilog(parser.epilog)
    body = _usage(parser) + _description(parser) + _options(parser, ".PP\n.I")
    if notes.strip():
        body += ".PP\n" + _verbatim(notes)
    if examples.strip():
        body += ".PP\nexamples:\n" + _verbatim(examples)
    return title + body


def hostbatch_page() -> str:
    """The man page of ``hostbatch``: the command list, then one section per subcommand."""
    usage = catalog.hostbatch_usage().partition("\ncommands:\n")[0]
    commands = "".join(f".TP\n.B {escape(c.name)}\n{escape(c.summary)}\n"
                       for c in catalog.COMMANDS)
    sections = "".join(_subcommand_section(words) for words in catalog.all_subcommands())
    help_section = (".SS hostbatch help\n.nf\nhostbatch help COMMAND [SUBCOMMAND]\n.fi\n"
                    ".PP\nThe help of a command, as \\fBhostbatch COMMAND \\-\\-help\\fR "
                    "prints it.\n")
    return (_header("hostbatch") + "run commands and copy files on many hosts over SSH\n"
            + ".SH SYNOPSIS\n" + _verbatim(usage.removeprefix("usage: "))
            + ".SH DESCRIPTION\n.PP\nOne entry point for every hostbatch command.\n"
            + commands + ".SH COMMANDS\n" + sections + help_section
            + _examples(catalog.HOSTBATCH_EXAMPLES.removeprefix("examples:\n"))
            + ".SH FILES\n" + FILES + ".SH ENVIRONMENT\n" + ENVIRONMENT
            + ".SH SEE ALSO\n" + escape(SEE_ALSO["hostbatch"]) + "\n")


def page(name: str) -> str:
    """The roff text of the man page ``name`` (one of :data:`catalog.MAN_PAGES`)."""
    return hostbatch_page() if name == "hostbatch" else program_page(name)


def default_man_dir() -> Path:
    """``PREFIX/share/man/man1`` of this installation: for a virtual environment, the
    directory that man(1) searches when the environment's ``bin`` is on ``PATH``."""
    return Path(sys.prefix) / "share" / "man" / "man1"


def man_main(argv: Sequence[str], env: Environment, prog: str = "hostbatch man") -> int:
    """``hostbatch man [PAGE]`` writes one page to stdout; ``--install [DIR]`` writes all."""
    parser: Parser = catalog.build_man_parser(prog)

    def body() -> int:
        args = parser.parse_args(list(argv))
        if args.help:
            env.stdout.write(parser.format_help().encode())
            return ExitStatus.OK
        if args.install is None:
            env.stdout.write(page(args.page).encode())
            return ExitStatus.OK
        target = Path(args.install).expanduser() if args.install else default_man_dir()
        for name in catalog.MAN_PAGES:
            path = target / f"{name}.1"
            try:
                target.mkdir(parents=True, exist_ok=True)
                path.write_text(page(name), encoding="utf-8")
            except OSError as exc:
                raise HostbatchError(f"cannot write {path}: {exc.strerror or exc}") from None
            env.stderr.write(f"{prog}: wrote {path}\n".encode())
        return ExitStatus.OK

    return run_reporting_errors(prog, argv, env.stdout, env.stderr, body)
