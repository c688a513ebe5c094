"""``hostbatch history``: list recorded runs, replay one (``show``), compare two (``diff``)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from hostbatch.actions import RunCommand
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import make_warn, run_reporting_errors
from hostbatch.cli.options import add_output_options, check_output_options, non_negative_int
from hostbatch.cli.parser import Parser
from hostbatch.errors import UsageError, excerpt
from hostbatch.exit_status import ExitStatus
from hostbatch.render.output import SafeStream, use_color

if TYPE_CHECKING:
    from hostbatch.history.store import HistoryStore

#: Runs listed when ``-n`` is not given.
DEFAULT_LIMIT = 20

DESCRIPTION = """\
Every batch_run and batch_scp run is recorded in $XDG_STATE_HOME/hostbatch/history.db
(default ~/.local/state/hostbatch/history.db; each run's output in a file of its own in
history-output/ beside it), unless --no-history is given.

  hostbatch history [-n N] [--json]          the newest runs, newest first
  hostbatch history show [ID] [-h HOSTS]     replay a run's output (default: the last run),
                                             in any output mode (-b, --diff, -q, --json, ...)
  hostbatch history diff ID1 ID2 [--force]   per host, what changed between two runs
  hostbatch history prune --keep N           delete all but the newest N runs

In batch_run / batch_scp, -h and -x also take @failed (the hosts that did not succeed in the
last run), @failed:ID, @ok and @ok:ID."""

DIFF_EPILOG = """\
exit status: 0 the runs are the same on every host, 1 some host differs, 2 usage error
(unknown run; different commands without --force)."""

Handler = Callable[[list[str], Environment, SafeStream, SafeStream, str], int]


def _run_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not a run id (a number)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not a run id (a number from 1)")
    return value


def _parser(prog: str, description: str, epilog: str | None = None) -> Parser:
    parser = Parser(prog=prog, add_help=False, allow_abbrev=False, description=description,
                    epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--help", action="store_true", help="show this help and exit")
    return parser


def _open(env: Environment) -> HistoryStore:
    from hostbatch.history.store import READ_BUSY_TIMEOUT, HistoryStore, history_path

    return HistoryStore.open(history_path(env.environ, env.home), create=False,
                             busy_timeout=READ_BUSY_TIMEOUT)


def printable(text: str) -> str:
    """``text`` on one line: newlines, tabs and escape characters shown as ``\\n`` etc."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# ------------------------------------------------------------------ list


def _list(argv: list[str], env: Environment, stdout: SafeStream, stderr: SafeStream,
          prog: str) -> int:
    parser = _parser(prog, DESCRIPTION)
    parser.add_argument("-n", "--limit", type=_run_id, default=DEFAULT_LIMIT, metavar="N",
                        help=f"show the newest N runs (default {DEFAULT_LIMIT})")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args(argv)
    if args.help:
        stdout.write(parser.format_help().encode())
        return ExitStatus.OK
    from hostbatch.history.store import NoHistory

    try:
        store = _open(env)
    except NoHistory:
        if not args.json:  # an empty list, as JSON: nothing at all
            stdout.write(b"no runs recorded yet\n")
        return ExitStatus.OK
    try:
        runs = store.runs(args.limit)
        damaged = [(run.id, store.output_problem(run.id)) for run in runs]
    finally:
        store.close()
    warn = make_warn("hostbatch", stderr)
    for run_id, problem in damaged:
        if problem:
            warn(f"the output of run {run_id} is damaged ({problem}); 'hostbatch history "
                 f"show {run_id}' marks what is lost")
    if args.json:
        stdout.write("".join(json.dumps(run.to_json()) + "\n" for run in runs).encode())
        return ExitStatus.OK
    table = [("ID", "STARTED", "HOSTS", "OK", "FAILED", "EXIT", "COMMAND")]
    for run in runs:
        command = run.command if run.action == "run" else f"{run.action} {run.command}"
        table.append((str(run.id), time.strftime("%Y-%m-%d %H:%M:%S",
                                                 time.localtime(run.started)),
                      str(run.host_count), str(run.ok), str(run.failed),
                      "-" if run.exit_status is None else str(run.exit_status),
                      printable(command)))
    widths = [max(len(row[n]) for row in table) for n in range(len(table[0]) - 1)]
    lines = []
    for row in table:
        cells = [cell.ljust(w) if n == 1 else cell.rjust(w)
                 for n, (cell, w) in enumerate(zip(row, widths, strict=False))]
        lines.append("  ".join([*cells, row[-1]]) + "\n")
    stdout.write("".join(lines).encode())
    return ExitStatus.OK


# ------------------------------------------------------------------ show


def _show(argv: list[str], env: Environment, stdout: SafeStream, stderr: SafeStream,
          prog: str) -> int:
    from hostbatch.cli.arguments import output_options
    from hostbatch.cli.execute import make_renderers, stderr_width
    from hostbatch.history.replay import host_specs, match_hosts, replay, replayed_result
    from hostbatch.render.summary import write_summary

    parser = _parser(prog, "Replay a recorded run's output as it was shown live, in any "
                           "output mode,\nthen its summary on stderr.")
    parser.add_argument("run", nargs="?", type=_run_id, metavar="ID",
                        help="the run (default: the last run that ended)")
    parser.add_argument("-h", "--hosts", action="append", default=[], metavar="HOSTS",
                        help="only these hosts of the run (names, globs, ranges)")
    add_output_options(parser, gather=True)
    args = parser.parse_args(argv)
    if args.help:
        stdout.write(parser.format_help().encode())
        return ExitStatus.OK
    check_output_options(args)

    warn = make_warn("hostbatch", stderr, label=None)

    store = _open(env)
    try:
        run = store.run(args.run) if args.run is not None else store.last_run()
        if run.action != "run" and (args.gather or args.diff or args.outdir or args.errdir):
            raise UsageError(f"run {run.id} is a copy: -b, --diff, -o and -e replay "
                             "commands only (as in batch_scp)")
        hosts = host_specs(store, run, match_hosts(store, run, args.hosts))
        output = output_options(args)
        renderers = make_renderers(output, env, stdout, stderr,
                                   RunCommand(run.command), hosts, warn)
        try:
            for event in replay(store, run, {spec.name for spec in hosts}):
                for renderer in renderers:
                    renderer.handle(event)
        finally:
            for renderer in renderers:
                renderer.close()
        write_summary(stderr, replayed_result(store, run, [spec.name for spec in hosts]),
                      run.elapsed or 0.0, color=use_color(bool(env.stderr_isatty), env.environ),
                      full=output.full_summary, width=stderr_width(env))
        for problem in store.problems:
            make_warn("hostbatch", stderr)(problem)
    finally:
        store.close()
    return ExitStatus.OK


# ------------------------------------------------------------------ diff


def _diff(argv: list[str], env: Environment, stdout: SafeStream, stderr: SafeStream,
          prog: str) -> int:
    from hostbatch.history.diff import diff_runs

    parser = _parser(prog, "Show, per host, what changed between two runs of the same "
                           "command: the final\nstate, a unified diff of stdout and of "
                           "stderr, and hosts that took part in only\none run.", DIFF_EPILOG)
    parser.add_argument("first", type=_run_id, metavar="ID1", help="the earlier run")
    parser.add_argument("second", type=_run_id, metavar="ID2", help="the later run")
    parser.add_argument("--force", action="store_true",
                        help="compare even if the runs ran different commands")
    if "--help" in argv:
        stdout.write(parser.format_help().encode())
        return ExitStatus.OK
    args = parser.parse_args(argv)
    store = _open(env)
    try:
        first, second = store.run(args.first), store.run(args.second)
        if (first.action, first.command) != (second.action, second.command) and not args.force:
            raise UsageError(f"runs {first.id} and {second.id} ran different commands "
                             f"({excerpt(printable(first.command))} and "
                             f"{excerpt(printable(second.command))}); "
                             "add --force to compare them anyway")
        hosts = len({row.host for run in (first, second) for row in store.hosts(run.id)})
        changed = []
        for change in diff_runs(store, first, second):
            changed.append(change.host)
            stdout.write("".join(line + "\n" for line in change.lines).encode("utf-8"))
            stdout.flush()
        for problem in store.problems:
            make_warn("hostbatch", stderr)(problem)
    finally:
        store.close()
    stderr.write(f"hostbatch: {len(changed)} of {hosts} hosts differ between runs "
                 f"{first.id} and {second.id}\n".encode())
    return ExitStatus.COMMAND_FAILED if changed else ExitStatus.OK


# ------------------------------------------------------------------ prune


def _prune(argv: list[str], env: Environment, stdout: SafeStream, stderr: SafeStream,
           prog: str) -> int:
    parser = _parser(prog, "Delete all but the newest runs from the history, then compact "
                           "the file.")
    parser.add_argument("--keep", type=non_negative_int, required="--help" not in argv, metavar="N",
                        help="how many of the newest runs to keep (0: delete every run)")
    args = parser.parse_args(argv)
    if args.help:
        stdout.write(parser.format_help().encode())
        return ExitStatus.OK
    store = _open(env)
    try:
        deleted = store.prune(args.keep)
    finally:
        store.close()
    stderr.write(f"hostbatch: deleted {deleted} run{'s' if deleted != 1 else ''}, "
                 f"kept the newest {args.keep}\n".encode())
    return ExitStatus.OK


# ------------------------------------------------------------------ dispatch

_COMMANDS: dict[str, Handler] = {"list": _list, "show": _show, "diff": _diff, "prune": _prune}


def history_main(argv: Sequence[str], env: Environment, prog: str = "hostbatch history") -> int:
    """``hostbatch history [list|show|diff|prune] ...``; ``list`` when no subcommand is named."""
    import sqlite3

    from hostbatch.history.store import history_path, unusable

    stdout, stderr = SafeStream(env.stdout), SafeStream(env.stderr)
    words = list(argv)
    name = words.pop(0) if words and words[0] in _COMMANDS else "list"

    def body() -> int:
        try:
            return _COMMANDS[name](words, env, stdout, stderr,
                                   prog if name == "list" else f"{prog} {name}")
        except (sqlite3.Error, ValueError, TypeError, KeyError, IndexError) as exc:
            # A damaged file: not a database, truncated, rows of the wrong type or shape.
            raise unusable(history_path(env.environ, env.home), exc) from None

    return run_reporting_errors(prog, words, stdout, stderr, body)
