"""Console-script entry points, kept tiny so a worker can be forked before anything else.

The worker imports paramiko while this process imports the CLI, parses arguments and reads
the inventory: measured, that hides most of a ~0.1 s import behind work the parent does
anyway. Commands that never connect (``--help``, ``--version``, ``--list``) start no worker.
"""

from __future__ import annotations

import sys

from hostbatch.engine.launcher import WorkerLauncher

_NO_CONNECTION_FLAGS = frozenset({"--help", "--version", "--list"})


def _early_launcher(argv: list[str]) -> WorkerLauncher | None:
    if not argv or _NO_CONNECTION_FLAGS.intersection(argv):
        return None
    return WorkerLauncher().start(1)


def batch_run() -> None:
    """Console script ``batch_run``."""
    launcher = _early_launcher(sys.argv[1:])
    from hostbatch.cli.environment import Environment
    from hostbatch.cli.main import run_main

    sys.exit(run_main(sys.argv[1:], Environment(), launcher=launcher))


def batch_scp() -> None:
    """Console script ``batch_scp``."""
    launcher = _early_launcher(sys.argv[1:])
    from hostbatch.cli.environment import Environment
    from hostbatch.cli.main import scp_main

    sys.exit(scp_main(sys.argv[1:], Environment(), launcher=launcher))


def hostbatch() -> None:
    """Console script ``hostbatch``."""
    argv = sys.argv[1:]
    connects = argv[:1] in (["run"], ["scp"], ["keyscan"])
    launcher = _early_launcher(argv[1:]) if connects else None
    from hostbatch.cli.environment import Environment
    from hostbatch.cli.main import hostbatch_main

    sys.exit(hostbatch_main(argv, Environment(), launcher=launcher))
