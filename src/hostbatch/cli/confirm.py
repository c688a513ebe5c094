"""``--confirm-over N``: ask once before running on more than N hosts.

The question goes to the terminal the user is sitting at: stderr, answered on stdin, both
terminals. Without a terminal (a pipe, cron, CI) nobody can answer, so the run is refused
instead: a script that means it passes a higher ``--confirm-over``.
"""

from __future__ import annotations

from hostbatch.cli.environment import Environment
from hostbatch.engine.jobs import Action, GetFiles, PutFiles, RunCommand
from hostbatch.errors import UsageError

YES = frozenset({"y", "yes"})


def describe(action: Action) -> str:
    """The action in a few words, for the question."""
    if isinstance(action, RunCommand):
        what = (action.command if action.script is None
                else " ".join(["script", action.script, *action.script_args]))
        return f"sudo {what}" if action.sudo else what
    if isinstance(action, PutFiles):
        return f"put {action.source} -> {action.remote}"
    if isinstance(action, GetFiles):
        return f"get {action.remote} -> {action.local_dir}/HOST/"
    raise TypeError(type(action).__name__)


def confirm(host_count: int, action: Action, limit: int | None, env: Environment) -> None:
    """Return if the run may go ahead; raise :class:`UsageError` if it may not."""
    if limit is None or host_count <= limit:
        return
    what = f"{host_count} hosts (over the confirm-over limit of {limit})"
    if not (env.stdin_isatty and env.stderr_isatty):
        raise UsageError(f"refusing to run on {what} without a terminal to confirm on; "
                         "raise --confirm-over to go ahead")
    env.stderr.write(f"About to run on {what}: {describe(action)}\nContinue? [y/N] ".encode())
    env.stderr.flush()
    answer = env.stdin.readline().decode("utf-8", "replace").strip().lower()
    if answer not in YES:
        raise UsageError("not confirmed; nothing was run")
