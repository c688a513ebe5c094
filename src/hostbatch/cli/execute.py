"""Run an action on the selected hosts with the renderers the options ask for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hostbatch.actions import Action, GetFiles, PutFiles, RunInput
from hostbatch.cli.arguments import OutputOptions, RunOptions
from hostbatch.cli.environment import Environment
from hostbatch.cli.failures import make_warn
from hostbatch.engine.events import Event
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.engine.memory import keep_output_blocks
from hostbatch.errors import UsageError
from hostbatch.exit_status import ExitStatus
from hostbatch.inventory.model import HostSpec
from hostbatch.render import Renderer
from hostbatch.render.jsonl import JsonRenderer
from hostbatch.render.lines import LineRenderer
from hostbatch.render.output import SafeStream, line_width, use_color
from hostbatch.render.summary import write_summary

if TYPE_CHECKING:  # rich is imported only when a display is shown
    from hostbatch.history.recorder import HistoryRecorder
    from hostbatch.render.progress import RunProgressRenderer, TransferProgressRenderer


def _file_renderer(output: OutputOptions, hosts: list[HostSpec],
                   warn: Callable[[str], None]) -> Renderer | None:
    """``-o``/``-e``: directories made (or refused, exit 2) here, before anything connects."""
    outdir, errdir = output.outdir, output.errdir
    if outdir is None and errdir is None:
        return None
    from hostbatch.render.files import HostFilesRenderer, prepare_dir

    bad = [spec.name for spec in hosts if spec.name in (".", "..")]
    if bad:
        raise UsageError(f"host name {bad[0]!r} cannot be a file name for -o/-e")
    return HostFilesRenderer(prepare_dir(outdir, "-o") if outdir is not None else None,
                             prepare_dir(errdir, "-e") if errdir is not None else None,
                             warn=warn)


def _progress_renderer(action: Action, env: Environment, hosts: int, color: bool,
                       staged: bool) -> TransferProgressRenderer | RunProgressRenderer:
    """The live display on stderr (a terminal): transfer bars for copies, else one line."""
    from hostbatch.render.progress import RunProgressRenderer, TransferProgressRenderer

    if isinstance(action, PutFiles):
        total = action.total_size * hosts
        return TransferProgressRenderer(env.stderr, total_bytes=total, hosts=hosts, color=color,
                                        staged=staged)
    if isinstance(action, GetFiles):
        return TransferProgressRenderer(env.stderr, total_bytes=None, hosts=hosts, color=color,
                                        staged=staged)
    return RunProgressRenderer(env.stderr, hosts=hosts, color=color, staged=staged)


def stderr_width(env: Environment) -> int:
    """How many columns a host's line on stderr may take (terminal width, else a limit)."""
    return line_width(bool(env.stderr_isatty), env.stderr, env.environ)


def make_renderers(output: OutputOptions, env: Environment, stdout: SafeStream,
                   stderr: SafeStream, action: Action, hosts: list[HostSpec],
                   warn: Callable[[str], None], *, staged: bool = False) -> list[Renderer]:
    """The renderers for this run's output mode (``staged``: a ``--canary``/``--batch``
    rollout, whose progress shows no overall ETA).

    On a terminal, a copy gets a live transfer display on stderr, and a command whose lines
    are not streamed (gather, diff, quiet, JSON into a file) a live progress line. Lines bound
    for that terminal are then printed through the display, so they scroll above it.
    """
    color_stdout = use_color(bool(env.stdout_isatty), env.environ)
    color_stderr = use_color(bool(env.stderr_isatty), env.environ)
    renderers: list[Renderer] = []
    files = _file_renderer(output, hosts, warn)
    if files is not None:
        renderers.append(files)
    copying = isinstance(action, PutFiles | GetFiles)
    json_to_terminal = output.json and env.stdout_isatty
    if env.stderr_isatty and not json_to_terminal and (copying or not output.streams_lines):
        from hostbatch.render.progress import ConsoleStream

        progress = _progress_renderer(action, env, len(hosts), color_stderr, staged)
        stderr = SafeStream(ConsoleStream(progress.console))  # type: ignore[arg-type]
        if env.stdout_isatty:
            stdout = stderr
        # First, so it is stopped before a gathered report is printed.
        renderers.insert(0, progress)
    if output.json:
        renderers.append(JsonRenderer(stdout))
    elif output.gather or output.diff:
        from hostbatch.render.diff import DiffRenderer
        from hostbatch.render.gather import GroupedRenderer

        kind = DiffRenderer if output.diff else GroupedRenderer
        renderers.append(kind(stdout, stderr, gather_stderr=output.gather_stderr,
                              color_stdout=color_stdout, color_stderr=color_stderr,
                              addresses={spec.name: spec.hostname for spec in hosts}))
    elif not output.quiet:
        renderers.append(LineRenderer(stdout, stderr, color_stdout=color_stdout,
                                      color_stderr=color_stderr, width=stderr_width(env)))
    return renderers


def execute(hosts: list[HostSpec], action: Action, options: RunOptions, env: Environment,
            stdout: SafeStream, stderr: SafeStream,
            launcher: WorkerLauncher | None = None,
            inputs: RunInput | None = None) -> ExitStatus:
    """Perform ``action`` on ``hosts``, render every event, print the summary."""
    from hostbatch import api

    warn = make_warn("hostbatch", stderr, label=None)

    rollout = options.settings.rollout
    renderers = make_renderers(options.output, env, stdout, stderr, action, hosts, warn,
                               staged=bool(rollout.canary or rollout.batch))

    recorder = (start_recorder(hosts, action, options, env, warn) if options.history.enabled
                else None)
    handlers = [renderer.handle for renderer in renderers]
    if recorder is not None:
        handlers.append(recorder.handle)

    def on_event(event: Event) -> None:
        for handle in handlers:
            handle(event)

    started = time.monotonic()
    try:
        keep_output_blocks()  # this process reads every byte of output the workers send
        result = api.run(hosts, action, options.settings, on_event=on_event, warn=warn,
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
    write_summary(stderr, result, elapsed, color=use_color(bool(env.stderr_isatty), env.environ),
                  full=options.output.full_summary, width=stderr_width(env))
    if recorder is not None:
        recorder.finish(result.exit_status, interrupted=result.interrupted, elapsed=elapsed)
    return result.exit_status


def start_recorder(hosts: list[HostSpec], action: Action, options: RunOptions,
                   env: Environment, warn: Callable[[str], None]) -> HistoryRecorder | None:
    """Record this run in the history (``None`` if the history cannot be written: warned)."""
    from hostbatch.history.recorder import HistoryRecorder
    from hostbatch.history.store import history_path

    return HistoryRecorder.start(history_path(env.environ, env.home), action,
                                 hosts, options.selection.as_recorded(),
                                 options.selection.inventory, cap=options.history.cap,
                                 warn=warn)
