"""What ``batch_run`` takes from this machine before connecting: stdin and a script.

* stdin: when it is not a terminal (and without ``--no-stdin``), all of it is read once, here,
  and every host receives the same bytes, then EOF (as ``pssh -I`` and ``clush`` do). An open
  pipe that nobody writes to or closes makes the run wait, as it does for those tools. On a
  terminal nothing is read and the remote side sees EOF at once.

The sudo password (``--ask-sudo-pass``) is asked with the other credentials, by
:func:`hostbatch.prepare.settle_credentials`.
"""

from __future__ import annotations

from hostbatch.actions import Action, RunCommand, RunInput
from hostbatch.cli.arguments import InputOptions
from hostbatch.cli.environment import Environment
from hostbatch.cli.run import read_script
from hostbatch.errors import UsageError


def read_stdin(options: InputOptions, env: Environment) -> bytes | None:
    """The bytes to broadcast, or ``None`` for an empty stdin (EOF at once)."""
    if not options.read_stdin or env.stdin_isatty:
        return None
    try:
        data = env.stdin.read()
    except OSError as exc:
        raise UsageError(f"cannot read stdin: {exc.strerror or exc} (use --no-stdin)") from None
    return data or None


def prepare(action: Action, options: InputOptions, env: Environment) -> RunInput | None:
    """The inputs of a ``batch_run`` action (``None`` for a copy)."""
    if not isinstance(action, RunCommand):
        return None
    script = (read_script(options.script) if action.script is not None and options.script
              else None)
    return RunInput(stdin=read_stdin(options, env), script=script)
