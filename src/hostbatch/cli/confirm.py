"""``--confirm-over N``: ask once before running on more than N hosts.

The question goes to the terminal the user is sitting at: stderr, answered on stdin, both
terminals. Without a terminal (a pipe, cron, CI) nobody can answer, so the run is refused
instead: a script that means it passes a higher ``--confirm-over``.
"""

from __future__ import annotations

from hostbatch.actions import Action, RunCommand, action_kind, describe
from hostbatch.cli.environment import Environment
from hostbatch.errors import UsageError

YES = frozenset({"y", "yes"})


def _headline(action: Action) -> str:
    """A command as typed; a copy prefixed with its direction (``put a -> /srv/``)."""
    text = describe(action)
    return text if isinstance(action, RunCommand) else f"{action_kind(action)} {text}"


def confirm(host_count: int, action: Action, limit: int | None, env: Environment) -> None:
    """Return if the run may go ahead; raise :class:`UsageError` if it may not."""
    if limit is None or host_count <= limit:
        return
    what = f"{host_count} hosts (over the confirm-over limit of {limit})"
    if not (env.stdin_isatty and env.stderr_isatty):
        raise UsageError(f"refusing to run on {what} without a terminal to confirm on; "
                         "raise --confirm-over to go ahead")
    env.stderr.write(f"About to run on {what}: {_headline(action)}\nContinue? [y/N] ".encode())
    env.stderr.flush()
    answer = env.stdin.readline().decode("utf-8", "replace").strip().lower()
    if answer not in YES:
        raise UsageError("not confirmed; nothing was run")
