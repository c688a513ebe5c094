"""Run an action on the selected hosts with the renderers the options ask for."""

from __future__ import annotations

import argparse
import time

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

    def on_event(event: Event) -> None:
        for renderer in renderers:
            renderer.handle(event)

    def warn(message: str) -> None:
        stderr.write(f"hostbatch: {message}\n".encode())
        stderr.flush()

    started = time.monotonic()
    result = api.run(hosts, action, settings_from(args), on_event=on_event, warn=warn,
                     home=env.home, launcher=launcher, inputs=inputs)
    for renderer in renderers:
        renderer.close()
    write_summary(stderr, result, time.monotonic() - started,
                  color=use_color(bool(env.stderr_isatty), env.environ))
    return result.exit_status
