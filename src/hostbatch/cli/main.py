"""Entry points: ``batch_run``, ``batch_scp``, ``hostbatch run|scp``; errors become exit
statuses in :func:`hostbatch.cli.failures.run_reporting_errors`.

``main(argv, env)`` functions return an exit status and never exit; the console scripts
(:mod:`hostbatch.cli.scripts`) are the only callers of ``sys.exit``. Expected errors print one
line; anything else is a bug and prints one line plus a hint to rerun with ``--debug`` (which
shows the traceback).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hostbatch import __version__
from hostbatch.actions import Action
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import error_line, make_warn, run_reporting_errors
from hostbatch.cli.options import build_run_parser, build_scp_parser, check_output_options
from hostbatch.cli.parser import Parser, answer_help_or_version
from hostbatch.cli.selecting import select_hosts, settle_on_terminal
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.errors import UsageError, excerpt
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import HostSpec
from hostbatch.render.output import SafeStream
from hostbatch.selection import NOTHING_SELECTED

if TYPE_CHECKING:
    from hostbatch.cli.arguments import RunOptions


#: Performs an action on the selected hosts and returns the exit status.
Perform = Callable[[list[HostSpec], Action, "RunOptions", Environment, SafeStream,
                    SafeStream, WorkerLauncher | None], int]



def _run_checks(args: argparse.Namespace) -> Callable[[], Action]:
    from hostbatch.cli import run

    if not args.list:
        run.check_arguments(args)  # a missing command is reported before the inventory is read
    return lambda: run.action_from(args)


def _scp_checks(args: argparse.Namespace) -> Callable[[], Action]:
    from hostbatch.cli import scp

    if not args.list:
        scp.check_arguments(args)
    return lambda: scp.action_from(args)


def routes_text(hosts: list[HostSpec]) -> str:
    """``--list --by-relay``: one line per route (``relay1, relay2: a b``; ``direct: c``), in
    the order of each route's first host."""
    routes: dict[str, list[str]] = {}
    for spec in hosts:
        route = ", ".join(relay.name for relay in spec.relays) or "direct"
        routes.setdefault(route, []).append(spec.name)
    return "".join(f"{route}: {' '.join(names)}\n" for route, names in routes.items())


def _first_set(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def _main(argv: Sequence[str], env: Environment, prog: str,
          build_parser: Callable[[str], Parser],
          check: Callable[[argparse.Namespace], Callable[[], Action]],
          launcher: WorkerLauncher | None, act: Perform | None = None) -> int:
    """Shared flow: parse, check, load the inventory, select hosts, act, report.

    ``act`` performs the action on the selected hosts instead of the run of
    ``batch_run``/``batch_scp`` (confirmation, inputs, renderers) and returns the exit status.
    """
    from hostbatch.cli.arguments import run_options, with_user_config
    from hostbatch.cli.confirm import confirm
    from hostbatch.cli.execute import execute
    from hostbatch.cli.inputs import prepare
    from hostbatch.prepare import resolve_settings

    stdout, stderr = SafeStream(env.stdout), SafeStream(env.stderr)

    warn = make_warn(prog, stderr)

    def body() -> int:
        parser = build_parser(prog)
        args = parser.parse_args(list(argv))
        if answer_help_or_version(parser, args, stdout):
            return ExitStatus.OK
        env.environ = dict(env.environ)  # the config file's color = never sets NO_COLOR
        args = with_user_config(parser, list(argv), args, env.environ, env.home)
        check_output_options(args)
        options = run_options(args)
        picked = options.selection
        selection = picked.selection
        make_action = check(args)
        if selection.is_empty():
            raise UsageError(NOTHING_SELECTED)
        inventory, hosts = select_hosts(picked, env, warn)
        if picked.by_relay and not picked.list_only:
            raise UsageError("--by-relay goes with --list")
        if picked.list_only and not picked.by_relay:
            stdout.write("".join(f"{spec.name}\n" for spec in hosts).encode())
            return ExitStatus.OK
        hosts = resolve_settings(inventory, hosts, options.hosts, env.environ, warn)
        if picked.list_only:
            stdout.write(routes_text(hosts).encode())
            return ExitStatus.OK
        action = make_action()
        if act is not None:
            return act(hosts, action, options, env, stdout, stderr, launcher)
        confirm(len(hosts), action, _first_set(options.confirm_over, inventory.confirm_over),
                env)
        hosts = settle_on_terminal(hosts, options.hosts, env, inventory.path, warn)
        inputs = prepare(action, options.inputs, env)
        return execute(hosts, action, options, env, stdout, stderr, launcher, inputs)

    return run_reporting_errors(prog, argv, stdout, stderr, body)


def run_main(argv: Sequence[str], env: Environment, prog: str = "batch_run", *,
             launcher: WorkerLauncher | None = None) -> int:
    """``batch_run``: run a command on the selected hosts (with hosts but no command, on a
    terminal: the console, as clush and pdsh do)."""
    if env.stdin_isatty and env.stdout_isatty:
        from hostbatch.cli.console import console_from_run

        status = console_from_run(argv, env, prog, launcher)
        if status is not None:
            return status
    return _main(argv, env, prog, build_run_parser, _run_checks, launcher)


def scp_main(argv: Sequence[str], env: Environment, prog: str = "batch_scp", *,
             launcher: WorkerLauncher | None = None) -> int:
    """``batch_scp``: put or get files on the selected hosts."""
    return _main(argv, env, prog, build_scp_parser, _scp_checks, launcher)


def keyscan_main(argv: Sequence[str], env: Environment, prog: str = "hostbatch keyscan", *,
                 launcher: WorkerLauncher | None = None) -> int:
    """``hostbatch keyscan``: fetch the selected hosts' keys and record the new ones."""
    from hostbatch.cli import keyscan

    return _main(argv, env, prog, keyscan.build_parser, keyscan.checks, launcher,
                 keyscan.perform)


def inventory_main(argv: Sequence[str], env: Environment, prog: str = "hostbatch inventory", *,
                   launcher: WorkerLauncher | None = None) -> int:
    """``hostbatch inventory SUBCOMMAND``: tools that read an inventory and never connect."""
    from hostbatch.cli import inventory

    status: int = inventory.main(argv, env, prog)
    return status


def help_main(argv: Sequence[str], env: Environment, prog: str = "hostbatch help", *,
              launcher: WorkerLauncher | None = None) -> int:
    """``hostbatch help [COMMAND [SUBCOMMAND]]``: that command's ``--help``."""
    from hostbatch.cli.catalog import COMMANDS, hostbatch_usage

    if not argv or argv[0] == "help":
        env.stdout.write(hostbatch_usage().encode())
        return ExitStatus.OK
    if argv[0] not in {command.name for command in COMMANDS}:
        env.stderr.write(error_line(prog, f"unknown command {excerpt(argv[0])} "
                                          "(see hostbatch --help)"))
        return ExitStatus.USAGE
    named = argv[:2] if argv[0] in ("inventory", "history") else argv[:1]
    return hostbatch_main([*named, "--help"], env)


def hostbatch_main(argv: Sequence[str], env: Environment, *,
                   launcher: WorkerLauncher | None = None) -> int:
    """``hostbatch COMMAND ...``: dispatch to a subcommand."""
    if not argv or argv[0] == "--help":
        from hostbatch.cli.catalog import hostbatch_usage

        (env.stdout if argv else env.stderr).write(hostbatch_usage().encode())
        return ExitStatus.OK if argv else ExitStatus.USAGE
    if argv[0] == "--version":
        env.stdout.write(f"hostbatch {__version__}\n".encode())
        return ExitStatus.OK
    if argv[0] == "__complete":  # hidden: what the completion scripts run on each TAB
        from hostbatch.cli.completion import complete_main

        return complete_main(argv[1:], env)
    if argv[0] == "history":
        from hostbatch.cli.history import history_main

        return history_main(argv[1:], env)
    if argv[0] in ("man", "completion"):
        from hostbatch.cli.completion import completion_main
        from hostbatch.cli.man import man_main

        show = man_main if argv[0] == "man" else completion_main
        return show(argv[1:], env, f"hostbatch {argv[0]}")
    if argv[0] == "console":
        from hostbatch.cli.console import console_main

        return console_main(argv[1:], env, "hostbatch console")
    if argv[0] == "relay":
        from hostbatch.cli.relay import relay_main

        return relay_main(argv[1:], env)
    commands = {"run": run_main, "scp": scp_main, "keyscan": keyscan_main,
                "inventory": inventory_main, "help": help_main}
    command = commands.get(argv[0])
    if command is None:
        env.stderr.write(error_line("hostbatch", f"unknown command {excerpt(argv[0])} "
                                                 "(see hostbatch --help)"))
        return ExitStatus.USAGE
    return command(argv[1:], env, f"hostbatch {argv[0]}", launcher=launcher)
