"""Run an action on the selected hosts with the renderers the options ask for."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hostbatch.actions import Action, GetFiles, PutFiles, RunInput
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import make_warn
from hostbatch.engine.events import Event
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.errors import UsageError
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import HostSpec
from hostbatch.render import Renderer
from hostbatch.render.jsonl import JsonRenderer
from hostbatch.render.lines import LineRenderer
from hostbatch.render.output import SafeStream, use_color
from hostbatch.render.summary import write_summary
from hostbatch.rollout import RolloutPolicy
from hostbatch.settings import RunSettings

if TYPE_CHECKING:  # rich is imported only when a display is shown
    from hostbatch.history.recorder import HistoryRecorder
    from hostbatch.render.progress import RunProgressRenderer, TransferProgressRenderer


def settings_from(args: argparse.Namespace) -> RunSettings:
    """Run settings from the parsed arguments."""
    return RunSettings(
        forks=args.forks,
        retries=args.retries,
        connect_timeout=args.connect_timeout,
        command_timeout=args.timeout,
        accept_new=args.accept_new,
        workers=args.workers,
        rollout=rollout_from(args),
    )


def rollout_from(args: argparse.Namespace) -> RolloutPolicy:
    """The ``--canary``/``--batch``/``--max-fail`` rules."""
    return RolloutPolicy(canary=args.canary or 0, batch=args.batch, max_fail=args.max_fail)


def _streams_lines(args: argparse.Namespace) -> bool:
    """True when output lines go to the terminal as they arrive (the default line mode)."""
    return not (args.quiet or getattr(args, "gather", False) or getattr(args, "diff", False)
                or args.json)


def _file_renderer(args: argparse.Namespace, hosts: list[HostSpec],
                   warn: Callable[[str], None]) -> Renderer | None:
    """``-o``/``-e``: directories made (or refused, exit 2) here, before anything connects."""
    outdir, errdir = getattr(args, "outdir", None), getattr(args, "errdir", None)
    if outdir is None and errdir is None:
        return None
    from hostbatch.render.files import HostFilesRenderer, prepare_dir

    bad = [spec.name for spec in hosts if spec.name in (".", "..")]
    if bad:
        raise UsageError(f"host name {bad[0]!r} cannot be a file name for -o/-e")
    return HostFilesRenderer(prepare_dir(outdir, "-o") if outdir is not None else None,
                             prepare_dir(errdir, "-e") if errdir is not None else None,
                             warn=warn)


def _progress_renderer(action: Action, env: Environment, hosts: int,
                       color: bool) -> TransferProgressRenderer | RunProgressRenderer:
    """The live display on stderr (a terminal): transfer bars for copies, else one line."""
    from hostbatch.render.progress import RunProgressRenderer, TransferProgressRenderer

    if isinstance(action, PutFiles):
        total = sum(e.size for e in action.entries) * hosts
        return TransferProgressRenderer(env.stderr, total_bytes=total, hosts=hosts, color=color)
    if isinstance(action, GetFiles):
        return TransferProgressRenderer(env.stderr, total_bytes=None, hosts=hosts, color=color)
    return RunProgressRenderer(env.stderr, hosts=hosts, color=color)


def make_renderers(args: argparse.Namespace, env: Environment, stdout: SafeStream,
                   stderr: SafeStream, action: Action, hosts: list[HostSpec],
                   warn: Callable[[str], None]) -> list[Renderer]:
    """The renderers for this run's output mode.

    On a terminal, a copy gets a live transfer display on stderr, and a command whose lines
    are not streamed (gather, diff, quiet, JSON into a file) a live progress line. Lines bound
    for that terminal are then printed through the display, so they scroll above it.
    """
    color_stdout = use_color(bool(env.stdout_isatty), env.environ)
    color_stderr = use_color(bool(env.stderr_isatty), env.environ)
    renderers: list[Renderer] = []
    files = _file_renderer(args, hosts, warn)
    if files is not None:
        renderers.append(files)
    copying = isinstance(action, PutFiles | GetFiles)
    json_to_terminal = args.json and env.stdout_isatty
    if env.stderr_isatty and not json_to_terminal and (copying or not _streams_lines(args)):
        from hostbatch.render.progress import ConsoleStream

        progress = _progress_renderer(action, env, len(hosts), color_stderr)
        stderr = SafeStream(ConsoleStream(progress.console))  # type: ignore[arg-type]
        if env.stdout_isatty:
            stdout = stderr
        # First, so it is stopped before a gathered report is printed.
        renderers.insert(0, progress)
    if args.json:
        renderers.append(JsonRenderer(stdout))
    elif getattr(args, "gather", False) or getattr(args, "diff", False):
        from hostbatch.render.diff import DiffRenderer
        from hostbatch.render.gather import GroupedRenderer

        kind = DiffRenderer if args.diff else GroupedRenderer
        renderers.append(kind(stdout, stderr, gather_stderr=args.gather_stderr,
                              color_stdout=color_stdout, color_stderr=color_stderr,
                              addresses={spec.name: spec.hostname for spec in hosts}))
    elif not args.quiet:
        renderers.append(LineRenderer(stdout, stderr, color_stdout=color_stdout,
                                      color_stderr=color_stderr))
    return renderers


def execute(hosts: list[HostSpec], action: Action, args: argparse.Namespace, env: Environment,
            stdout: SafeStream, stderr: SafeStream,
            launcher: WorkerLauncher | None = None,
            inputs: RunInput | None = None) -> ExitStatus:
    """Perform ``action`` on ``hosts``, render every event, print the summary."""
    from hostbatch import api

    warn = make_warn("hostbatch", stderr, label=None)

    renderers = make_renderers(args, env, stdout, stderr, action, hosts, warn)

    recorder = None if args.no_history else start_recorder(hosts, action, args, env, warn)
    handlers = [renderer.handle for renderer in renderers]
    if recorder is not None:
        handlers.append(recorder.handle)

    def on_event(event: Event) -> None:
        for handle in handlers:
            handle(event)

    started = time.monotonic()
    try:
        result = api.run(hosts, action, settings_from(args), on_event=on_event, warn=warn,
                         home=env.home, launcher=launcher, inputs=inputs)
    except BaseException as exc:
        for renderer in renderers:
            renderer.close()
        if recorder is not None:  # keep what was recorded, marked as broken off
            recorder.finish(None, interrupted=isinstance(exc, KeyboardInterrupt),
                            elapsed=time.monotonic() - started)
        raise
    elapsed = time.monotonic() - started
    for renderer in renderers:
        renderer.close()
    write_summary(stderr, result, elapsed, color=use_color(bool(env.stderr_isatty), env.environ))
    if recorder is not None:
        recorder.finish(result.exit_status, interrupted=result.interrupted, elapsed=elapsed)
    return result.exit_status


def start_recorder(hosts: list[HostSpec], action: Action, args: argparse.Namespace,
                   env: Environment, warn: Callable[[str], None]) -> HistoryRecorder | None:
    """Record this run in the history (``None`` if the history cannot be written: warned)."""
    from hostbatch.history.recorder import HistoryRecorder
    from hostbatch.history.store import history_path

    selection = {"hosts": args.hosts, "groups": args.groups, "exclude": args.exclude}
    return HistoryRecorder.start(history_path(env.environ, env.home), action,
                                 hosts, selection, args.inventory,
                                 cap=args.history_cap, warn=warn)
