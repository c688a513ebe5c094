"""``batch_run``: arguments -> selection and settings -> engine -> renderers -> exit status."""

from __future__ import annotations

import argparse
import time

from hostbatch.cli.environment import Environment
from hostbatch.engine.events import Event
from hostbatch.engine.jobs import RunCommand
from hostbatch.engine.outcome import ExitStatus
from hostbatch.errors import UsageError
from hostbatch.inventory.model import HostSpec
from hostbatch.render import Renderer
from hostbatch.render.jsonl import JsonRenderer
from hostbatch.render.lines import LineRenderer
from hostbatch.render.output import SafeStream, use_color
from hostbatch.render.summary import write_summary
from hostbatch.settings import RunSettings


def command_text(args: argparse.Namespace) -> str:
    """The command from ``-cmd`` or the trailing words, never both, never empty."""
    words = list(args.words)
    if words and words[0] == "--":
        words = words[1:]
    if args.command is not None and words:
        raise UsageError(f"give the command once, with -cmd or after the options, not both "
                         f"(extra: {' '.join(words)!r})")
    command = args.command if args.command is not None else " ".join(words)
    if not command.strip():
        raise UsageError("no command given: use -cmd \"COMMAND\"")
    return command


def settings_from(args: argparse.Namespace) -> RunSettings:
    """Run settings from the parsed arguments."""
    return RunSettings(
        forks=args.forks,
        retries=args.retries,
        connect_timeout=args.connect_timeout,
        command_timeout=getattr(args, "timeout", None),
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


def execute(hosts: list[HostSpec], args: argparse.Namespace, env: Environment,
            stderr: SafeStream, stdout: SafeStream) -> ExitStatus:
    """Run the command on ``hosts``, render everything, print the summary."""
    from hostbatch import api

    command = command_text(args)
    renderers = make_renderers(args, env, stdout, stderr)

    def on_event(event: Event) -> None:
        for renderer in renderers:
            renderer.handle(event)

    def warn(message: str) -> None:
        stderr.write(f"hostbatch: {message}\n".encode())
        stderr.flush()

    started = time.monotonic()
    result = api.run(hosts, RunCommand(command), settings_from(args), on_event=on_event,
                     warn=warn, home=env.home)
    for renderer in renderers:
        renderer.close()
    write_summary(stderr, result, time.monotonic() - started,
                  color=use_color(bool(env.stderr_isatty), env.environ))
    return result.exit_status
