"""``hostbatch inventory SUBCOMMAND``: tools that read an inventory and never connect.

Each subcommand is a ``main(argv, env) -> exit status`` function registered in
:data:`SUBCOMMANDS`; adding one is one entry there and one line of :data:`USAGE`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from hostbatch.cli.environment import Environment
from hostbatch.cli.explain import explain_main
from hostbatch.cli.failures import error_line, make_warn, run_reporting_errors
from hostbatch.cli.options import add_inventory_options
from hostbatch.cli.parser import Parser
from hostbatch.errors import HostbatchError, excerpt
from hostbatch.exit_status import ExitStatus
from hostbatch.render.output import SafeStream

Subcommand = Callable[[Sequence[str], Environment], int]

USAGE = """\
usage: hostbatch inventory SUBCOMMAND [OPTIONS]

subcommands:
  lint     check the whole inventory and list every problem
  convert  write the inventory (e.g. an Ansible INI file) as a hostbatch INI inventory
  explain  show one host's effective settings and where each came from

Run 'hostbatch inventory SUBCOMMAND --help' for its options.
"""

LINT_EPILOG = """\
One problem a line on stdout: FILE: [SECTION] KEY: error|warning: MESSAGE (line N).
Errors: unreadable lines, unknown or repeated sections and keys, bad values, undefined or
cyclic child groups, passwords in a file that group or others can read. Warnings: hosts
sharing one address and port, hosts in no group, groups with no hosts, Ansible variables
hostbatch ignores, a comment after an unquoted [x:vars] value (Ansible keeps it in the value),
a group member with no [host:] section named like a host that has one (a typo?).

exit status:
  0  no errors (warnings are allowed unless --strict)
  1  errors found (or warnings, with --strict)
  2  the inventory cannot be read, or a usage error"""

CONVERT_EPILOG = """\
Writes to stdout, or with -o FILE atomically (temporary file + rename) with mode 0600 when
the inventory holds passwords, else 0644. Settings every host shares go to [defaults].

exit status: 0 written, 2 the inventory cannot be read or converted, or a usage error"""


def _parser(prog: str, description: str, epilog: str) -> Parser:
    parser = Parser(prog=prog, add_help=False, allow_abbrev=False, description=description,
                    epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help", action="store_true", help="show this help and exit")
    parser.add_argument("--debug", action="store_true",
                        help="show a traceback for internal errors")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="the inventory (default: as for -i)")
    add_inventory_options(parser)
    return parser


def _inventory_path(args: argparse.Namespace, env: Environment) -> Path:
    from hostbatch.inventory.loader import locate_inventory

    return locate_inventory(args.file or args.inventory, env.environ)


def lint_main(argv: Sequence[str], env: Environment,
              prog: str = "hostbatch inventory lint") -> int:
    """``hostbatch inventory lint [FILE]``."""
    from hostbatch.inventory.lint import lint_inventory

    stdout, stderr = SafeStream(env.stdout), SafeStream(env.stderr)
    parser = _parser(prog, "Check a whole inventory and list every problem.", LINT_EPILOG)
    parser.add_argument("--strict", action="store_true", help="fail on warnings too")
    args = parser.parse_args(list(argv))
    if args.help:
        stdout.write(parser.format_help().encode())
        return ExitStatus.OK
    path = _inventory_path(args, env)
    report = lint_inventory(path, args.inventory_format, env.environ)
    stdout.write("".join(p.format(str(path)) + "\n" for p in report.problems).encode())
    errors, warnings = len(report.errors), len(report.warnings)
    stderr.write(f"{prog}: {path}: {errors} error(s), {warnings} warning(s)\n".encode())
    failed = errors or (args.strict and warnings)
    return ExitStatus.COMMAND_FAILED if failed else ExitStatus.OK


def convert_main(argv: Sequence[str], env: Environment,
                 prog: str = "hostbatch inventory convert") -> int:
    """``hostbatch inventory convert [FILE] [-o OUT]``."""
    from hostbatch.atomic import write_atomically
    from hostbatch.inventory.convert import (
        UNSET_USER,
        has_secrets,
        to_hostbatch_ini,
        verify,
    )
    from hostbatch.inventory.loader import load_inventory

    stdout, stderr = SafeStream(env.stdout), SafeStream(env.stderr)
    parser = _parser(prog, "Write the inventory as a hostbatch INI inventory.", CONVERT_EPILOG)
    parser.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of stdout")
    args = parser.parse_args(list(argv))
    if args.help:
        stdout.write(parser.format_help().encode())
        return ExitStatus.OK

    warn = make_warn(prog, stderr)

    path = _inventory_path(args, env)
    inventory = load_inventory(path, warn=warn, local_user=UNSET_USER,
                               inventory_format=args.inventory_format,
                               insecure=True)  # converting is how a readable file gets fixed
    text = to_hostbatch_ini(inventory, source=str(path), warn=warn)
    verify(text)
    if args.output:
        out = Path(args.output).expanduser()
        try:
            write_atomically(out, text, 0o600 if has_secrets(inventory) else 0o644)
        except OSError as exc:
            raise HostbatchError(f"cannot write {out}: {exc.strerror or exc}") from None
        stderr.write(f"{prog}: wrote {out} ({len(inventory.hosts)} hosts, "
                     f"{len(inventory.groups)} groups)\n".encode())
    else:
        stdout.write(text.encode())
    return ExitStatus.OK


#: ``hostbatch inventory`` subcommands by name.
SUBCOMMANDS: dict[str, Subcommand] = {"lint": lint_main, "convert": convert_main,
                                      "explain": explain_main}


def main(argv: Sequence[str], env: Environment, prog: str = "hostbatch inventory") -> int:
    """Dispatch to a subcommand; whole-run errors print one line and return 2."""
    if not argv or argv[0] in ("--help", "help"):
        (env.stdout if argv else env.stderr).write(USAGE.encode())
        return ExitStatus.OK if argv else ExitStatus.USAGE
    command = SUBCOMMANDS.get(argv[0])
    name = f"{prog} {argv[0]}"
    if command is None:
        env.stderr.write(error_line(prog, f"unknown subcommand {excerpt(argv[0])} (one of "
                                          f"{', '.join(SUBCOMMANDS)})"))
        return ExitStatus.USAGE
    return run_reporting_errors(name, argv, env.stdout, env.stderr,
                                lambda: command(argv[1:], env))

