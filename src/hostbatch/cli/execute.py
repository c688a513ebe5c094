"""Run an action on the selected hosts with the renderers the options ask for."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hostbatch.cli.environment import Environment
from hostbatch.engine.events import Event
from hostbatch.engine.jobs import Action, GetFiles, PutFiles, RunInput
from hostbatch.engine.launcher import WorkerLauncher
from hostbatch.engine.outcome import ExitStatus
from hostbatch.engine.rollout import RolloutPolicy
from hostbatch.inventory.model import HostSpec
from hostbatch.render import Renderer
from hostbatch.render.jsonl import JsonRenderer
from hostbatch.render.lines import LineRenderer
from hostbatch.render.output import SafeStream, use_color
from hostbatch.render.summary import write_summary
from hostbatch.settings import RunSettings

if TYPE_CHECKING:
    from hostbatch.history.recorder import HistoryRecorder


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


def make_renderers(args: argparse.Namespace, env: Environment, stdout: SafeStream,
                   stderr: SafeStream, action: Action, host_count: int) -> list[Renderer]:
    """The renderers for this run's output mode.

    A copy on a terminal also gets a live progress display on stderr; lines bound for the same
    terminal are then printed through it, so they scroll above the bars instead of through them.
    """
    if args.json:
        return [JsonRenderer(stdout)]
    color_stdout = use_color(bool(env.stdout_isatty), env.environ)
    color_stderr = use_color(bool(env.stderr_isatty), env.environ)
    renderers: list[Renderer] = []
    if isinstance(action, PutFiles | GetFiles) and env.stderr_isatty:
        from hostbatch.render.progress import ConsoleStream, TransferProgressRenderer

        total = (sum(e.size for e in action.entries) * host_count
                 if isinstance(action, PutFiles) else None)
        progress = TransferProgressRenderer(env.stderr, total_bytes=total, hosts=host_count,
                                            color=color_stderr)
        stderr = SafeStream(ConsoleStream(progress.console))  # type: ignore[arg-type]
        if env.stdout_isatty:
            stdout = stderr
        renderers.append(progress)
    renderers.insert(0, LineRenderer(stdout, stderr, color_stdout=color_stdout,
                                     color_stderr=color_stderr))
    return renderers


def execute(hosts: list[HostSpec], action: Action, args: argparse.Namespace, env: Environment,
            stdout: SafeStream, stderr: SafeStream,
            launcher: WorkerLauncher | None = None,
            inputs: RunInput | None = None) -> ExitStatus:
    """Perform ``action`` on ``hosts``, render every event, print the summary."""
    from hostbatch import api

    renderers = make_renderers(args, env, stdout, stderr, action, len(hosts))

    def warn(message: str) -> None:
        stderr.write(f"hostbatch: {message}\n".encode())
        stderr.flush()

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
