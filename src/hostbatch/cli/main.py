"""Entry points: ``batch_run``, ``hostbatch run``; the one place errors become exit statuses.

``main(argv, env)`` returns an exit status and never exits; the console-script wrappers are the
only callers of ``sys.exit``. Expected errors print one line; anything else is a bug and prints
one line plus a hint to rerun with ``--debug`` (which shows the traceback).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from hostbatch import __version__
from hostbatch.cli.environment import Environment
from hostbatch.cli.options import build_run_parser
from hostbatch.engine.outcome import ExitStatus
from hostbatch.errors import HostbatchError, UsageError
from hostbatch.render.output import SafeStream

HOSTBATCH_USAGE = """\
usage: hostbatch COMMAND [OPTIONS]

commands:
  run     run a shell command on many hosts (same as batch_run)

Run 'hostbatch COMMAND --help' for the options of a command.
"""


def run_main(argv: Sequence[str], env: Environment, prog: str = "batch_run") -> int:
    """``batch_run``: parse, load the inventory, select hosts, run, report."""
    from hostbatch.cli import run as run_command
    from hostbatch.inventory.loader import load_inventory, locate_inventory
    from hostbatch.selection import Selection, select

    stdout, stderr = SafeStream(env.stdout), SafeStream(env.stderr)
    debug = "--debug" in argv

    def warn(message: str) -> None:
        stderr.write(f"{prog}: warning: {message}\n".encode())
        stderr.flush()

    try:
        parser = build_run_parser(prog)
        args = parser.parse_args(list(argv))
        if args.help:
            stdout.write(parser.format_help().encode())
            return ExitStatus.OK
        if args.version:
            stdout.write(f"hostbatch {__version__}\n".encode())
            return ExitStatus.OK
        selection = Selection(args.hosts, args.groups, args.exclude)
        if not args.list:
            run_command.command_text(args)  # a missing command is a usage error, checked first
        if selection.is_empty():
            raise UsageError("no hosts selected: give -h HOSTS and/or -g GROUPS "
                             "(-g all for every host)")
        inventory = load_inventory(locate_inventory(args.inventory, env.environ), warn=warn)
        hosts = select(inventory, selection, warn=warn)
        if args.list:
            stdout.write("".join(f"{spec.name}\n" for spec in hosts).encode())
            stdout.flush()
            return ExitStatus.OK
        return run_command.execute(hosts, args, env, stderr, stdout)
    except HostbatchError as exc:
        stderr.write(f"{prog}: error: {exc}\n".encode())
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        stderr.write(f"{prog}: interrupted\n".encode())
        return ExitStatus.INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only on request
        if debug:
            stderr.write(traceback.format_exc().encode())
        stderr.write(f"{prog}: internal error: {type(exc).__name__}: {exc} "
                     "(rerun with --debug for a traceback)\n".encode())
        return 70  # EX_SOFTWARE
    finally:
        stdout.flush()
        stderr.flush()


def hostbatch_main(argv: Sequence[str], env: Environment) -> int:
    """``hostbatch COMMAND ...``: dispatch to a subcommand."""
    if not argv or argv[0] in ("--help", "help"):
        env.stdout.write(HOSTBATCH_USAGE.encode())
        return ExitStatus.OK if argv else ExitStatus.USAGE
    if argv[0] == "--version":
        env.stdout.write(f"hostbatch {__version__}\n".encode())
        return ExitStatus.OK
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run_main(rest, env, prog="hostbatch run")
    env.stderr.write(f"hostbatch: error: unknown command {command!r} (see hostbatch --help)\n"
                     .encode())
    return ExitStatus.USAGE


def batch_run() -> None:
    """Console script ``batch_run``."""
    sys.exit(run_main(sys.argv[1:], Environment()))


def hostbatch() -> None:
    """Console script ``hostbatch``."""
    sys.exit(hostbatch_main(sys.argv[1:], Environment()))
