"""Run an action on the selected hosts with the renderers the options ask for."""

from __future__ import annotations

import argparse
import time

from hostbatch.cli.environment import Environment
from hostbatch.engine.events import Event
from hostbatch.engine.jobs import Action
from hostbatch.engine.outcome import ExitStatus
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
    )


def make_renderers(args: argparse.Namespace, env: Environment, stdout: SafeStream,
                   stderr: SafeStream) -> list[Renderer]:
    """The renderers for this run's output mode."""
    if args.json:
        return [JsonRenderer(stdout)]
    return [LineRenderer(stdout, stderr,
                         color_stdout=use_color(bool(env.stdout_isatty), env.environ),
                         color_stderr=use_color(bool(env.stderr_isatty), env.environ))]


def execute(hosts: list[HostSpec], action: Action, args: argparse.Namespace, env: Environment,
            stdout: SafeStream, stderr: SafeStream) -> ExitStatus:
    """Perform ``action`` on ``hosts``, render every event, print the summary."""
    from hostbatch import api

    renderers = make_renderers(args, env, stdout, stderr)

    def on_event(event: Event) -> None:
        for renderer in renderers:
            renderer.handle(event)

    def warn(message: str) -> None:
        stderr.write(f"hostbatch: {message}\n".encode())
        stderr.flush()

    started = time.monotonic()
    result = api.run(hosts, action, settings_from(args), on_event=on_event, warn=warn,
                     home=env.home)
    for renderer in renderers:
        renderer.close()
    write_summary(stderr, result, time.monotonic() - started,
                  color=use_color(bool(env.stderr_isatty), env.environ))
    return result.exit_status
