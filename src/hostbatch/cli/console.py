"""``hostbatch console``, and ``batch_run`` with hosts but no command on a terminal.

The command line is read here (the common selection and connection options, ``-b``,
``--sudo``, ``--timeout``, ``--idle-timeout``, the history options); the hosts are selected
and finished as for a run (:mod:`.selecting`); then :class:`hostbatch.console.session.Console`
takes over the terminal. The console needs a terminal on stdin and stdout: without one this
is a usage error (exit 2), as ``batch_run`` without a command has always been.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from hostbatch.cli.arguments import run_options
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import make_warn, run_reporting_errors
from hostbatch.cli.options import (
    add_common_options,
    add_history_options,
    check_output_options,
    positive_seconds,
)
from hostbatch.cli.parser import Parser, answer_help_or_version
from hostbatch.cli.selecting import history_selection, select_hosts, settle_on_terminal
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.errors import UsageError
from hostbatch.exit_status import ExitStatus, exit_status_help
from hostbatch.inventory.model import HostSpec, Inventory
from hostbatch.render.output import SafeStream
from hostbatch.selection import NOTHING_SELECTED

#: ``--idle-timeout`` default: half an hour without a line typed ends the session.
DEFAULT_IDLE_TIMEOUT = 1800.0

EPILOG = """\
Connects once to every selected host, then runs each line typed on all of them over the open
connections (one new channel per command, no new handshake). Special commands start with ':'
(:help lists them): :gather (=), :hosts (@), :add HOSTS (+HOSTS), :remove HOSTS (-HOSTS),
:failed, :ok, :all, :sudo, :timeout S, !CMD, :history, :quit (or Ctrl-D). Ctrl-C stops the
running command on every host and keeps the connections.

Every command is recorded in the run history (see 'hostbatch history'); the lines typed are
kept in $XDG_STATE_HOME/hostbatch/console_history. 'batch_run -h HOSTS' with no command
starts the console too when stdin and stdout are a terminal.

"""

CONSOLE_STATUSES = {
    ExitStatus.OK: "the session ended (:quit, Ctrl-D, the idle timeout, SIGTERM or SIGHUP)",
    ExitStatus.USAGE: "usage or inventory error, or no terminal: nothing was connected",
}


def build_parser(prog: str) -> Parser:
    """The parser of ``hostbatch console``."""
    parser = Parser(prog=prog, add_help=False, allow_abbrev=False,
                    description="An interactive prompt that keeps one SSH connection per "
                                "selected host open and runs each line typed on all of them.",
                    epilog=EPILOG + exit_status_help(list(CONSOLE_STATUSES), CONSOLE_STATUSES),
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser)
    console = parser.add_argument_group("console")
    console.add_argument("-b", "--gather", action="store_true",
                         help="start with gathered output (toggle with :gather or =)")
    console.add_argument("--sudo", action="store_true",
                         help="start with commands run through sudo (toggle with :sudo)")
    console.add_argument("--ask-sudo-pass", action="store_true",
                         help="with --sudo: prompt once (no echo) for the sudo password")
    console.add_argument("--timeout", type=positive_seconds, metavar="S",
                         help="kill a command on a host after S seconds (change with "
                              ":timeout S; default: none)")
    console.add_argument("--idle-timeout", type=positive_seconds, metavar="S",
                         default=DEFAULT_IDLE_TIMEOUT,
                         help="end the session after S seconds without a line typed "
                              f"(default {DEFAULT_IDLE_TIMEOUT:g})")
    console.add_argument("--debug", action="store_true",
                         help="show a traceback for internal errors")
    add_history_options(parser)
    parser.set_defaults(json=False, quiet=False, env=[])
    return parser


def console_main(argv: Sequence[str], env: Environment, prog: str = "hostbatch console", *,
                 launcher: object = None) -> int:
    """``hostbatch console``: parse, select, connect, and run the session (``launcher`` is
    not used: the console starts workers of its own kind)."""
    stdout, stderr = SafeStream(env.stdout), SafeStream(env.stderr)

    def body() -> int:
        parser = build_parser(prog)
        args = parser.parse_args(list(argv))
        if answer_help_or_version(parser, args, stdout):
            return ExitStatus.OK
        return start(args, env, prog, stdout, stderr)

    return run_reporting_errors(prog, argv, stdout, stderr, body)


def console_from_run(argv: Sequence[str], env: Environment, prog: str,
                     launcher: WorkerLauncher | None = None) -> int | None:
    """``batch_run`` with a selection and no command, on a terminal: the console.

    ``None`` when this is not that case (no terminal, a command, ``--help``, a parse
    error...): ``batch_run`` then goes on as always (a missing command is exit 2). Otherwise
    the run's early ``launcher`` (workers of the other kind) is let go.
    """
    if not (env.stdin_isatty and env.stdout_isatty):
        return None
    from hostbatch.cli.options import build_run_parser

    try:
        args = build_run_parser(prog).parse_args(list(argv))
    except UsageError:
        return None
    words = [word for word in args.words if word != "--"]
    if (args.help or args.version or args.list or args.command is not None or words
            or args.script is not None):
        return None
    if launcher is not None:
        launcher.close()
    stdout, stderr = SafeStream(env.stdout), SafeStream(env.stderr)
    return run_reporting_errors(prog, argv, stdout, stderr,
                                lambda: start(args, env, prog, stdout, stderr))


def start(args: argparse.Namespace, env: Environment, prog: str, stdout: SafeStream,
          stderr: SafeStream) -> int:
    """Select and finish the hosts, start the standing workers, run the session."""
    from hostbatch.console.command import ConsoleIO
    from hostbatch.console.session import Console, ConsoleSettings
    from hostbatch.console.terminal import Terminal, history_file
    from hostbatch.engine.standing import StandingPool
    from hostbatch.prepare import resolve_settings

    check_output_options(args)
    if args.ask_sudo_pass and not args.sudo:
        raise UsageError("--ask-sudo-pass needs --sudo")
    if not (env.stdin_isatty and env.stdout_isatty):
        raise UsageError("the console needs a terminal on stdin and stdout; to run a "
                         "command from a script, use batch_run -h HOSTS -cmd COMMAND")
    warn = make_warn(prog, stderr)
    options = run_options(args)
    if options.selection.selection.is_empty():
        raise UsageError(NOTHING_SELECTED)
    inventory, hosts = select_hosts(options.selection, env, warn)
    if options.selection.list_only:
        stdout.write("".join(f"{spec.name}\n" for spec in hosts).encode())
        return ExitStatus.OK

    def finish(chosen: list[HostSpec]) -> list[HostSpec]:
        resolved = resolve_settings(inventory, chosen, options.hosts, env.environ, warn)
        return settle_on_terminal(resolved, options.hosts, env, inventory.path, warn)

    hosts = finish(hosts)
    # Sized for every host :add may bring in (the inventory's), not only the first selection.
    pool = StandingPool(options.settings, home=env.home, host_count=len(inventory.hosts),
                        jumping=any(spec.jump_chain for spec in
                                    (*hosts, *inventory.hosts.values()))).start()
    try:
        io = ConsoleIO(env, stdout, stderr, options, pool, warn)
        terminal = Terminal(history_file(env.environ, env.home), _names(inventory), warn)
        settings = ConsoleSettings(sudo=args.sudo, env=tuple(args.env),
                                   idle_timeout=getattr(args, "idle_timeout", None)
                                   or DEFAULT_IDLE_TIMEOUT)
        console = Console(io, inventory, hosts, terminal, settings, finish,
                          lambda selection: history_selection(selection, inventory, env))
        return console.loop()
    finally:
        pool.close()


def _names(inventory: Inventory) -> Callable[[], tuple[list[str], list[str]]]:
    """What TAB completes: the inventory's host and group names."""
    hosts, groups = list(inventory.hosts), inventory.group_names()
    return lambda: (hosts, groups)
